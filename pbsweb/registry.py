"""What the apps tell the ground floor about themselves (docs/DESIGN.md, "The registry").

The ground floor (`pbsweb`) knows no app. Each app registers, in its
`AppConfig.ready()`, the task types it runs, the work it wants done on every
scheduler tick, the error classes whose messages are written for users, and
its dashboard panels and warnings. The task system, the scheduler and the
dashboard read them from here, as NetBox's `netbox/registry.py` serves its
plugins.

`ready()` registers at once only what is cheap (task types, hints); what needs the
engines (task functions, ticks, user errors, dashboard cards) it hands to `later()`,
run the first time the worker, the scheduler or the dashboard reads it, so that a
command line that reads none of it starts without them (docs/DESIGN.md §1.1).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import import_module
from types import ModuleType
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
        self._later: list[Callable[[], None]] = []
        self._loading = threading.RLock()  # the web server's threads wait for the whole of it
        self._loaded = True                # every deferred registration has run to its end
        self._load_depth = 0               # load() calls running in the thread holding _loading
        self._task_functions: dict[str, Callable] = {}
        self._tick_jobs: list[tuple[str, Callable]] = []
        self._user_errors: tuple[type[BaseException], ...] = ()
        self._panels: list[DashboardPanel] = []
        self._warnings: list[Callable] = []
        self._hints: list[tuple[int, Callable]] = []
        self._navigation: list[Callable] = []
        self._command_extensions: dict[str, list[str]] = {}

    # -- registering (AppConfig.ready(), or a function it hands to later()) ----------------

    def task_type(self, name: str, description: str) -> None:
        self.task_types[name] = TaskType(name, description)

    def later(self, register: Callable[[], None]) -> None:
        """`register()` imports the app's tasks and dashboard modules and registers what they hold;
        it runs once, when anything below task_types is first read."""
        self._later.append(register)
        self._loaded = False

    def task_function(self, name: str, func: Callable) -> None:
        self._task_functions[name] = func

    def tick(self, name: str, func: Callable) -> None:
        """`func(now)` runs on every scheduler tick (once a minute); its failure is logged, not raised."""
        if all(n != name for n, _ in self._tick_jobs):
            self._tick_jobs.append((name, func))

    def user_error(self, *classes: type[BaseException]) -> None:
        """Errors whose message is for the user: a task ends with it and logs no traceback."""
        self._user_errors = tuple(dict.fromkeys(self._user_errors + classes))

    def panel(self, panel: DashboardPanel) -> None:
        self._panels = sorted([p for p in self._panels if p.id != panel.id] + [panel], key=lambda p: p.order)

    def warnings(self, func: Callable) -> None:
        """`func(now, shared)` returns dashboard warnings: dicts with level, kind, text, link."""
        if func not in self._warnings:
            self._warnings.append(func)

    def hint(self, func: Callable, order: int) -> None:
        """`func(request)` returns a getting-started hint (HTML-free text and a link) or None;
        the dashboard shows the first of lowest `order` (the first step first, in whatever order
        the apps registered their hints)."""
        if func not in [f for _, f in self._hints]:
            self._hints.append((order, func))
            self._hints.sort(key=lambda entry: entry[0])

    def nav(self, func: Callable) -> None:
        """`func(request)` returns context for the navigation tree (e.g. `nav_datastores`)."""
        if func not in self._navigation:
            self._navigation.append(func)

    def extend_command(self, command: str, module: str) -> None:
        """Another app's subcommands for the management command `command`: `module` (a dotted name,
        imported only when that command runs) has `add_subcommands(subparsers)` and
        `SUBCOMMANDS = {action: run(stdout, opts)}`."""
        self._command_extensions.setdefault(command, [])
        if module not in self._command_extensions[command]:
            self._command_extensions[command].append(module)

    def command_extensions(self, command: str) -> list[ModuleType]:
        return [import_module(name) for name in self._command_extensions.get(command, [])]

    # -- reading (the worker, the scheduler, the dashboard) -------------------------------

    def load(self) -> None:
        """Run the registrations the apps deferred, once each. Another thread waits until all
        have run; the same thread may read the registry while one runs (it is off the list)."""
        if self._loaded:
            return
        with self._loading:
            # _loaded, not an empty list, tells other threads it is done: the last registration
            # is off the list while it still runs.
            self._load_depth += 1
            try:
                while self._later:
                    self._later.pop(0)()
            finally:
                self._load_depth -= 1
            if self._load_depth == 0 and not self._later:
                self._loaded = True

    @property
    def task_functions(self) -> dict[str, Callable]:
        self.load()
        return self._task_functions

    @property
    def tick_jobs(self) -> list[tuple[str, Callable]]:
        self.load()
        return self._tick_jobs

    @property
    def user_errors(self) -> tuple[type[BaseException], ...]:
        self.load()
        return self._user_errors

    @property
    def dashboard_panels(self) -> list[DashboardPanel]:
        self.load()
        return self._panels

    @property
    def dashboard_warnings(self) -> list[Callable]:
        self.load()
        return self._warnings

    @property
    def dashboard_hints(self) -> list[Callable]:
        self.load()
        return [func for _, func in self._hints]

    @property
    def navigation(self) -> list[Callable]:
        self.load()
        return self._navigation

    def describe(self, worker_type: str, worker_id: str) -> str:
        kind = self.task_types.get(worker_type)
        if kind:
            return kind.description.format(id=worker_id).strip()
        return f"{worker_type} {worker_id}".strip()


registry = Registry()
