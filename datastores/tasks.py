"""Task functions of the datastores app (run by a Celery worker or inline by the CLI).

Each takes the TaskContext first and JSON-able keyword arguments; secrets
(a loaded key) arrive only as private arguments and are never stored.
"""
import time

from datastores.engine import gc
from datastores.engine import verify as v
from datastores.engine.backup import run_backup
from datastores.engine.catalog import rebuild_catalog
from datastores.engine.errors import DatastoreError, GroupLockedError
from datastores.engine.prune import REMOVE
from datastores.engine.report import Reporter
from datastores.engine.restore import restore_archive
from datastores.models import Datastore, PruneJob, VerifyJob
from datastores.services import keep_options_from, prune_plan
from pbsweb.models import Task
from pbsweb.worker import TaskError, task_function

MiB = 1024 * 1024


class _HookReporter(Reporter):
    """Forwards to the task reporter and also calls a progress hook (CLI progress bar)."""

    def __init__(self, inner, hook):
        self.inner, self.hook = inner, hook

    def log(self, msg):
        self.hook(None, "")
        self.inner.log(msg)

    def warn(self, msg):
        self.hook(None, "")
        self.inner.warn(msg)

    def progress(self, fraction, text=""):
        self.inner.progress(fraction, text)
        self.hook(fraction, text)

    def check_abort(self):
        self.inner.check_abort()


def _store(name):
    try:
        store = Datastore.objects.get(name=name)
    except Datastore.DoesNotExist:
        raise DatastoreError(f"datastore '{name}' does not exist") from None
    return store, store.engine()


def _find(eng, snapshot, ns=""):
    return eng.find_snapshot(snapshot, ns or "")


# -- backup / restore ------------------------------------------------------------------

@task_function
def backup(ctx, store, backup_type, backup_id, archives, ns="", backup_time=None, owner=None,
           crypt=None, progress_hook=None):
    reporter = _HookReporter(ctx, progress_hook) if progress_hook else ctx
    cfg, eng = _store(store)
    if ns and not eng.ns_path(ns).is_dir():
        eng.create_namespace(ns)
        reporter.log(f"created namespace '{ns}'")
    result = run_backup(eng, backup_type, backup_id, [tuple(a) for a in archives], ns=ns or "", crypt=crypt,
                        reporter=reporter, backup_time=backup_time, owner=owner)
    if cfg.verify_new:
        reporter.log("verify-new is set: verifying the new snapshot")
        _verify_one(ctx, eng, result.ref, crypt)
    return None


@task_function
def restore(reporter, store, snapshot, archive, target, ns="", crypt=None, progress_hook=None):
    if progress_hook:
        reporter = _HookReporter(reporter, progress_hook)
    cfg, eng = _store(store)
    ref = _find(eng, snapshot, ns)
    if crypt is None:
        crypt = _store_key_for(cfg, eng, ref)
    restore_archive(eng, ref, archive, target, crypt=crypt, reporter=reporter)


def _store_key_for(cfg, eng, ref):
    """The datastore's own key when the snapshot is encrypted with it, else None."""
    try:
        m = eng.load_manifest(ref)
    except DatastoreError:
        return None
    if m.encrypted and cfg.key_fingerprint and m.key_fingerprint == cfg.key_fingerprint:
        return cfg.crypt_config()
    return None


@task_function
def catalog_rebuild(reporter, store, snapshot=None, ns="", crypt=None):
    cfg, eng = _store(store)
    refs = [_find(eng, snapshot, ns)] if snapshot else [r for r in eng.list_snapshots(ns or "") if r.finished]
    failed = 0
    for ref in refs:
        reporter.check_abort()
        key = crypt or _store_key_for(cfg, eng, ref)
        try:
            rebuild_catalog(eng, ref, crypt=key, reporter=reporter)
        except DatastoreError as e:
            if snapshot:
                raise
            failed += 1
            reporter.warn(f"catalog of {ref}: {e}")
    reporter.log(f"catalog rebuild: {len(refs) - failed} of {len(refs)} snapshots done")


# -- prune -------------------------------------------------------------------------------

