"""The sync job task: runs in a Celery worker (Run now, schedule) or inline (CLI).

Builds everything the engine needs from the configuration (the remote's
client with request counters, the bucket with the provider's quirks, the
local inventory of the remote prefix, the rate limiter from the job and the
traffic-control rules), runs push or pull, then records the requests on the
remote and the run's stats on the job.
"""
import json
import os
import re
import secrets
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from datastores.engine.crypto import load_keyfile
from datastores.models import Datastore
from pbsweb.secretbox import decrypt_secret, encrypt_secret
from pbsweb.worker import TaskError, task_function, user_message
from remotes.engine.client import KINDS, RequestCounters, summary_line
from remotes.models import Remote, record_usage
from remotes.usage import cap_guard, limits_text
from syncjobs.engine.asof import AsOfBucket
from syncjobs.engine.bucket import Bucket, SyncError
from syncjobs.engine.common import fmt_bytes
from syncjobs.engine.drill import DrillResult, drill_prefix
from syncjobs.engine.drill_budget import drill_slice
from syncjobs.engine.inventory import Inventory
from syncjobs.engine.pull import RESTORE_WORKERS, PullOptions, pull_sync, restore_from_bucket
from syncjobs.engine.push import PushOptions, push_sync
from syncjobs.engine.ratelimit import RateLimiter, TimeFrameRule, effective_rate
from syncjobs.engine.recover import parse_as_of, recover_prefix
from syncjobs.models import KEEP_FIELDS, DrillJob, DrillRun, SyncJob, TrafficControlRule
from syncjobs.remote_content import make_bucket, store_prefixes

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


def push_options(job: SyncJob, **extra):
    """The push engine's options for a job (the run and its plan use the same)."""
    return PushOptions(ns=job.ns, max_depth=job.max_depth, group_filter=list(job.group_filter or []),
                       remove_vanished=job.remove_vanished, transfer_last=job.transfer_last,
                       workers=job.workers, force=job.force,
                       min_storage_days=job.remote.effective_min_storage_days,  # with the provider's (Wasabi 90)
                       lock_days=job.remote.object_lock_days, lock_mode=job.remote.object_lock_mode, **extra)


