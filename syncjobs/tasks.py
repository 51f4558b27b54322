"""The sync job task: runs in a Celery worker (Run now, schedule) or inline (CLI).

Builds everything the engine needs from the configuration (the remote's
client with request counters, the bucket with the provider's quirks, the
local inventory of the remote prefix, the rate limiter from the job and the
traffic-control rules), runs push or pull, then records the requests on the
remote and the run's stats on the job.
"""
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from pbsweb.worker import task_function
from syncjobs.engine.bucket import Bucket
from syncjobs.engine.common import fmt_bytes
from syncjobs.engine.inventory import Inventory
from syncjobs.engine.ratelimit import RateLimiter, TimeFrameRule, effective_rate
from syncjobs.models import SyncJob, TrafficControlRule

ALWAYS = "mon..sun"


def inventory_dir() -> Path:
    return Path(settings.DATA_DIR) / "sync-inventory"


def open_inventory(remote, cfg, prefix: str) -> Inventory:
    """The local inventory of one remote prefix (shared by the jobs writing to it)."""
    return Inventory.for_remote(inventory_dir(), cfg.bucket, prefix, cfg.resolved_endpoint())


def rate_rules(job: SyncJob, remote) -> list[TimeFrameRule]:
    """Traffic-control rules for this job's remote as engine rules, smallest rate first,
    each capped by the job's own rate: the first active one is min(job rate, active rules)."""
    pairs = []
    for rule in TrafficControlRule.objects.prefetch_related("remotes"):
        if not rule.rate_out or not rule.applies_to(remote):
            continue
        rate = min(rule.rate_out, job.rate_out) if job.rate_out else rule.rate_out
        for frame in rule.timeframes or [ALWAYS]:
            pairs.append((rate, frame, rule.name))
    pairs.sort(key=lambda p: p[0])
    return [TimeFrameRule(frame, float(rate)) for rate, frame, _ in pairs]


def build_limiter(job: SyncJob, remote, now: datetime | None = None):
    """(limiter or None, text for the log)."""
    rules = rate_rules(job, remote)
    if not job.rate_out and not rules:
        return None, "no rate limit"
    bursts = [r.burst_out for r in TrafficControlRule.objects.filter(burst_out__isnull=False)
              if r.applies_to(remote)]
    burst = job.burst_out or (min(bursts) if bursts else None)
    limiter = RateLimiter(job.rate_out, burst, rules)
    now = now or datetime.now()
    rate = effective_rate(rules, now, job.rate_out)
    source = "job" if rate == job.rate_out else "traffic control"
    text = f"rate limit {fmt_bytes(rate)}/s now ({source})" if rate else "no rate limit now"
    if rules:
        text += f"; {len(rules)} traffic-control time frame(s) apply"
    return limiter, text


def inventory_bytes(inv: Inventory) -> int:
    try:
        chunks = inv.db.execute("SELECT coalesce(sum(size), 0) FROM chunks").fetchone()[0]
        files = inv.db.execute("SELECT coalesce(sum(size), 0) FROM files").fetchone()[0]
        return int(chunks) + int(files)
    except Exception:  # the inventory's layout is the engine's business
        return sum(s for _, _, s in inv.iter_chunks()) + sum(e.size for e in inv.files().values())


def remote_stored_bytes(remote, cfg) -> int:
    """Bytes the remote holds under the prefixes our push jobs write, from their inventories."""
    total = 0
    prefixes = set(SyncJob.objects.filter(remote=remote, direction="push").values_list("remote_store", flat=True))
    for prefix in prefixes:
        inv = open_inventory(remote, cfg, prefix)
        try:
            total += inventory_bytes(inv)
        finally:
            inv.close()
    return total


