"""Pull sync (bucket prefix -> local datastore), the bucket browser's listing,
and restoring one archive straight from a bucket.

Every downloaded object is verified before it is written (invariant 5):
indexes by their own checksum and the manifest's csum/size, blobs by CRC and
csum/size, chunks by CRC and (plain ones) digest. Per snapshot the order is
chunks -> index/blob files -> manifest last, so a failure leaves no manifest
and no bad data; a corrupt or missing object fails that snapshot, naming the
key, and the job goes on with the next.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from datastores.engine._fsutil import tune_malloc
from datastores.engine.datastore import Datastore, parse_time
from datastores.engine.errors import CorruptionError
from datastores.engine.report import Reporter
from datastores.engine.restore import restore_snapshot_archive

from .bucket import Bucket, SyncError
from .bucket_source import (BucketSource, RemoteSnapshot, chunks_without_snapshot, list_snapshot_objects,
                            list_snapshots, read_chunks, read_files)
from .common import Progress, SyncResult, counters_delta, fmt_bytes, fmt_rate, requests_line
from .inventory import etag_md5
from .scope import (LOCAL_ONLY_FILES, MANIFEST_NAME, Scope, normalize_ns, parse_snapshot_dir,
                    parse_snapshot_file)

__all__ = ["RESTORE_WORKERS", "PullOptions", "RemoteSnapshot", "list_remote_snapshots", "pull_sync",
           "restore_from_bucket"]

RESTORE_WORKERS = 8  # parallel GETs of a restore straight from a bucket (the client's pool is sized to it)


@dataclass
class PullOptions:
    ns: str = ""                        # namespace (same path on both sides; "" = root)
    max_depth: int | None = None
    group_filter: list[str] = field(default_factory=list)
    remove_vanished: bool = False       # delete local snapshots gone from the bucket
    transfer_last: int | None = None
    workers: int = 8                    # parallel chunk downloads
    limiter: object | None = None       # RateLimiter/TokenBucket for rate-in
    counters: object | None = None
    owner: str | None = None            # owner of groups the pull creates (as PBS's job owner)


def list_remote_snapshots(bucket: Bucket, ns: str = "", max_depth: int | None = None,
                          group_filter=()) -> list[RemoteSnapshot]:
    """Finished snapshots in a bucket prefix, read from their manifests
    (one GET each, no chunks), sorted by (ns, type, id, time). Snapshots whose
    manifest cannot be read are skipped (see pull for a loud failure)."""
    return list_snapshots(bucket, ns, max_depth, group_filter).snapshots


# -- pull ---------------------------------------------------------------------------------

class _SnapshotFailed(Exception):
    pass


def pull_sync(bucket: Bucket, store: Datastore, inventory=None, options: PullOptions | None = None,
              reporter: Reporter | None = None) -> SyncResult:
    """Pull the snapshots of a bucket prefix into a local datastore.

    `inventory` (optional) learns the remote snapshot files seen in the listing.
    """
    opt = options or PullOptions()
    rep = reporter or Reporter()
    tune_malloc()  # chunk-sized buffers from the heap, not fresh mmaps (see _fsutil)
    r = SyncResult("pull")
    scope = Scope(normalize_ns(opt.ns), opt.max_depth, tuple(opt.group_filter))
    t0 = time.monotonic()
    before = opt.counters.snapshot() if opt.counters else None
    rep.log(f"pull from s3://{bucket.bucket}/{bucket.prefix} into datastore {store.path}")
    try:
        with store.writer("pull"), ThreadPoolExecutor(max_workers=max(1, opt.workers),
                                                      thread_name_prefix="pull") as pool:
            source = BucketSource(bucket, opt.limiter)
            listing = list_snapshot_objects(bucket, scope)
            if inventory is not None:
                for rd, objs in listing.items():
                    for name, info in objs.items():
                        inventory.add_file(f"{rd}/{name}", info.size, etag_md5(info.etag),
                                           info.last_modified.timestamp())
            r.no_snapshot_warning = chunks_without_snapshot(bucket, listing, scope.ns)
            if r.no_snapshot_warning:
                rep.warn(r.no_snapshot_warning)
            remote = {rd: objs for rd, objs in listing.items()
                      if MANIFEST_NAME in objs and scope.contains_path(parse_snapshot_dir(rd))}
            todo = sorted(remote, key=lambda rd: (parse_snapshot_dir(rd).time, rd))
            # as PBS: per group, snapshots older than the newest local one are
            # not fetched again (they were pruned locally); that one is re-checked
            newest: dict[str, int] = {}
            for ref in store.list_snapshots(scope.ns, recursive=True):
                if ref.finished:
                    newest[ref.group_rel_dir] = max(newest.get(ref.group_rel_dir, 0), ref.time)
            older = [rd for rd in todo if not (store.path / rd / MANIFEST_NAME).is_file()
                     and parse_time(parse_snapshot_dir(rd).time) < newest.get(rd.rsplit("/", 1)[0], 0)]
            if older:
                rep.log(f"skipping {len(older)} snapshot(s) older than the newest local one of their group")
                todo = [rd for rd in todo if rd not in set(older)]
            if opt.transfer_last:
                groups: dict[str, list] = {}
                for rd in todo:
                    groups.setdefault(rd.rsplit("/", 1)[0], []).append(rd)
                keep = {rd for g in groups.values() for rd in g[-opt.transfer_last:]}
                todo = [rd for rd in todo if rd in keep]
            progress = Progress(rep, 0, "downloaded")
            for i, rd in enumerate(todo):
                rep.check_abort()
                where = (i, len(todo))
                try:
                    _pull_snapshot(source, store, rd, remote[rd], opt, rep, r, pool, progress, where)
                except _SnapshotFailed as e:
                    r.snapshots_failed.append((rd, str(e)))
                    rep.warn(f"sync snapshot {rd} failed, skipped: {e}")
            if opt.remove_vanished:
                for ref in store.list_snapshots(scope.ns, recursive=True):
                    if not scope.contains(ref.ns, ref.backup_type, ref.backup_id) or ref.rel_dir in remote:
                        continue
                    if not ref.finished:
                        continue  # a backup in progress is not ours to remove
                    if ref.protected:
                        rep.warn(f"not removing vanished snapshot {ref.rel_dir}: it is protected")
                        continue
                    store.remove_snapshot(ref)
                    r.snapshots_removed.append(ref.rel_dir)
                    rep.log(f"removed vanished snapshot {ref.rel_dir}")
    finally:
        r.elapsed = time.monotonic() - t0
        r.requests = counters_delta(opt.counters, before)
    parts = []
    if r.objects_transferred:
        parts.append(f"downloaded {r.objects_transferred} objects ({r.chunks_transferred} chunks), "
                     f"{fmt_bytes(r.bytes_transferred)} in {r.elapsed:.1f}s "
                     f"({fmt_rate(r.bytes_transferred, r.elapsed)})")
    elif r.no_snapshot_warning:
        parts.append(f"nothing transferred: {r.no_snapshot_warning}")
    elif not r.snapshots_failed:
        parts.append(f"nothing transferred: nothing new since the last run "
                     f"({r.snapshots_unchanged} snapshots already local)")
    if r.snapshots_synced:
        parts.append(f"{len(r.snapshots_synced)} snapshots synced")
    if r.snapshots_removed:
        parts.append(f"removed {len(r.snapshots_removed)} vanished snapshots")
    if r.snapshots_failed:
        parts.append(f"{len(r.snapshots_failed)} snapshots failed")
    req = requests_line(r.requests)
    r.summary = "; ".join(parts) + (f"; {req}" if req else "")
    rep.log(r.summary)
    rep.progress(1.0, "done")
    return r


def _pull_snapshot(source: BucketSource, store, rd, objs, opt, rep, r: SyncResult, pool, progress,
                   where) -> None:
    i, n = where
    manifest_rel = f"{rd}/{MANIFEST_NAME}"
    local_manifest = store.path / manifest_rel

    def fetched(nbytes: int) -> None:
        r.objects_transferred += 1
        r.bytes_transferred += nbytes

    try:
        data = source.read_file(manifest_rel)
        if local_manifest.is_file() and local_manifest.read_bytes() == data:
            r.snapshots_unchanged += 1
            return
        fetched(len(data))
        t = time.monotonic()
        rep.log(f"sync snapshot {rd}")
        snapshot = source.snapshot(rd, data)
        manifest = snapshot.manifest
        snap = parse_snapshot_file(manifest_rel)[0]
        if (manifest.backup_type, manifest.backup_id, manifest.backup_time) != \
                (snap.backup_type, snap.backup_id, parse_time(snap.time)):
            raise CorruptionError(f"{snapshot.what(MANIFEST_NAME)}: manifest is for another snapshot", manifest_rel)
        # files: everything the manifest names (except local-only ones), then
        # other recognised blobs in the directory (e.g. a client log)
        entries = [f["filename"] for f in manifest.files if f["filename"] not in LOCAL_ONLY_FILES]
        extra = [n for n in objs if n.endswith(".blob") and n not in entries
                 and n != MANIFEST_NAME and n not in LOCAL_ONLY_FILES]

        def file_read(nbytes: int) -> None:
            fetched(nbytes)
            progress.add(nbytes, fraction=i / n)

        files, digests = read_files(snapshot, entries + extra, on_read=file_read)
        missing = [d for d in digests if not store.chunks.exists(d)]
        r.chunks_skipped += len(digests) - len(missing)
        nbytes = done = 0
        # each chunk is fetched, checked and written on a worker thread (one sync at the end)
        gen = read_chunks(pool, source, missing, opt.workers,
                          sink=lambda d, blob: store.insert_chunk(d, blob, verify=False, fsync=False))
        try:
            for digest, fut in gen:
                size = fut.result()
                nbytes += size
                done += 1
                r.chunks_transferred += 1
                fetched(size)
                progress.add(size, fraction=(i + done / max(len(missing), 1)) / n)
        finally:
            gen.close()
        store.chunks.sync()
        for name, content in files.items():
            store.write_file_atomic(f"{rd}/{name}", content)
        # files the new manifest no longer names
        sdir = store.path / rd
        for name in os.listdir(sdir):
            if name.endswith((".didx", ".fidx", ".blob")) and name not in files and \
                    name != MANIFEST_NAME and name not in LOCAL_ONLY_FILES:
                os.unlink(sdir / name)
        if opt.owner and store.get_owner(snap.ns, snap.backup_type, snap.backup_id) is None:
            store.set_owner(snap.ns, snap.backup_type, snap.backup_id, opt.owner)
        store.write_file_atomic(manifest_rel, data)  # last: the snapshot is now finished
    except CorruptionError as e:  # corrupt or missing objects (MissingObjectError) fail this snapshot
        raise _SnapshotFailed(str(e)) from None
    r.snapshots_synced.append(rd)
    dt = time.monotonic() - t
    rep.log(f"  downloaded {len(missing)} chunks ({len(digests) - len(missing)} already local) "
            f"and {len(files) + 1} files, {fmt_bytes(nbytes)} in {dt:.2f}s ({fmt_rate(nbytes, dt)})")


# -- restore straight from a bucket ---------------------------------------------------------

def restore_from_bucket(bucket: Bucket, snapshot_rel_dir: str, archive_name: str, target, crypt=None,
                        *, workers: int = RESTORE_WORKERS, work_dir=None, reporter: Reporter | None = None,
                        limiter=None):
    """Restore one archive of a bucket snapshot without pulling the snapshot.

    Reads the manifest, that archive's index and only the chunks it needs
    through the archive reader (`workers` parallel GETs ahead of the
    restore, each chunk checked: CRC, decryption, digest, length). Returns
    the engine's RestoreResult. `work_dir` is kept for callers; nothing is
    staged on disk any more.
    """
    rep = reporter or Reporter()
    rd = snapshot_rel_dir.strip("/")
    if parse_snapshot_dir(rd) is None:
        raise SyncError(f"{snapshot_rel_dir!r} is not a snapshot path ([ns/…/]<type>/<id>/<time>)")
    source = BucketSource(bucket, limiter)
    snapshot = source.snapshot(rd)
    filename, _ = snapshot.archive_entry(archive_name)
    idx = snapshot.index(filename)
    source.expect(d.hex() for d in idx.digests)  # a chunk named again is fetched once
    rep.log(f"fetching {len(set(idx.digests))} chunks of {rd}/{filename} from s3://{bucket.bucket}/{bucket.prefix}")
    return restore_snapshot_archive(snapshot, archive_name, target, crypt, rep,
                                    readahead=max(4, 2 * workers), workers=max(1, workers))
