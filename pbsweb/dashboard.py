"""The Dashboard's layout and its task cards: the task summary, longest and running tasks.

The other cards (datastore usage, off-site copies, charts) and the warnings come from the
apps, registered in their `AppConfig.ready()` (pbsweb.registry); this module only lays them
out, so the ground floor knows no app (docs/DESIGN.md).
"""
from datetime import timedelta
from urllib.parse import urlencode

from django.db import connection
from django.db.models import Count, DurationField, ExpressionWrapper, F
from django.db.models.expressions import RawSQL
from django.urls import reverse
from django.utils import timezone

from pbsweb.models import Task
from pbsweb.registry import DashboardPanel, registry


PERIODS = {"1": ("last 24 hours", timedelta(days=1)), "7": ("last 7 days", timedelta(days=7)),
           "30": ("last 30 days", timedelta(days=30))}
DEFAULT_PERIOD = "30"


def period_choice(value) -> str:
    return value if value in PERIODS else DEFAULT_PERIOD


def task_filter_url(worker_type: str = "", state: str = "") -> str:
    """The task list filtered by type and state (the list calls errors `errors`)."""
    params = {}
    if worker_type:
        params["type"] = worker_type
    if state:
        params["state"] = "errors" if state == Task.ERROR else state
    return reverse("task-list") + ("?" + urlencode(params) if params else "")


def task_summary(period: str, now=None) -> dict:
    now = now or timezone.now()
    label, delta = PERIODS[period_choice(period)]
    # Counted from the indexes (worker_type, starttime) and (state, starttime) alone: totals per
    # type, then the few tasks that are not OK; OK = total - the rest. Fast with 100k tasks.
    since = now - delta
    by_type: dict[str, dict] = {}
    for worker_type in Task.objects.order_by().values_list("worker_type", flat=True).distinct():
        total = Task.objects.filter(worker_type=worker_type, starttime__gte=since).count()
        if total:
            by_type[worker_type] = {"ok": total, "warning": 0, "error": 0, "running": 0}
    others = (Task.objects.filter(starttime__gte=since, state__in=[Task.WARNING, Task.ERROR, Task.QUEUED,
                                                                   Task.RUNNING])
              .order_by().values_list("worker_type", "state").annotate(n=Count("*")))
    for worker_type, state, n in others:
        r = by_type.get(worker_type)
        if r is None:
            continue
        r["running" if state in (Task.QUEUED, Task.RUNNING) else state] += n
        r["ok"] -= n
    out = []
    for worker_type in sorted(by_type):
        r = by_type[worker_type]
        out.append({
            "type": worker_type, "label": registry.describe(worker_type, "").strip() or worker_type,
            "ok": r["ok"], "warning": r["warning"], "error": r["error"], "running": r["running"],
            "total": r["ok"] + r["warning"] + r["error"] + r["running"],
            "url": task_filter_url(worker_type),
            "ok_url": task_filter_url(worker_type, Task.OK),
            "warning_url": task_filter_url(worker_type, Task.WARNING),
            "error_url": task_filter_url(worker_type, Task.ERROR),
            "running_url": task_filter_url(worker_type, "running"),
        })
    totals = {k: sum(r[k] for r in out) for k in ("ok", "warning", "error", "running", "total")}
    return {"period": period_choice(period), "label": label, "rows": out, "totals": totals,
            "periods": [(k, v[0]) for k, v in PERIODS.items()]}


def longest_tasks(period: str, now=None, limit: int = 10) -> list[Task]:
    now = now or timezone.now()
    delta = PERIODS[period_choice(period)][1]
    tasks = Task.objects.filter(starttime__gte=now - delta, endtime__isnull=False)
    if connection.vendor == "sqlite":
        # Django's duration subtraction calls a Python function per row on SQLite; julianday is native.
        tasks = tasks.annotate(span=RawSQL("julianday(endtime) - julianday(starttime)", ()))
    else:
        tasks = tasks.annotate(span=ExpressionWrapper(F("endtime") - F("starttime"), output_field=DurationField()))
    out = list(tasks.order_by("-span")[:limit])
    for t in out:
        t.took = t.endtime - t.starttime
    return out


def running_tasks(limit: int = 20) -> list[Task]:
    return list(Task.objects.filter(state__in=[Task.QUEUED, Task.RUNNING]).order_by("-starttime")[:limit])


def ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def page_context(request, now=None) -> dict:
    """Everything dashboard.html needs: each registered panel's context, the warnings, one hint."""
    now = now or timezone.now()
    period = period_choice(request.GET.get("period", ""))
    shared = {"period": period}  # what several panels compute once per page view
    context = {"period": period, "panels": registry.dashboard_panels}
    for panel in registry.dashboard_panels:
        context.update(panel.context(request, now, shared))
    context["warnings"] = [w for source in registry.dashboard_warnings for w in source(now, shared)]
    context["hint"] = next(filter(None, (source(request) for source in registry.dashboard_hints)), None)
    return context


def register_panels() -> None:
    """The ground floor's own cards: the tasks."""
    registry.panel(DashboardPanel(
        "dash-summary", "", "dashboard/task_summary.html", order=30,
        context=lambda request, now, shared: {"summary": task_summary(shared["period"], now)}))
    registry.panel(DashboardPanel(
        "dash-running", "Running Tasks", "dashboard/running_panel.html", order=40,
        context=lambda request, now, shared: {"running": running_tasks()}))
    registry.panel(DashboardPanel(
        "dash-longest", "", "dashboard/longest.html", order=50,
        context=lambda request, now, shared: {"longest": longest_tasks(shared["period"], now)}))
