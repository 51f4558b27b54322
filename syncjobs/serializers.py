"""Sync jobs and traffic-control rules as the JSON API and `--output-format json` answer them
(PBS's sync.cfg / traffic-control.cfg field names)."""
from syncjobs.forms import rate_text
from syncjobs.models import KEEP_FIELDS, SyncJob, TrafficControlRule


def job_to_json(job: SyncJob) -> dict:
    out = {
        "id": job.job_id, "store": job.store.name, "remote": job.remote.remote_id,
        "remote-store": job.remote_store, "ns": job.ns, "max-depth": job.max_depth,
        "group-filter": job.group_filter or [], "schedule": job.schedule,
        "remove-vanished": job.remove_vanished, "transfer-last": job.transfer_last,
        "rate-out": rate_text(job.rate_out) or None, "burst-out": rate_text(job.burst_out) or None,
        "worker-threads": job.workers, "sync-direction": job.direction, "force": job.force,
        "enabled": job.enabled, "comment": job.comment,
        **{name.replace("_", "-"): getattr(job, name) for name in KEEP_FIELDS},
        "next-run": int(job.next_run.timestamp()) if job.next_run else None,
    }
    task = job.last_task
    if task is not None:
        out.update({"last-run-upid": task.upid, "last-run-state": "running" if task.running else task.status,
                    "last-run-endtime": int(task.endtime.timestamp()) if task.endtime else None})
    out.update({"last-run-bytes": job.last_bytes, "last-run-objects": job.last_objects,
                "last-run-deleted": job.last_deleted, "last-run-deferred": job.last_deferred})
    return out


def rule_json(rule: TrafficControlRule) -> dict:
    return {"name": rule.name, "rate-out": rate_text(rule.rate_out) or None,
            "burst-out": rate_text(rule.burst_out) or None, "timeframe": rule.timeframes or [],
            "remote": rule.remote_names(), "comment": rule.comment}