@task_function
def run_sync_job(reporter, job_id: str, reconcile: bool = False) -> None:
    from remotes.engine.client import RequestCounters
    from remotes.models import record_usage

    job = SyncJob.objects.select_related("store", "remote").filter(job_id=job_id).first()
    if job is None:
        raise RuntimeError(f"sync job '{job_id}' does not exist (removed?)")
    task = getattr(reporter, "task", None)
    if task is not None:
        SyncJob.objects.filter(pk=job.pk).update(last_task=task)
    remote = job.remote
    reporter.log(f"Starting datastore sync job '{job.worker_id}'")
    cfg = remote.config()
    counters = RequestCounters()
    client = remote.client(counters=counters)
    bucket = Bucket(client, cfg.bucket, job.remote_store,
                    skip_if_none_match=cfg.skip_if_none_match,
                    delete_via_delete_object=cfg.delete_via_delete_object)
    where = f"remote '{remote.remote_id}' (s3://{cfg.bucket}/{job.remote_store})"
    if job.direction == "pull":
        reporter.log(f"sync datastore '{job.store.name}' from {where}")
    else:
        reporter.log(f"sync datastore '{job.store.name}' to {where}")
    scope = [f"namespace '{job.ns or '/'}'"]
    if job.max_depth is not None:
        scope.append(f"max-depth {job.max_depth}")
    if job.group_filter:
        scope.append("group filter " + ", ".join(job.group_filter))
    if job.transfer_last:
        scope.append(f"transfer-last {job.transfer_last}")
    scope.append(f"remove-vanished {'yes' if job.remove_vanished else 'no'}")
    reporter.log("scope: " + "; ".join(scope))
    limiter, rate_text = build_limiter(job, remote)
    reporter.log(rate_text)
    store = job.store.engine()
    inventory = open_inventory(remote, cfg, job.remote_store)
    result = None
    try:
        if job.direction == "pull":
            from syncjobs.engine.pull import PullOptions, pull_sync
            if reconcile:
                reporter.log("pull always lists the bucket prefix; nothing extra to reconcile")
            options = PullOptions(ns=job.ns, max_depth=job.max_depth, group_filter=list(job.group_filter or []),
                                  remove_vanished=job.remove_vanished, transfer_last=job.transfer_last,
                                  workers=job.workers, limiter=limiter, counters=counters)
            result = pull_sync(bucket, store, inventory, options, reporter)
        else:
            from syncjobs.engine.push import PushOptions, push_sync
            options = PushOptions(ns=job.ns, max_depth=job.max_depth, group_filter=list(job.group_filter or []),
                                  remove_vanished=job.remove_vanished, transfer_last=job.transfer_last,
                                  workers=job.workers, force=job.force, limiter=limiter,
                                  min_storage_days=remote.min_storage_days or 0, reconcile=reconcile,
                                  counters=counters)
            result = push_sync(store, bucket, inventory, options, reporter)
            stored = inventory_bytes(inventory)
    finally:
        inventory.close()
        snap = counters.snapshot()
        try:
            record_usage(remote, snap, task)
        except Exception as e:  # usage accounting must not hide the sync's own outcome
            reporter.warn(f"could not record request usage: {e}")
        reporter.log(_summary_requests(snap))
    if job.direction == "push":
        others = remote_stored_bytes(remote, cfg) if SyncJob.objects.filter(
            remote=remote, direction="push").exclude(remote_store=job.remote_store).exists() else stored
        type(remote).objects.filter(pk=remote.pk).update(stored_bytes=others)
    verb = "uploaded" if job.direction == "push" else "downloaded"
    SyncJob.objects.filter(pk=job.pk).update(
        last_bytes=result.bytes_transferred, last_objects=result.objects_transferred,
        last_chunks=result.chunks_transferred, last_deleted=result.objects_deleted,
        last_deferred=result.deferred_chunks, last_snapshots=len(result.snapshots_synced),
        last_summary=result.summary[:2000], last_run_end=timezone.now())
    if not result.bytes_transferred and not result.snapshots_failed:
        reporter.log(f"Summary: {verb} nothing - {_why_nothing(result)}")
    else:
        line = (f"Summary: {verb} {result.objects_transferred} objects "
                f"({result.chunks_transferred} chunks), {fmt_bytes(result.bytes_transferred)}, "
                f"{len(result.snapshots_synced)} snapshots synced")
        if not result.snapshots_synced and not result.snapshots_failed:
            line += f" - {_why_nothing(result)}"
        reporter.log(line)
    if result.objects_deleted or result.deferred_chunks or result.snapshots_removed:
        reporter.log(f"Summary: removed {len(result.snapshots_removed)} vanished snapshots, deleted "
                     f"{result.objects_deleted} objects, {result.deferred_chunks} chunk deletions deferred "
                     f"(provider minimum storage {remote.min_storage_days} days)")
    reporter.log(f"sync job '{job.job_id}' end")


def _why_nothing(result) -> str:
    summary = result.summary or ""
    if "nothing transferred:" in summary:
        return summary.split("nothing transferred:", 1)[1].split(";")[0].strip()
    if result.snapshots_unchanged:
        return f"nothing new since the last run ({result.snapshots_unchanged} snapshots already synced)"
    return "no finished snapshots in the job's scope"


def _summary_requests(snap: dict) -> str:
    from remotes.engine.client import summary_line
    return "S3 " + summary_line(snap)
