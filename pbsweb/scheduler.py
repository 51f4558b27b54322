"""Starts scheduled jobs whose time has come (called each minute by Celery beat)."""
import logging

from django.apps import apps
from django.db import transaction
from django.utils import timezone

from pbsweb.models import ScheduledJob, Task

log = logging.getLogger(__name__)
SCHEDULER_USER = "root@pam"


def scheduled_models() -> list[type[ScheduledJob]]:
    return [m for m in apps.get_models() if issubclass(m, ScheduledJob)]


def run_due_jobs(now=None) -> list[Task]:
    """Start every enabled job whose next run has passed; set each job's next run."""
    now = now or timezone.now()
    started = []
    for model in scheduled_models():
        for job in model.objects.exclude(schedule="").filter(enabled=True):
            if job.next_run is None:
                job.next_run = job.compute_next_run(now)
                model.objects.filter(pk=job.pk).update(next_run=job.next_run)
                continue
            if job.next_run > now:
                continue
            with transaction.atomic():
                # Claim the run so two beat processes never start the same job twice.
                claimed = model.objects.filter(pk=job.pk, next_run=job.next_run).update(
                    next_run=job.compute_next_run(now))
            if not claimed:
                continue
            try:
                started.append(job.launch(SCHEDULER_USER))
            except Exception:
                log.exception("could not start scheduled %s %s", model.__name__, job.pk)
    return started
