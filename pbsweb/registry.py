"""What the apps tell the ground floor about themselves (docs/DESIGN.md, "The registry").

The ground floor (`pbsweb`) knows no app. Each app registers, in its
`AppConfig.ready()`, the task types it runs, the work it wants done on every
scheduler tick, the error classes whose messages are written for users, and
its dashboard panels and warnings. The task system, the scheduler and the
dashboard read them from here, as NetBox's `netbox/registry.py` serves its
plugins.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class TaskType:
    """A worker type and how a task of it is described in the task history."""

    name: str
    description: str  # e.g. "Sync Job {id}"


@dataclass(frozen=True)
class DashboardPanel:
    """A card on the dashboard: `context(request, now, shared)` returns what `template` needs.

    `shared` is one dict per page view, for panels that compute the same thing (the remotes'
    states feed both the Off-site Copies card and the warnings)."""

    id: str  # the card's HTML id
    title: str
    template: str
    context: Callable
    order: int = 100
    wide: bool = False


class Registry:
    def __init__(self):
        self.task_types: dict[str, TaskType] = {}
        self.task_functions: dict[str, Callable] = {}
        self.tick_jobs: list[tuple[str, Callable]] = []
        self.user_errors: tuple[type[BaseException], ...] = ()
        self.dashboard_panels: list[DashboardPanel] = []
        self.dashboard_warnings: list[Callable] = []
        self.dashboard_hints: list[Callable] = []
        self.navigation: list[Callable] = []

    def task_type(self, name: str, description: str) -> None:
        self.task_types[name] = TaskType(name, description)

    def tick(self, name: str, func: Callable) -> None:
        """`func(now)` runs on every scheduler tick (once a minute); its failure is logged, not raised."""
        if all(n != name for n, _ in self.tick_jobs):
            self.tick_jobs.append((name, func))

    def user_error(self, *classes: type[BaseException]) -> None:
        """Errors whose message is for the user: a task ends with it and logs no traceback."""
        self.user_errors = tuple(dict.fromkeys(self.user_errors + classes))

    def panel(self, panel: DashboardPanel) -> None:
        self.dashboard_panels = sorted([p for p in self.dashboard_panels if p.id != panel.id] + [panel],
                                       key=lambda p: p.order)

    def warnings(self, func: Callable) -> None:
        """`func(now, shared)` returns dashboard warnings: dicts with level, kind, text, link."""
        if func not in self.dashboard_warnings:
            self.dashboard_warnings.append(func)

    def hint(self, func: Callable) -> None:
        """`func(request)` returns a getting-started hint (HTML-free text and a link) or None."""
        if func not in self.dashboard_hints:
            self.dashboard_hints.append(func)

    def nav(self, func: Callable) -> None:
        """`func(request)` returns context for the navigation tree (e.g. `nav_datastores`)."""
        if func not in self.navigation:
            self.navigation.append(func)

    def describe(self, worker_type: str, worker_id: str) -> str:
        kind = self.task_types.get(worker_type)
        if kind:
            return kind.description.format(id=worker_id).strip()
        return f"{worker_type} {worker_id}".strip()


registry = Registry()