@task_function
def run_sync_job(reporter, job_id: str, reconcile: bool = False, as_of: str | None = None) -> dict:
    """A push or pull run; `as_of` (pull only) reads the bucket as it was at that time."""
    job = SyncJob.objects.select_related("store", "remote").filter(job_id=job_id).first()
    if job is None:
        raise RuntimeError(f"sync job '{job_id}' does not exist (removed?)")
    if as_of and job.direction != "pull":
        raise TaskError("as-of: only a pull job reads the bucket as of a time (this job pushes)")
    task = reporter.task
    remote = job.remote
    reporter.log(f"Starting datastore sync job '{job.worker_id}'")
    cfg = remote.config()
    counters = RequestCounters()
    guard = cap_guard(remote, reporter.log, reporter.check_abort)
    client = remote.client(counters=counters, guard=guard, log=reporter.log, parallelism=job.workers)
    bucket = Bucket(client, cfg.bucket, job.remote_store,
                    skip_if_none_match=cfg.skip_if_none_match,
                    delete_via_delete_object=cfg.delete_via_delete_object)
    where = f"remote '{remote.remote_id}' (s3://{cfg.bucket}/{job.remote_store})"
    if as_of:
        bucket = AsOfBucket(bucket, parse_as_of(as_of))
        where += f" as of {bucket.as_of.isoformat()}"
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
    keep = job.remote_keep if job.direction == "push" else None
    if keep is not None:
        scope.append("own remote retention " + " ".join(
            f"{name.replace('_', '-')} {getattr(keep, name)}" for name in KEEP_FIELDS if getattr(keep, name)))
    elif as_of:
        scope.append("remove-vanished no (reading as of a time: nothing local is removed)")
    else:
        scope.append(f"remove-vanished {'yes' if job.remove_vanished else 'no'}")
    reporter.log("scope: " + "; ".join(scope))
    limiter, rate_text = build_limiter(job, remote)
    reporter.log(rate_text)
    reporter.log(limits_text(remote, guard))
    store = job.store.engine()
    # the view of a past time is not what the prefix holds: its inventory learns nothing
    inventory = None if as_of else open_inventory(remote, cfg, job.remote_store)
    result = None
    try:
        if as_of:
            try:
                keys = bucket.check()
            except SyncError as e:
                raise TaskError(str(e)) from None
            reporter.log(f"as of {bucket.as_of.isoformat()}: {keys} objects were current in the prefix "
                         "(one ListObjectVersions listing; each read names its version)")
        if job.direction == "pull":
            if reconcile:
                reporter.log("pull always lists the bucket prefix; nothing extra to reconcile")
            options = PullOptions(ns=job.ns, max_depth=job.max_depth, group_filter=list(job.group_filter or []),
                                  remove_vanished=job.remove_vanished and not as_of,
                                  transfer_last=job.transfer_last,
                                  workers=job.workers, limiter=limiter, counters=counters)
            result = pull_sync(bucket, store, inventory, options, reporter)
        else:
            options = push_options(job, limiter=limiter, reconcile=reconcile, counters=counters, keep=keep)
            result = push_sync(store, bucket, inventory, options, reporter)
            stored = inventory_bytes(inventory)
    finally:
        if inventory is not None:
            inventory.close()
        if guard is not None:
            guard.close()   # what the run reserved and did not use goes back to the remote's daily count
        snap = counters.snapshot()
        try:
            record_usage(remote, snap, task)
        except Exception as e:  # usage accounting must not hide the sync's own outcome
            reporter.warn(f"could not record request usage: {e}")
        reporter.log(_summary_requests(snap))
    if job.direction == "push":
        others = remote_stored_bytes(remote, cfg) if SyncJob.objects.filter(
            remote=remote, direction="push").exclude(remote_store=job.remote_store).exists() else stored
        lock_stats = {"locks_extended": result.locks_extended, "locks_extended_time": timezone.now()} \
            if remote.object_lock_days else {}
        type(remote).objects.filter(pk=remote.pk).update(stored_bytes=others, **lock_stats)
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
    if result.objects_deleted or result.deferred_chunks or result.snapshots_removed or result.deferred_snapshots:
        min_days = remote.effective_min_storage_days
        why = [f"provider minimum storage {min_days} days"] if min_days else []
        if remote.object_lock_days:
            why.append(f"Object Lock {remote.object_lock_days} days")
        reporter.log(f"Summary: removed {len(result.snapshots_removed)} vanished snapshots, deleted "
                     f"{result.objects_deleted} objects, {result.deferred_chunks} chunk deletions deferred"
                     + (f", {len(result.deferred_snapshots)} snapshot removals deferred" if result.deferred_snapshots
                        else "") + (f" ({', '.join(why)})" if why else ""))
    if job.direction == "push" and remote.object_lock_days:
        reporter.log(f"Summary: Object Lock {remote.object_lock_days} days ({remote.object_lock_mode}): "
                     f"extended {result.locks_extended} locks ({result.locks_extended} requests)")
    figures = {"bytes": result.bytes_transferred, "objects": result.objects_transferred,  # the dashboard's chart
               "snapshots": len(result.snapshots_synced), "failed": len(result.snapshots_failed),
               "locks_extended": result.locks_extended, "requests": sum(snap.get(k, 0) for k in KINDS),
               "deferred": result.deferred_chunks + result.deferred_files + len(result.deferred_snapshots)}
    if result.snapshots_failed or result.errors:
        # as PBS: a sync that did not carry every snapshot failed, whatever else it did
        for name, why in result.snapshots_failed:
            reporter.log(f"Summary: snapshot {name} failed: {why}")
        for why in result.errors:
            reporter.log(f"Summary: error: {why}")
        raise TaskError("sync failed with some errors", result=figures)
    reporter.log(f"sync job '{job.job_id}' end")
    return figures


def _why_nothing(result) -> str:
    summary = result.summary or ""
    if "nothing transferred:" in summary:
        return summary.split("nothing transferred:", 1)[1].split(";")[0].strip()
    if result.snapshots_unchanged:
        return f"nothing new since the last run ({result.snapshots_unchanged} snapshots already synced)"
    return "no finished snapshots in the job's scope"


def _summary_requests(snap: dict) -> str:
    return "S3 " + summary_line(snap)


