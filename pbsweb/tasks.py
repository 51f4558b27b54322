"""Celery entry points: run a queued Task, and the once-a-minute scheduler tick."""
import logging

from celery import shared_task
from django.db import close_old_connections
from django.utils import timezone

from pbsweb.models import Task
from pbsweb.registry import registry
from pbsweb.scheduler import run_due_jobs
from pbsweb.worker import execute, reap_dead_tasks

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
    close_old_connections()
    now = timezone.now()
    reap_dead_tasks(now)
    for name, job in registry.tick_jobs:  # the apps' and the ground floor's periodic work
        try:
            job(now)
        except Exception:  # the tick must go on starting jobs
            log.exception("scheduler tick job '%s' failed", name)
    return len(run_due_jobs(now))
