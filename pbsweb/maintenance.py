"""Housekeeping tasks of the task system itself."""
from datetime import timedelta

from django.utils import timezone

from pbsweb.models import Task
from pbsweb.worker import task_function


@task_function
def prune_task_history(reporter, keep_days: int = 30) -> None:
    """Remove finished tasks (rows and log files) older than `keep_days`."""
    if not isinstance(keep_days, int) or keep_days < 1:
        raise ValueError(f"keep-days: must be a whole number of days, at least 1 (got {keep_days!r})")
    cutoff = timezone.now() - timedelta(days=keep_days)
    old = Task.objects.filter(endtime__lt=cutoff).exclude(state__in=[Task.QUEUED, Task.RUNNING])
    removed = 0
    for task in old.iterator():
        reporter.check_abort()
        task.log_path.unlink(missing_ok=True)
        task.delete()
        removed += 1
    reporter.log(f"removed {removed} tasks that ended before {cutoff:%Y-%m-%d %H:%M:%S}")