# -- restore drills and restore straight from a bucket ----------------------------------------

def drill_scratch_dir() -> Path:
    return Path(settings.DATA_DIR) / "drill-scratch"


def restore_key_dir() -> Path:
    return Path(settings.DATA_DIR) / "restore-keys"


def local_keys() -> dict:
    """Fingerprint -> CryptConfig of the datastore keys this server holds (unreadable ones skipped)."""
    keys = {}
    for ds in Datastore.objects.exclude(key_fingerprint=""):
        try:
            crypt = ds.crypt_config()
        except Exception:  # a key that cannot be loaded just does not help the drill
            continue
        if crypt is not None:
            keys[crypt.fingerprint] = crypt
    return keys


@task_function
def run_drill(reporter, remote: str, remote_store: str = "", sample: int = 2, job_id: str | None = None,
              seed: int | None = None) -> None:
    """Task `drill`: verify what a remote's bucket holds by downloading and restoring it."""


    obj = Remote.objects.filter(remote_id=remote).first()
    if obj is None:
        raise TaskError(f"remote '{remote}' does not exist (removed?)")
    task = reporter.task
    job = DrillJob.objects.filter(job_id=job_id).first() if job_id else None
    if job is not None and job.on_budget:
        return run_budget_drill(reporter, obj, job)
    seed = int(seed) if seed is not None else int(time.time())
    counters = RequestCounters()
    guard = cap_guard(obj, reporter.log, reporter.check_abort)
    client = obj.client(counters=counters, guard=guard, log=reporter.log)
    cfg = obj.config()
    reporter.log(f"Starting restore drill of remote '{remote}' (s3://{cfg.bucket}/{remote_store or '*'})")
    total = DrillResult()
    error = None
    try:
        if remote_store:
            prefixes = [remote_store]
        else:
            prefixes = [p.prefix for p in store_prefixes(make_bucket(obj, client))]
            reporter.log(f"store prefixes in the bucket: {', '.join(p or '/' for p in prefixes) or 'none'}")
        if not prefixes:
            raise TaskError(f"bucket {cfg.bucket} holds no datastore (no prefix with a .pbsweb-datastore.json)")
        scratch = drill_scratch_dir()
        scratch.mkdir(parents=True, exist_ok=True)
        keys = local_keys()
        for prefix in prefixes:
            res = drill_prefix(make_bucket(obj, client, prefix), int(sample), seed, scratch, keys, reporter)
            total.merge(res)
        if not total.snapshots and not total.problems:
            raise TaskError(f"no finished snapshots under s3://{cfg.bucket}/{remote_store or ''}: nothing to verify")
    except Exception as exc:
        error = exc
    finally:
        if guard is not None:
            guard.close()
        snap = counters.snapshot()
        try:
            record_usage(obj, snap, task)
        except Exception as e:
            reporter.warn(f"could not record request usage: {e}")
        reporter.log(_summary_requests(snap))
    downloaded = int(snap.get("bytes_down", 0) or 0)
    if error is not None:
        message = user_message(error)[0]
    elif total.problems:
        more = f" (and {len(total.problems) - 3} more, see the task log)" if len(total.problems) > 3 else ""
        message = f"{len(total.problems)} problem(s): {'; '.join(total.problems[:3])}{more}"
    else:
        message = (f"{len(total.snapshots)} snapshots, {total.chunks} chunks verified"
                   + (f"; restored {total.restored}" if total.restored else "")
                   + (f"; restore step skipped: {total.restore_skipped}" if total.restore_skipped else ""))
    ok = error is None and total.ok
    now = timezone.now()
    DrillRun.objects.create(remote=obj, job=job, remote_store=remote_store, time=now,
                            snapshots=len(total.snapshots), chunks=total.chunks, ok=ok, message=message[:2000],
                            bytes_downloaded=downloaded, task_upid=task.upid)
    if job is not None:
        DrillJob.objects.filter(pk=job.pk).update(last_time=now, last_snapshots=len(total.snapshots), last_ok=ok,
                                                  last_message=message[:2000], last_bytes=downloaded)
    if total.restore_skipped and ok:
        reporter.warn(f"restore step skipped: {total.restore_skipped}")
    reporter.log(f"Summary: {len(total.snapshots)} snapshots, {total.chunks} chunks checked, "
                 f"{fmt_bytes(downloaded)} downloaded; {'OK' if ok else 'FAILED'}")
    if error is not None:
        raise error
    if not ok:
        raise TaskError(f"restore drill failed: {message}")