def _prune(reporter, store, ns="", keep=None, dry_run=False, max_depth=None, group=None):
    cfg, eng = _store(store)
    keep_opts = keep_options_from(keep or {})
    ns = ns or ""
    reporter.log(f"{'Dry run: ' if dry_run else ''}Pruning datastore '{store}'"
                 + (f" namespace '{ns}'" if ns else ""))
    opts = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in vars(keep_opts).items() if v is not None)
    reporter.log(f"retention options: {opts or 'none'}")
    if not keep_opts.any():
        reporter.warn("no keep options set: keeping every snapshot")
    plan = prune_plan(eng, keep_opts, ns, recursive=group is None)
    if group:
        plan = [(r, m) for r, m in plan if f"{r.backup_type}/{r.backup_id}" == group]
    if max_depth is not None and ns is not None:
        base = len(ns.split("/")) if ns else 0
        plan = [(r, m) for r, m in plan if (len(r.ns.split("/")) if r.ns else 0) - base <= int(max_depth)]
    removed = kept = 0
    last_group = None
    for ref, mark in plan:
        gkey = (ref.ns, ref.backup_type, ref.backup_id)
        if gkey != last_group:
            last_group = gkey
            reporter.log(f"Pruning group {ref.ns + ':' if ref.ns else ''}\"{ref.backup_type}/{ref.backup_id}\"")
        label = {"keep": "keep", "remove": "remove", "protected": "keep protected",
                 "partial": "keep partial"}[mark]
        prefix = "would " if dry_run else ""
        reporter.log(f"{prefix}{label} {ref.name}" + (f" (namespace {ref.ns})" if ref.ns else ""))
        if mark == REMOVE:
            removed += 1
        else:
            kept += 1
    if not dry_run:
        # Group by group under the group's lock: a group a backup holds is left alone and the
        # task fails naming it (PROTOCOL.md §4). A prune of one group checks the lock even when
        # it has nothing to remove.
        groups: dict[tuple, list] = {}
        for ref, mark in plan:
            if mark == REMOVE or group:
                groups.setdefault((ref.ns, ref.backup_type, ref.backup_id), []).extend(
                    [ref] if mark == REMOVE else [])
        locked: list[str] = []
        for (gns, gtype, gid), refs in groups.items():
            try:
                with eng.group_lock(gns, gtype, gid):
                    for ref in sorted(refs, key=lambda r: r.time):     # PBS deletes oldest first
                        reporter.check_abort()
                        try:
                            eng.remove_snapshot(ref, group_locked=True)
                        except DatastoreError as e:
                            reporter.warn(f"failed to remove {ref}: {e}")
                            removed -= 1
            except GroupLockedError as e:
                reporter.log(f"skipping group {gtype}/{gid}: {e}")
                locked.append(str(e))
                removed -= len(refs)
        if locked:
            reporter.log(f"prune done: {kept} kept, {removed} removed")
            raise DatastoreError("; ".join(locked) + "; not pruned (try again when it has finished)")
    reporter.log(f"prune done: {kept} kept, {removed} {'would be ' if dry_run else ''}removed")
    return plan


@task_function
def prune(reporter, store, ns="", keep=None, dry_run=False, max_depth=None, group=None):
    _prune(reporter, store, ns, keep, dry_run, max_depth, group)


@task_function
def prunejob(reporter, job):
    j = PruneJob.objects.select_related("store").get(job_id=job)
    reporter.log(f"prune job '{j.job_id}' on datastore '{j.store.name}'")
    _prune(reporter, j.store.name, j.ns, j.keep_dict(), False, j.max_depth)


# -- garbage collection ------------------------------------------------------------------

@task_function
def garbage_collection(ctx, store):
    _, eng = _store(store)
    _wait_for_prunes(ctx, store)
    gc.garbage_collection(eng, ctx, upid=ctx.upid)


def _wait_for_prunes(ctx, store, limit=3600):
    """As PBS schedules them, prune comes before GC: wait for running prunes of this store."""
    deadline = time.monotonic() + limit
    said = False
    while time.monotonic() < deadline:
        running = Task.objects.filter(state=Task.RUNNING, worker_type__in=["prune", "prunejob"], store=store)
        if not running.exclude(pk=ctx.task.pk).exists():
            return
        if not said:
            ctx.log("waiting for the running prune of this datastore to finish first")
            said = True
        ctx.check_abort()
        time.sleep(1)


# -- verify ----------------------------------------------------------------------------

def _verify_one(ctx, eng, ref, crypt=None):
    result = v.verify_snapshot(eng, ref, ctx, crypt=crypt, upid=ctx.upid)
    if not result.ok:
        raise DatastoreError(f"verification of snapshot {ref} failed: " + "; ".join(result.errors[:5]))
    return result


def _verify_store(ctx, cfg, eng, ignore_verified, outdated_after, ns):
    crypt = None
    if cfg.key_fingerprint:
        try:
            crypt = cfg.crypt_config()
        except Exception as e:  # a broken key must not stop verification of plain snapshots
            ctx.warn(f"datastore key not usable: {e}")
    job = v.verify_datastore(eng, ctx, ignore_verified=ignore_verified, outdated_after_days=outdated_after,
                             ns=ns or "", crypt=crypt, upid=ctx.upid)
    if job.failed:
        names = ", ".join(str(r) for r in job.failed[:10])
        raise DatastoreError(f"verification failed for {len(job.failed)} snapshot(s): {names}")
    return job


@task_function
def verify(reporter, store, snapshot=None, ns="", ignore_verified=False, outdated_after=None):
    cfg, eng = _store(store)
    if snapshot:
        ref = _find(eng, snapshot, ns)
        _verify_one(reporter, eng, ref, _store_key_for(cfg, eng, ref))
        return
    _verify_store(reporter, cfg, eng, ignore_verified, outdated_after, ns)


@task_function
def verificationjob(reporter, job):
    j = VerifyJob.objects.select_related("store").get(job_id=job)
    cfg, eng = _store(j.store.name)
    reporter.log(f"verify job '{j.job_id}' on datastore '{cfg.name}'")
    _verify_store(reporter, cfg, eng, j.ignore_verified, j.outdated_after, j.ns)


# -- network client sessions -------------------------------------------------------------

@task_function
def client_session(reporter, **_):
    """The task of a pbsweb-client backup or reader session (datastores/sessions.py). The
    session runs inside the web server across the client's requests, never from a queue."""
    raise TaskError("a client session runs in the web server; it cannot be queued")
