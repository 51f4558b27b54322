"""Push sync: local datastore -> bucket prefix.

Order per snapshot (invariant 1): missing chunks (parallel) -> index and blob
files -> manifest last. Removal (remove-vanished): manifests first, then the
snapshots' other files, then chunks no remote snapshot references, except
those younger than the provider's minimum storage duration (deferred).

Requests: the inventory tells what the remote holds, so a run that finds
nothing new costs one GET (the ownership marker); new data costs one PUT per
new object. A full listing happens only on reconcile (first run, on request,
after `reconcile_interval_days`, or when the marker/owner changed).

Object Lock (docs/DESIGN.md §3): with `lock_days`, every object is written
locked until upload + lock_days, and each run extends (PutObjectRetention, one
request per object) the locks that end within the margin of the objects the
kept snapshots need; the inventory keeps each lock's end, so a run with no
lock due makes no extra request. A deletion the lock forbids is deferred and
listed, and done by the first run after the lock ends (by version id, so the
bytes are really gone).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from datastores.engine.blob import check_blob_crc
from datastores.engine.errors import CorruptionError, DatastoreError
from datastores.engine.index import read_index
from datastores.engine.manifest import Manifest
from datastores.engine.prune import KeepOptions, prune_mark_kept
from datastores.engine.report import Reporter
from datastores.engine.source import check_chunk

from .bucket import Bucket, SyncError
from .bucket_source import BucketSource
from .common import (Arrivals, Progress, SyncResult, counters_delta, fmt_bytes, fmt_rate,
                     map_bounded, requests_line)
from .inventory import Inventory, chunk_rel, parse_chunk_rel
from .retention import policy_marks
from .scope import (LOCAL_ONLY_FILES, MANIFEST_NAME, MARKER_NAME, Scope, parse_snapshot_dir,
                    parse_snapshot_file)

DAY = 86400.0


@dataclass
class PushOptions:
    ns: str = ""                        # local namespace ("" = root)
    max_depth: int | None = None        # namespace levels below ns (None = all)
    group_filter: list[str] = field(default_factory=list)
    remove_vanished: bool = False
    transfer_last: int | None = None    # only the N newest snapshots per group
    workers: int = 8                    # parallel chunk uploads
    force: bool = False                 # take over a prefix owned by another datastore
    limiter: object | None = None       # RateLimiter/TokenBucket: .consume(nbytes)
    min_storage_days: float = 0         # provider minimum storage (Wasabi: 90)
    reconcile: bool = False             # force a full listing
    reconcile_interval_days: float | None = 30  # scheduled full listing
    counters: object | None = None      # remotes.engine.client.RequestCounters of the client
    verify_chunks: bool = True          # check CRC/digest of each chunk before upload
    now: Callable[[], float] = time.time  # injectable clock (min-storage and lock tests)
    lock_days: float = 0                # Object Lock: lock every object written this long (0: off)
    lock_mode: str = "governance"       # governance | compliance
    lock_margin_days: float | None = None  # extend locks ending within this (None: lock_days / 3)
    keep: KeepOptions | None = None     # own remote retention (PBS prune) instead of remove_vanished


@dataclass
class _Plan:
    ref: object
    manifest: bytes
    manifest_md5: str
    files: list[str]                    # snapshot files to upload (not the manifest)
    chunks: list[str]                   # digests believed missing on the remote
    bytes: int
    known: int = 0                      # chunks of the snapshot already on the remote
    repair: bool = False                # manifest already there; pieces were missing


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _fmt_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")


def _fmt_span(times) -> str:
    times = list(times)
    first, last = _fmt_day(min(times)), _fmt_day(max(times))
    return first if first == last else f"{first}..{last}"


def check_owner(bucket: Bucket, store_uuid: str, force: bool, reporter: Reporter) -> tuple[bool, bool]:
    """Read the remote marker (invariant 6). Returns (must_write_marker, taken_over).

    Raises SyncError when the prefix belongs to another datastore and force is off.
    """
    raw = bucket.get_if_exists(MARKER_NAME)
    if raw is None:
        return True, False
    try:
        remote_uuid = str(json.loads(raw)["uuid"])
    except (ValueError, KeyError, TypeError):
        remote_uuid = "<unreadable marker>"
    if remote_uuid == store_uuid:
        return False, False
    where = f"s3://{bucket.bucket}/{bucket.key(MARKER_NAME)}"
    if not force:
        raise SyncError(
            f"remote prefix s3://{bucket.bucket}/{bucket.prefix} belongs to datastore {remote_uuid}, "
            f"not to this datastore ({store_uuid}) (marker {where}); refusing to sync. "
            f"Use force to take it over.", key=bucket.key(MARKER_NAME), code="OwnerMismatch")
    reporter.warn(f"taking over remote prefix s3://{bucket.bucket}/{bucket.prefix} "
                  f"from datastore {remote_uuid} (forced)")
    return True, True


def push_sync(store, bucket: Bucket, inventory: Inventory, options: PushOptions | None = None,
              reporter: Reporter | None = None) -> SyncResult:
    return _Pusher(store, bucket, inventory, options or PushOptions(), reporter or Reporter()).run()


class _Pusher:
    def __init__(self, store, bucket, inventory, options, reporter):
        self.store = store
        self.bucket = bucket
        self.inv = inventory
        self.opt = options
        self.rep = reporter
        self.scope = Scope(options.ns, options.max_depth, tuple(options.group_filter))
        self.result = SyncResult("push")
        self.arrivals = Arrivals()
        self.bad_chunks: dict[str, str] = {}
        self.sent_chunks: set[str] = set()
        self.in_scope_total = 0
        self.vanished: set[str] = set()  # snapshots remove-vanished removes (or defers): locks not extended
        self.deferred_files: dict[str, float] = {}         # rel -> when its lock ends
        self.deferred_chunk_locks: dict[str, float] = {}   # digest -> when its lock ends
        self.lock_of: dict[str, tuple] = {}                # key -> (lock_until, version) before deleting

    # -- main ---------------------------------------------------------------
    def run(self) -> SyncResult:
        t0 = time.monotonic()
        before = self.opt.counters.snapshot() if self.opt.counters else None
        r = self.result
        self.rep.log(f"push datastore {self.store.path} to s3://{self.bucket.bucket}/{self.bucket.prefix}")
        try:
            self._prepare()
            plans, unchanged = self._plan()
            r.snapshots_unchanged = unchanged
            total = sum(p.bytes for p in plans)
            if plans:
                self.rep.log(f"{len(plans)} snapshot(s) to sync, {fmt_bytes(total)} to upload, "
                             f"{unchanged} already on the remote")
            self.progress = Progress(self.rep, total, "uploaded")
            with ThreadPoolExecutor(max_workers=max(1, self.opt.workers),
                                    thread_name_prefix="push") as pool:
                for plan in plans:
                    self.rep.check_abort()
                    self._push_snapshot(pool, plan)
            if self.opt.keep is not None and self.opt.keep.any():
                self._remove_vanished(self._pruned_by_policy())
            elif self.opt.remove_vanished:
                self._remove_vanished()
            if self.opt.lock_days:
                self._extend_locks()
        finally:
            self._flush_arrivals()
            r.elapsed = time.monotonic() - t0
            r.requests = counters_delta(self.opt.counters, before)
        r.summary = self._summary()
        self.rep.log(r.summary)
        if r.snapshots_failed:
            self.rep.warn(f"{len(r.snapshots_failed)} snapshot(s) failed: "
                          + "; ".join(n for n, _ in r.snapshots_failed))
        self.rep.progress(1.0, "done")
        return r

    def _prepare(self) -> None:
        """Ownership, marker and (if due) a full listing into the inventory."""
        write_marker, taken_over = check_owner(self.bucket, self.store.uuid, self.opt.force, self.rep)
        reason = self._reconcile_reason(write_marker, taken_over)
        if reason:
            t = time.monotonic()
            stats = self.inv.reconcile(self.bucket, now=self.opt.now())
            self.result.reconciled = True
            msg = (f"reconciled inventory with a full listing ({reason}): {stats.chunks} chunks, "
                   f"{stats.files} other objects, in {time.monotonic() - t:.1f}s")
            if stats.lost:
                msg += f"; {stats.lost} chunks expected on the remote are missing and will be uploaded again"
            self.rep.log(msg)
            self.inv.set_meta("deleting", None)
        if write_marker:
            data = (self.store.path / MARKER_NAME).read_bytes()
            self._put(MARKER_NAME, data)
        self.inv.set_meta("owner", self.store.uuid)

    def _reconcile_reason(self, write_marker: bool, taken_over: bool) -> str | None:
        """Why this run lists the whole prefix, or None (the plan asks too)."""
        last = self.inv.reconciled_at
        if self.opt.reconcile:
            return "requested"
        if last is None:
            return "first run"
        if taken_over or self.inv.get_meta("owner") != self.store.uuid:
            return "the prefix changed owner"
        if write_marker:
            return "the remote marker is missing"
        if self.inv.get_meta("deleting"):
            return "the last run was interrupted while deleting"
        if self.opt.reconcile_interval_days is not None and \
                self.opt.now() - last > self.opt.reconcile_interval_days * DAY:
            return f"last full listing {(self.opt.now() - last) / DAY:.0f} days ago"
        return None

    # -- planning -------------------------------------------------------------
    def _local_snapshots(self):
        refs = self.store.list_snapshots(self.scope.ns, recursive=True)
        return [r for r in refs if self.scope.contains(r.ns, r.backup_type, r.backup_id)]

    def _plan(self) -> tuple[list[_Plan], int]:
        refs = [r for r in self._local_snapshots() if r.finished]
        if self.opt.transfer_last:
            groups: dict[str, list] = {}
            for r in refs:
                groups.setdefault(r.group_rel_dir, []).append(r)
            refs = [r for g in groups.values() for r in sorted(g, key=lambda r: r.time)[-self.opt.transfer_last:]]
        refs.sort(key=lambda r: (r.time, r.rel_dir))  # oldest first
        if self.opt.keep is not None and self.opt.keep.any():
            refs = self._kept_by_policy(refs)
        self.in_scope_total = len(refs)
        plans, unchanged = [], 0
        planned: set[str] = set()
        for ref in refs:
            self.rep.check_abort()
            try:
                plan = self._plan_snapshot(ref, planned)
            except (DatastoreError, OSError) as e:
                self._fail(ref.rel_dir, f"cannot read local snapshot: {e}")
                continue
            if plan is None:
                unchanged += 1
            else:
                plans.append(plan)
                planned.update(plan.chunks)
        return plans, unchanged

    def _kept_by_policy(self, refs: list) -> list:
        """The local snapshots the remote retention keeps among them and the remote's own
        (one it would remove at once is never uploaded)."""
        candidates = {rd: s for rd, s in self._remote_snapshots().items() if self.scope.contains_path(s)}
        for ref in refs:
            candidates[ref.rel_dir] = parse_snapshot_dir(ref.rel_dir)
        marks = self._policy_marks(candidates)
        kept = [ref for ref in refs if marks.get(ref.rel_dir, True)]
        if len(kept) < len(refs):
            self.rep.log(f"own remote retention: {len(refs) - len(kept)} local snapshots are not uploaded "
                         "(the bucket's policy would remove them at once)")
        return kept

    def _remote_manifest_matches(self, rel: str, md5: str, data: bytes) -> bool:
        entry = self.inv.file(rel)
        if entry is None:
            return False
        if entry.md5 is None:  # ETag was not an MD5 (provider): compare the bytes once
            remote = self.bucket.get_if_exists(rel)
            if remote is None:
                self.inv.remove_files([rel])
                return False
            if remote != data:
                return False
            self.inv.add_file(rel, entry.size, md5, entry.uploaded)
            return True
        return entry.md5 == md5 and entry.size == len(data)

    def _plan_snapshot(self, ref, planned: set[str]) -> _Plan | None:
        sdir = self.store.path / ref.rel_dir
        manifest_rel = f"{ref.rel_dir}/{MANIFEST_NAME}"
        data = (sdir / MANIFEST_NAME).read_bytes()
        md5 = _md5(data)
        synced = self._remote_manifest_matches(manifest_rel, md5, data)
        if synced and not self.result.reconciled:
            return None  # trusted inventory: already on the remote (zero requests)
        manifest = Manifest.from_blob(data, f"{ref.rel_dir}/{MANIFEST_NAME}")
        names = [f["filename"] for f in manifest.files if f["filename"] not in LOCAL_ONLY_FILES]
        for n in names:
            if not (sdir / n).is_file():
                raise DatastoreError(f"file {ref.rel_dir}/{n} named by the manifest is missing")
        # files not in the manifest (e.g. a client log added later) travel too
        for n in sorted(os.listdir(sdir)):
            if n.endswith((".blob", ".didx", ".fidx")) and n not in names and \
                    n != MANIFEST_NAME and n not in LOCAL_ONLY_FILES:
                names.append(n)
        files, nbytes = [], 0
        for n in names:
            rel = f"{ref.rel_dir}/{n}"
            entry = self.inv.file(rel)
            content = (sdir / n).read_bytes()
            if entry is not None and entry.size == len(content) and entry.md5 in (None, _md5(content)):
                continue  # already on the remote (snapshot files do not change)
            files.append(n)
            nbytes += len(content)
        digests = sorted(self.store.chunk_digests(ref))
        # All missing chunks stay in this snapshot's plan even when an earlier
        # snapshot plans them too: if that one fails halfway, this one must
        # still upload them before its manifest (invariant 1).
        missing = self.inv.missing_chunks(digests)
        for d in missing:
            if d in planned:
                continue  # counted once for progress
            try:
                nbytes += self.store.chunks.path(d).stat().st_size
            except FileNotFoundError:
                pass  # reported when the upload reads it
        self.result.chunks_skipped += len(digests) - len(missing)
        if synced and not files and not missing:
            return None
        return _Plan(ref, data, md5, files, missing, nbytes + (0 if synced else len(data)),
                     known=len(digests) - len(missing), repair=synced)

    # -- uploading ------------------------------------------------------------
    def _lock_until(self) -> tuple[float, datetime]:
        """When a lock set now ends (whole seconds, as S3 keeps it)."""
        until = math.ceil(self.opt.now() + self.opt.lock_days * DAY)
        return until, datetime.fromtimestamp(until, timezone.utc)

    def _put(self, rel: str, data: bytes, if_absent: bool = False) -> bool:
        if self.opt.limiter is not None:
            self.opt.limiter.consume(len(data))
        if self.opt.lock_days:
            until, until_dt = self._lock_until()
            written, version = self.bucket.put_locked(rel, data, until_dt, self.opt.lock_mode, if_absent=if_absent)
            self.inv.add_file(rel, len(data), _md5(data), self.opt.now())
            if written:
                self.inv.set_locks("files", [(rel, until, version)])
        else:
            written, _ = self.bucket.put(rel, data, if_absent=if_absent)
            self.inv.add_file(rel, len(data), _md5(data), self.opt.now())
        self.result.objects_transferred += 1
        self.result.bytes_transferred += len(data)
        return written

    def _upload_chunk(self, digest: str) -> int:
        """Worker: read, verify and upload one chunk; returns bytes sent."""
        blob = self.store.source.read_chunk(digest)
        if self.opt.verify_chunks:  # an encrypted chunk: CRC only (its digest is keyed)
            check_chunk(digest, blob, crc_only_without_key=True)
        if self.opt.limiter is not None:
            self.opt.limiter.consume(len(blob))
        lock = None
        if self.opt.lock_days:
            until, until_dt = self._lock_until()
            written, version = self.bucket.put_locked(chunk_rel(digest), blob, until_dt, self.opt.lock_mode,
                                                      if_absent=True)
            lock = (until, version)
        else:
            written, _ = self.bucket.put(chunk_rel(digest), blob, if_absent=True)
        # a 412 (already there) also proves the remote has it (its lock, if not known, is extended later)
        self.arrivals.add((digest, len(blob), written, lock))
        return len(blob) if written else 0

    def _flush_arrivals(self) -> None:
        items = self.arrivals.drain()
        if items:
            now = self.opt.now()
            self.inv.add_chunks((d, now, size) for d, size, _, _ in items)
            self.inv.set_locks("chunks", [(d, *lock) for d, _, written, lock in items if written and lock])
            for d, size, written, _ in items:
                self.sent_chunks.add(d)
                if written:
                    self.result.chunks_transferred += 1
                    self.result.objects_transferred += 1
                    self.result.bytes_transferred += size

    def _push_snapshot(self, pool, plan: _Plan) -> None:
        ref = plan.ref
        t = time.monotonic()
        self.rep.log(f"sync snapshot {ref.rel_dir}" + (" (repairing missing objects)" if plan.repair else ""))
        need = [d for d in plan.chunks if d not in self.sent_chunks]
        bad = [d for d in need if d in self.bad_chunks]
        if bad:
            self._fail(ref.rel_dir, self.bad_chunks[bad[0]])
            return
        sent_bytes = 0
        chunk_count = 0
        error: Exception | None = None
        gen = map_bounded(pool, self._upload_chunk, need, self.opt.workers * 2)
        try:
            for digest, fut in gen:
                exc = fut.exception()
                if exc is None:
                    n = fut.result()
                    sent_bytes += n
                    chunk_count += 1
                    self.progress.add(n)
                    self.rep.check_abort()
                    continue
                if isinstance(exc, (CorruptionError, DatastoreError)):
                    self.bad_chunks[digest] = str(exc)
                error = exc
                break
        finally:
            gen.close()  # cancel and wait for the rest of this snapshot's uploads
            self._flush_arrivals()
        if isinstance(error, SyncError):
            raise error
        if error is not None and not isinstance(error, DatastoreError):
            raise error
        if error is not None:
            self._fail(ref.rel_dir, f"local {error}")
            return
        self.rep.check_abort()
        sdir = self.store.path / ref.rel_dir
        for name in plan.files:
            try:
                data = (sdir / name).read_bytes()
            except OSError as e:  # removed locally (prune) while we were busy
                self._fail(ref.rel_dir, f"cannot read local file {ref.rel_dir}/{name}: {e.strerror}")
                return
            if name.endswith((".didx", ".fidx")):
                try:
                    read_index(data, f"{ref.rel_dir}/{name}")
                except DatastoreError as e:
                    self._fail(ref.rel_dir, f"local {e}")
                    return
            elif not check_blob_crc(data):
                self._fail(ref.rel_dir, f"local file {ref.rel_dir}/{name}: CRC mismatch")
                return
            self._put(f"{ref.rel_dir}/{name}", data)
            sent_bytes += len(data)
            self.progress.add(len(data))
        if not plan.repair:
            self._put(f"{ref.rel_dir}/{MANIFEST_NAME}", plan.manifest)  # last: invariant 1
            sent_bytes += len(plan.manifest)
            self.progress.add(len(plan.manifest), force=True)
        self.result.snapshots_synced.append(ref.rel_dir)
        dt = time.monotonic() - t
        skipped = len(plan.chunks) - len(need)
        self.rep.log(f"  uploaded {chunk_count} chunks and {len(plan.files) + (0 if plan.repair else 1)} files, "
                     f"{fmt_bytes(sent_bytes)} in {dt:.2f}s ({fmt_rate(sent_bytes, dt)}); "
                     f"{plan.known + skipped} chunks already on the remote")

    def _fail(self, name: str, msg: str) -> None:
        self.result.snapshots_failed.append((name, msg))
        self.rep.warn(f"sync snapshot {name} failed, skipped: {msg}")

    # -- removal ---------------------------------------------------------------
    def _remote_snapshots(self) -> dict[str, object]:
        """rel_dir -> SnapshotPath of every manifest the inventory knows."""
        out = {}
        for rel in self.inv.manifests():
            snap = parse_snapshot_dir(rel.rsplit("/", 1)[0])
            if snap:
                out[snap.rel_dir] = snap
        return out

    def _policy_marks(self, candidates: dict[str, object]) -> dict[str, bool]:
        """Own remote retention: {rel_dir: kept} for snapshots {rel_dir: SnapshotPath}, each group pruned
        as PBS prunes (syncjobs.engine.retention, the prune simulator's marks)."""
        return {rd: prune_mark_kept(mark) for rd, mark in policy_marks(candidates, self.opt.keep).items()}

    def _pruned_by_policy(self) -> list[str]:
        """The remote snapshots in scope the job's own retention removes."""
        remote = {rd: s for rd, s in self._remote_snapshots().items() if self.scope.contains_path(s)}
        return sorted(rd for rd, kept in self._policy_marks(remote).items() if not kept)

    def _remove_vanished(self, vanished: list[str] | None = None) -> None:
        """Remove the remote snapshots in `vanished` (default: those gone locally), their
        unfinished uploads, then the chunks no snapshot references."""
        r = self.result
        local = {ref.rel_dir for ref in self._local_snapshots()}
        remote = self._remote_snapshots()
        if vanished is None:
            vanished = sorted(rd for rd, s in remote.items() if self.scope.contains_path(s) and rd not in local)
        self.vanished = set(vanished)
        removed: list[str] = []
        # files of snapshots whose upload never finished (no manifest) and
        # that are gone locally: nothing will complete them
        leftovers = []
        for rel in self.inv.files():
            parsed = parse_snapshot_file(rel)
            if parsed and parsed[0].rel_dir not in remote and parsed[0].rel_dir not in local \
                    and self.scope.contains_path(parsed[0]):
                leftovers.append(rel)
        gc_due_before = self.inv.get_meta("gc_due")
        if vanished or leftovers:
            # Chunks they alone used become garbage now: make sure a later run
            # removes them even if this one is killed before it gets there.
            self.inv.set_meta("gc_due", str(self.opt.now()))
        if vanished:
            self.rep.check_abort()
            # manifests first: from here on these snapshots are gone (invariant 1)
            manifests = [f"{rd}/{MANIFEST_NAME}" for rd in vanished]
            gone = self._delete_files(manifests)
            r.objects_deleted += len(gone)
            removed = [m.rsplit("/", 1)[0] for m in gone]
            rest = [rel for rd in removed for rel in self.inv.files(rd + "/")]
            r.objects_deleted += len(self._delete_files(rest))
            for rd in removed:
                self.rep.log(f"removed {'pruned' if self.opt.keep is not None else 'vanished'} snapshot {rd}")
            r.snapshots_removed.extend(removed)
            r.deferred_snapshots = [rd for rd in vanished if rd not in removed and f"{rd}/{MANIFEST_NAME}"
                                    in self.deferred_files]
            for rd in r.deferred_snapshots:
                self.rep.log(f"deferred removal of vanished snapshot {rd} until "
                             f"{_fmt_day(self.deferred_files[f'{rd}/{MANIFEST_NAME}'])}: Object Lock")
        done = []
        if leftovers:
            done = self._delete_files(leftovers)
            r.objects_deleted += len(done)
            if done:
                self.rep.log(f"removed {len(done)} files of unfinished uploads "
                             f"of snapshots that no longer exist locally")
        if (vanished or leftovers) and not removed and not done:
            self.inv.set_meta("gc_due", gc_due_before)  # all of it waits for locks: no new garbage
        waiting = {rel: t for rel, t in self.deferred_files.items() if not rel.endswith("/" + MANIFEST_NAME)}
        if waiting:
            r.deferred_files = len(waiting)
            self.rep.log(f"deferred deleting {len(waiting)} files of removed snapshots until "
                         f"{_fmt_span(waiting.values())}: Object Lock")
        due = self.inv.get_meta("gc_due")
        gc_due = due is not None and float(due) <= self.opt.now()
        if removed or leftovers or r.reconciled or gc_due:
            self._remove_unreferenced_chunks()

    # Deleting forgets the objects in the inventory FIRST: a run killed between the two
    # steps then leaves objects the inventory does not know, never entries for objects
    # that are gone, which would let a later snapshot skip uploading chunks it needs
    # (invariant 1). The "deleting" mark makes the next run relist the prefix, so the
    # objects it forgot but did not delete are found and removed then (invariant 3).
    def _delete_files(self, rels: list[str]) -> list[str]:
        """Delete snapshot files; returns the ones deleted. Locked ones wait (self.deferred_files)."""
        entries = {rel: self.inv.file(rel) for rel in rels}
        rels, versions = self._unlocked("files", rels, {r: e.uploaded for r, e in entries.items() if e})
        self.inv.set_meta("deleting", "1")
        self.inv.remove_files(rels)
        failed = self._report_failures(self.bucket.delete_many(rels, versions), "files")
        self.inv.set_meta("deleting", None)
        for rel in failed:
            if entries.get(rel) is not None:
                e = entries[rel]
                self.inv.add_file(rel, e.size, e.md5, e.uploaded)
                self.inv.set_locks("files", [(rel, *self.lock_of[rel])])
        return [rel for rel in rels if rel not in failed]

    def _delete_chunks(self, entries: list[tuple[str, float, int]], versions: dict[str, str]) -> list[str]:
        """Delete chunk objects given as inventory entries; returns the digests deleted."""
        digests = [d for d, _, _ in entries]
        self.inv.set_meta("deleting", "1")
        self.inv.remove_chunks(digests)
        failed = self._report_failures(self.bucket.delete_many(
            (chunk_rel(d) for d in digests), {chunk_rel(d): v for d, v in versions.items()}), "chunks")
        self.inv.set_meta("deleting", None)
        self.inv.add_chunks(e for e in entries if chunk_rel(e[0]) in failed)
        self.inv.set_locks("chunks", [(d, *self.lock_of[d]) for d in digests if chunk_rel(d) in failed])
        return [d for d in digests if chunk_rel(d) not in failed]

    def _unlocked(self, table: str, keys: list[str], uploaded: dict[str, float]) -> tuple[list[str], dict]:
        """The keys whose lock has ended (or that were never locked), and their version ids.

        The others go to self.deferred_files / self.deferred_chunk_locks with the lock's end.
        A lock not recorded (an object found by a listing) is taken to end lock_days after upload.
        """
        now = self.opt.now()
        locks = self.inv.locks(table, keys)
        self.lock_of.update(locks)
        free, versions = [], {}
        waiting = self.deferred_files if table == "files" else self.deferred_chunk_locks
        for k in keys:
            until, version = locks.get(k, (None, None))
            if until is None and self.opt.lock_days:
                until = uploaded.get(k, now) + self.opt.lock_days * DAY
            if until is not None and until > now:
                waiting[k] = until
                continue
            free.append(k)
            if version:
                versions[k] = version
        return free, versions

    def _report_failures(self, failures, table: str) -> set[str]:
        # With Object Lock, AccessDenied on a delete is a lock we did not know of (set by a default
        # retention or by hand): the deletion waits like the others, it is no error.
        locked = [f for f in failures if self.opt.lock_days and f[1] == "AccessDenied"]
        others = [f for f in failures if f not in locked]
        retry = self.opt.now() + (self.opt.lock_margin_days or self.opt.lock_days / 3) * DAY
        for rel, _, _ in locked:
            if table == "files":
                self.deferred_files[rel] = retry
            else:
                self.deferred_chunk_locks[parse_chunk_rel(rel) or rel] = retry
        if others:
            self.result.errors.append("could not delete " + self.bucket.describe_failures(others))
            self.rep.warn(self.result.errors[-1])
        return {f[0] for f in failures}

    def _referenced_chunks(self, exclude: set[str] = frozenset()) -> set[str]:
        """Digests referenced by any snapshot on the remote (all namespaces,
        not just the job's scope) but those in `exclude`. Local indexes are used
        where the local manifest equals the remote one; others are read from the bucket."""
        local = {ref.rel_dir: ref for ref in self.store.list_snapshots("", recursive=True) if ref.finished}
        refs: set[str] = set()
        for rel in self.inv.manifests():
            rd = rel.rsplit("/", 1)[0]
            if rd in exclude:
                continue
            entry = self.inv.file(rel)
            ref = local.get(rd)
            if ref is not None and entry is not None:
                try:
                    data = (self.store.path / rel).read_bytes()
                except OSError:
                    data = None
                if data is not None and entry.md5 == _md5(data):
                    refs.update(self.store.chunk_digests(ref))
                    continue
            snapshot = BucketSource(self.bucket).snapshot(rd)
            for name in snapshot.manifest.filenames:
                if name.endswith((".didx", ".fidx")):
                    refs.update(d.hex() for d in snapshot.index(name).digests)
        # chunks that made it for a snapshot that failed this run: the next run needs them
        for rd, _ in self.result.snapshots_failed:
            if rd in local:
                try:
                    refs.update(self.store.chunk_digests(local[rd]))
                except DatastoreError:
                    pass
        return refs

    def _remove_unreferenced_chunks(self) -> None:
        r = self.result
        self.rep.check_abort()
        try:
            referenced = self._referenced_chunks()
        except (DatastoreError, SyncError) as e:
            r.errors.append(f"not removing unreferenced chunks: cannot read the remote snapshots: {e}")
            self.rep.warn(r.errors[-1])
            return
        now = self.opt.now()
        min_age = self.opt.min_storage_days * DAY
        candidates, deferred = [], {}  # deferred: digest -> until
        sizes = {}
        for digest, uploaded, size in self.inv.iter_chunks():
            if digest in referenced:
                continue
            sizes[digest] = size
            if min_age and now - uploaded < min_age:
                deferred[digest] = uploaded + min_age
            else:
                candidates.append((digest, uploaded, size))
        free, versions = self._unlocked("chunks", [d for d, _, _ in candidates],
                                        {d: t for d, t, _ in candidates})
        free = set(free)
        delete = [e for e in candidates if e[0] in free]
        if delete:
            done = self._delete_chunks(delete, versions)
            r.objects_deleted += len(done)
            self.rep.log(f"removed {len(done)} unreferenced chunks")
        locked = self.deferred_chunk_locks
        deferred.update(locked)
        # a deferral may end before the files waiting for a lock: run again then
        pending = list(deferred.values()) + list(self.deferred_files.values())
        self.inv.set_meta("gc_due", str(min(pending)) if pending else None)
        if deferred:
            nbytes = sum(sizes.get(d, 0) for d in deferred)
            r.deferred_chunks, r.deferred_bytes, r.deferred_until = len(deferred), nbytes, min(deferred.values())
            why = [f"min storage {self.opt.min_storage_days:g} days"] if len(locked) < len(deferred) else []
            if locked:
                why.append(f"Object Lock ({len(locked)})" if why else "Object Lock")
            self.rep.log(f"deferred {len(deferred)} chunks ({fmt_bytes(nbytes)}) until "
                         f"{_fmt_span(deferred.values())}: {', '.join(why)}")

    # -- Object Lock ------------------------------------------------------------
    def _extend_locks(self) -> None:
        """Extend the locks ending within the margin of every object a kept snapshot needs:
        its files, and the chunks it references (not those of vanished snapshots, nor garbage)."""
        r = self.result
        self.rep.check_abort()
        margin = self.opt.lock_margin_days if self.opt.lock_margin_days is not None else self.opt.lock_days / 3
        before = self.opt.now() + margin * DAY
        targets = []
        for rel, version in self.inv.locks_due("files", before):
            parsed = parse_snapshot_file(rel)
            if rel not in self.deferred_files and not (parsed and parsed[0].rel_dir in self.vanished):
                targets.append(("files", rel, rel, version))
        due_chunks = self.inv.locks_due("chunks", before)
        if due_chunks:
            try:
                kept = self._referenced_chunks(exclude=self.vanished)
            except (DatastoreError, SyncError) as e:
                r.errors.append(f"not extending chunk locks: cannot read the remote snapshots: {e}")
                self.rep.warn(r.errors[-1])
                kept = set()
            targets += [("chunks", d, chunk_rel(d), v) for d, v in due_chunks if d in kept]
        if not targets:
            return
        until, until_dt = self._lock_until()
        extended: dict[str, list] = {"files": [], "chunks": []}
        failures = []

        def extend(target):
            self.bucket.extend_lock(target[2], target[3], until_dt, self.opt.lock_mode)

        with ThreadPoolExecutor(max_workers=max(1, self.opt.workers), thread_name_prefix="lock") as pool:
            for target, fut in map_bounded(pool, extend, targets, self.opt.workers * 2):
                if fut.exception() is None:
                    extended[target[0]].append((target[1], until, None))
                else:
                    failures.append(str(fut.exception()))
        for table, items in extended.items():
            self.inv.set_locks(table, items)
        r.locks_extended = len(extended["files"]) + len(extended["chunks"])
        self.rep.log(f"extended the Object Lock of {r.locks_extended} objects ({len(extended['chunks'])} chunks) "
                     f"until {_fmt_day(until)}: {r.locks_extended} PutObjectRetention requests")
        if failures:
            r.errors.append(f"could not extend the Object Lock of {len(failures)} objects: {failures[0]}"
                            + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""))
            self.rep.warn(r.errors[-1])

    # -- summary ----------------------------------------------------------------
    def _summary(self) -> str:
        r = self.result
        parts = []
        if r.objects_transferred:
            parts.append(f"uploaded {r.objects_transferred} objects ({r.chunks_transferred} chunks), "
                         f"{fmt_bytes(r.bytes_transferred)} in {r.elapsed:.1f}s "
                         f"({fmt_rate(r.bytes_transferred, r.elapsed)})")
        elif not r.snapshots_failed:
            why = ("no finished snapshots in the job's scope" if not self.in_scope_total
                   else "nothing new since the last run")
            parts.append(f"nothing transferred: {why} ({r.snapshots_unchanged} snapshots already on the remote)")
        if r.snapshots_synced:
            parts.append(f"{len(r.snapshots_synced)} snapshots synced")
        if r.snapshots_removed or r.objects_deleted:
            parts.append(f"removed {len(r.snapshots_removed)} snapshots, deleted {r.objects_deleted} objects")
        if r.deferred_chunks:
            parts.append(f"deferred {r.deferred_chunks} chunks ({fmt_bytes(r.deferred_bytes)})")
        if r.deferred_snapshots or r.deferred_files:
            parts.append(f"deferred removing {len(r.deferred_snapshots)} snapshots and {r.deferred_files} "
                         "files (Object Lock)")
        if r.locks_extended:
            parts.append(f"extended {r.locks_extended} locks")
        if r.snapshots_failed:
            parts.append(f"{len(r.snapshots_failed)} snapshots failed")
        line = "; ".join(parts)
        req = requests_line(r.requests)
        return f"{line}; {req}" if req else line