def run_budget_drill(reporter, remote, job) -> dict:
    """A drill on a budget: the next slice of the job's prefix, and the LIST check against the
    inventory of the push jobs writing there (syncjobs/engine/drill_budget.py)."""
    counters = RequestCounters()
    guard = cap_guard(remote, reporter.log, reporter.check_abort)
    client = remote.client(counters=counters, guard=guard, log=reporter.log)
    cfg = remote.config()
    budget = f"{fmt_bytes(job.budget_bytes)}" if job.budget_bytes else f"{job.max_gets} GETs"
    reporter.log(f"Starting restore drill '{job.job_id}' of s3://{cfg.bucket}/{job.remote_store} on a budget "
                 f"of {budget} per run")
    has_inventory = SyncJob.objects.filter(remote=remote, remote_store=job.remote_store, direction="push").exists()
    inventory = open_inventory(remote, cfg, job.remote_store) if has_inventory else None
    if inventory is None:
        reporter.log("no push job writes this prefix: no inventory to check the listing against")
    try:
        res = drill_slice(make_bucket(remote, client, job.remote_store), job.cursor, budget_bytes=job.budget_bytes,
                          max_gets=job.max_gets, credit=job.budget_credit, inventory=inventory, reporter=reporter)
    finally:
        if inventory is not None:
            inventory.close()
        if guard is not None:
            guard.close()
        snap = counters.snapshot()
        record_usage(remote, snap, reporter.task)
        reporter.log(_summary_requests(snap))
    now = timezone.now()
    last_full = now if res.full_pass else job.last_full_coverage
    DrillJob.objects.filter(pk=job.pk).update(cursor=res.cursor, budget_credit=res.credit,
                                              runs_per_pass=res.runs_per_pass, last_full_coverage=last_full)
    job.runs_per_pass, job.last_full_coverage = res.runs_per_pass, last_full
    coverage = job.coverage_text()
    if res.problems:
        more = f" (and {len(res.problems) - 3} more, see the task log)" if len(res.problems) > 3 else ""
        message = f"{len(res.problems)} problem(s): {'; '.join(res.problems[:3])}{more}"
    else:
        message = f"{res.chunks} of {res.total_chunks} chunks verified; {coverage}"
    downloaded = int(snap.get("bytes_down", 0) or 0)
    DrillRun.objects.create(remote=remote, job=job, remote_store=job.remote_store, time=now, snapshots=0,
                            chunks=res.chunks, ok=not res.problems, message=message[:2000],
                            bytes_downloaded=downloaded, task_upid=reporter.task.upid)
    DrillJob.objects.filter(pk=job.pk).update(last_time=now, last_snapshots=0, last_ok=not res.problems,
                                              last_message=message[:2000], last_bytes=downloaded)
    reporter.log(f"Summary: {message}")
    if res.problems:
        raise TaskError(f"restore drill failed: {message}")
    return {"chunks": res.chunks, "bytes": res.bytes, "runs-per-pass": res.runs_per_pass,
            "full-pass": res.full_pass}


def save_restore_key(keyfile_text: str, passphrase: str | None) -> str:
    """Keep an uploaded key for the restore task that uses it (encrypted at rest, 0600);
    returns the token the task reads (and deletes) it by."""

    token = secrets.token_hex(16)
    d = restore_key_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = d / f"{token}.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(encrypt_secret(json.dumps({"keyfile": keyfile_text, "passphrase": passphrase})))
    return token


def load_restore_key(token: str):
    """The CryptConfig saved under `token`; the saved file is removed."""

    if not re.fullmatch(r"[0-9a-f]{32}", token or ""):
        raise ValueError("key token: invalid")
    path = restore_key_dir() / f"{token}.key"
    try:
        doc = json.loads(decrypt_secret(path.read_text()))
    except FileNotFoundError:
        raise ValueError("the uploaded key is gone (already used, or the server restarted); upload it again") from None
    finally:
        path.unlink(missing_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=restore_key_dir(), delete=True) as f:
        f.write(doc["keyfile"])
        f.flush()
        return load_keyfile(f.name, doc.get("passphrase"))


