"""Celery entry points: run a queued Task, and the once-a-minute scheduler tick."""
import logging

from celery import shared_task
from django.db import close_old_connections

from pbsweb.models import Task
from pbsweb.worker import execute

log = logging.getLogger(__name__)


@shared_task(name="pbsweb.tasks.run_task")
def run_task(upid: str) -> None:
    close_old_connections()
    task = Task.objects.filter(upid=upid).first()
    if task is None:
        log.warning("task %s vanished before it ran", upid)
        return
    if task.state != Task.QUEUED:
        return  # stopped while queued, or delivered twice
    execute(task)


@shared_task(name="pbsweb.tasks.scheduler_tick")
def scheduler_tick() -> int:
    from pbsweb.dashboard import safe_record_usage_samples
    from pbsweb.scheduler import run_due_jobs
    from pbsweb.worker import reap_dead_tasks
    close_old_connections()
    reap_dead_tasks()
    safe_record_usage_samples()  # the dashboard's usage history, at most one sample an hour
    return len(run_due_jobs())
