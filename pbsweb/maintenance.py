"""Housekeeping of the task system itself: the task history is pruned once a day.

PBS keeps task logs by count and by age; so does this: tasks that ended more than
settings.TASK_HISTORY_DAYS ago, and all but the newest settings.TASK_HISTORY_COUNT finished
tasks, are removed with their log files. Running and queued tasks are never touched.
"""
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from pbsweb.models import Task
from pbsweb.registry import registry
from pbsweb.worker import run, task_function

PRUNE_INTERVAL = timedelta(days=1)
BATCH = 1000


def _remove(context, tasks) -> int:
    """Delete tasks (rows and log files) in batches; returns how many."""
    removed = 0
    while True:
        batch = list(tasks.order_by("starttime").values_list("pk", "upid")[:BATCH])
        if not batch:
            return removed
        context.check_abort()
        for pk, upid in batch:
            Task(pk=pk, upid=upid).log_path.unlink(missing_ok=True)
        Task.objects.filter(pk__in=[pk for pk, _ in batch]).delete()
        removed += len(batch)


@task_function
def prune_task_history(context, keep_days: int | None = None, keep_count: int | None = None) -> dict:
    """Remove finished tasks older than `keep_days`, and all but the newest `keep_count`."""
    keep_days = settings.TASK_HISTORY_DAYS if keep_days is None else keep_days
    keep_count = settings.TASK_HISTORY_COUNT if keep_count is None else keep_count
    for name, value in (("keep-days", keep_days), ("keep-count", keep_count)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: must be a whole number, at least 1 (got {value!r})")
    finished = Task.objects.exclude(state__in=[Task.QUEUED, Task.RUNNING]).exclude(pk=context.task.pk)
    cutoff = timezone.now() - timedelta(days=keep_days)
    by_age = _remove(context, finished.filter(endtime__lt=cutoff))
    context.log(f"removed {by_age} tasks that ended before {cutoff:%Y-%m-%d %H:%M:%S} (keep {keep_days} days)")
    newest = finished.order_by("-starttime", "-id").values_list("starttime", "id")[keep_count - 1:keep_count]
    by_count = 0
    if newest:
        start, pk = newest[0]
        by_count = _remove(context, finished.filter(starttime__lte=start).exclude(starttime=start, id__gte=pk))
    context.log(f"removed {by_count} more tasks beyond the newest {keep_count}")
    return {"removed": by_age + by_count}


def prune_daily(now) -> Task | None:
    """Tick job: start the history prune when none ran in the last day."""
    if Task.objects.filter(worker_type="taskprune", starttime__gt=now - PRUNE_INTERVAL).exists():
        return None
    return run("pbsweb.maintenance.prune_task_history", "taskprune", "", "root@pam")


def register() -> None:
    registry.tick("task history prune", prune_daily)