@task_function
def restore_from_remote(reporter, remote: str, remote_store: str, snapshot: str, archive: str, target: str,
                        key_store: str | None = None, key_token: str | None = None, crypt=None,
                        as_of: str | None = None) -> None:
    """Task `reader`: restore one archive of a bucket snapshot to a path on this server,
    fetching only that archive's chunks, each verified; `as_of`: the versions current then."""


    obj = Remote.objects.filter(remote_id=remote).first()
    if obj is None:
        raise TaskError(f"remote '{remote}' does not exist (removed?)")
    if crypt is None and key_token:
        crypt = load_restore_key(key_token)
    if crypt is None and key_store:
        ds = Datastore.objects.filter(name=key_store).first()
        if ds is None or not ds.has_key():
            raise TaskError(f"datastore '{key_store}' has no encryption key")
        crypt = ds.crypt_config()
    task = reporter.task
    counters = RequestCounters()
    bucket = make_bucket(obj, obj.client(counters=counters, parallelism=RESTORE_WORKERS), remote_store)
    if as_of:
        bucket = AsOfBucket(bucket, parse_as_of(as_of))
    reporter.log(f"restore {archive} of s3://{bucket.bucket}/{bucket.key(snapshot)}"
                 + (f" as of {bucket.as_of.isoformat()}" if as_of else "") + f" to {target}"
                 + (f" with key {crypt.fingerprint}" if crypt is not None else ""))
    target = os.path.abspath(target)
    work_dir = os.path.dirname(target.rstrip("/")) or None
    try:
        if as_of:
            try:
                bucket.check()
            except SyncError as e:
                raise TaskError(str(e)) from None
        os.makedirs(work_dir, exist_ok=True)
        restore_from_bucket(bucket, snapshot, archive, target, crypt, workers=RESTORE_WORKERS, work_dir=work_dir,
                            reporter=reporter)
    finally:
        snap = counters.snapshot()
        try:
            record_usage(obj, snap, task)
        except Exception as e:
            reporter.warn(f"could not record request usage: {e}")
        reporter.log(_summary_requests(snap))


# -- recovery after an attack (issue 12) ----------------------------------------------------------

@task_function
def recover_remote(reporter, remote: str, remote_store: str, as_of: str) -> dict:
    """Task `s3-recover`: make a bucket prefix read as it did at `as_of` from the versions
    Object Lock keeps (syncjobs.engine.recover); the prefix's inventory is then rebuilt
    by the next push's full listing."""
    obj = Remote.objects.filter(remote_id=remote).first()
    if obj is None:
        raise TaskError(f"remote '{remote}' does not exist (removed?)")
    when = parse_as_of(as_of)
    counters = RequestCounters()
    cfg = obj.config()
    bucket = make_bucket(obj, obj.client(counters=counters), remote_store)
    lock = None
    if obj.object_lock_days:
        until = timezone.now() + timedelta(days=obj.object_lock_days)
        lock = (until.replace(microsecond=0) + timedelta(seconds=1), obj.object_lock_mode)
    try:
        result = recover_prefix(bucket, when, reporter, lock=lock)
    finally:
        snap = counters.snapshot()
        try:
            record_usage(obj, snap, reporter.task)
        except Exception as e:  # usage accounting must not hide the recovery's own outcome
            reporter.warn(f"could not record request usage: {e}")
        reporter.log(_summary_requests(snap))
    if result.restored or result.hidden:
        inventory = open_inventory(obj, cfg, remote_store)
        try:
            inventory.clear()  # what it knew (versions, locks) is no longer what the prefix holds
        finally:
            inventory.close()
        reporter.log("the next push to this prefix relists it (its inventory was reset)")
    if result.errors:
        raise TaskError(f"{len(result.errors)} objects could not be recovered: {result.errors[0]}")
    if not result.keys:
        raise TaskError(f"no object versions under s3://{bucket.bucket}/{bucket.prefix}: nothing to recover")
    return {"restored": len(result.restored), "hidden": len(result.hidden), "unchanged": result.unchanged,
            "requests": sum(snap.get(k, 0) for k in KINDS)}
