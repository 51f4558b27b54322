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
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import blake3

from datastores.engine.blob import check_blob_crc
from datastores.engine.datastore import Datastore, parse_time
from datastores.engine.errors import CorruptionError, DatastoreError
from datastores.engine.index import read_index
from datastores.engine.manifest import Manifest
from datastores.engine.report import Reporter

from .bucket import Bucket, SyncError
from .common import (Progress, SyncResult, counters_delta, fmt_bytes, fmt_rate, map_bounded,
                     requests_line)
from .inventory import chunk_rel, etag_md5
from .scope import (LOCAL_ONLY_FILES, MANIFEST_NAME, Scope, normalize_ns, parse_snapshot_dir,
                    parse_snapshot_file)

_MISSING = ("NoSuchKey", "404", "NotFound")


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


@dataclass
class RemoteFile:
    filename: str
    size: int            # as the manifest states it (data size for indexes)
    stored_size: int     # object size in the bucket (0 if missing)
    csum: str
    crypt_mode: str


@dataclass
class RemoteSnapshot:
    ns: str
    backup_type: str
    backup_id: str
    time: int
    time_str: str
    rel_dir: str
    files: list[RemoteFile]
    encrypted: bool
    key_fingerprint: str | None
    size: int            # sum of the files' sizes (archive data)
    stored_size: int     # sum of the files' object sizes in the bucket
    notes: str = ""
    manifest: bytes = b""

    @property
    def name(self) -> str:
        return f"{self.backup_type}/{self.backup_id}/{self.time_str}"


# -- listing ------------------------------------------------------------------------

def _list_snapshot_objects(bucket: Bucket, scope: Scope | None = None) -> dict[str, dict]:
    """rel_dir -> {filename: ObjectInfo} for every snapshot directory in the
    prefix, listing everything except `.chunks/` (one LIST per 1000 files,
    plus one for the top level)."""
    start = "".join(f"ns/{p}/" for p in scope.ns.split("/") if p) if scope and scope.ns else ""
    dirs, _ = bucket.list_dirs(start)
    out: dict[str, dict] = {}
    for d in dirs:
        if d.startswith(".chunks"):
            continue
        for info in bucket.list_info(d):
            parsed = parse_snapshot_file(info.rel)
            if parsed:
                out.setdefault(parsed[0].rel_dir, {})[parsed[1]] = info
    return out


def _remote_snapshot(rd: str, objs: dict, manifest_blob: bytes, what: str) -> RemoteSnapshot:
    snap = parse_snapshot_dir(rd)
    m = Manifest.from_blob(manifest_blob, what)
    files = [RemoteFile(f["filename"], int(f["size"]),
                        objs[f["filename"]].size if f["filename"] in objs else 0,
                        f["csum"], f.get("crypt-mode", "none")) for f in m.files]
    return RemoteSnapshot(
        ns=snap.ns, backup_type=snap.backup_type, backup_id=snap.backup_id,
        time=parse_time(snap.time), time_str=snap.time, rel_dir=rd, files=files,
        encrypted=m.encrypted, key_fingerprint=m.key_fingerprint,
        size=sum(f.size for f in files),
        stored_size=sum(o.size for o in objs.values()), notes=m.notes, manifest=manifest_blob)


def list_remote_snapshots(bucket: Bucket, ns: str = "", max_depth: int | None = None,
                          group_filter=()) -> list[RemoteSnapshot]:
    """Finished snapshots in a bucket prefix, read from their manifests
    (one GET each, no chunks), sorted by (ns, type, id, time). Snapshots whose
    manifest cannot be read are skipped (see pull for a loud failure)."""
    scope = Scope(ns, max_depth, tuple(group_filter))
    out = []
    for rd, objs in _list_snapshot_objects(bucket, scope).items():
        if MANIFEST_NAME not in objs:
            continue
        if not scope.contains_path(parse_snapshot_dir(rd)):
            continue
        rel = f"{rd}/{MANIFEST_NAME}"
        try:
            out.append(_remote_snapshot(rd, objs, bucket.get(rel), bucket.key(rel)))
        except (SyncError, DatastoreError):
            continue
    out.sort(key=lambda s: (s.ns, s.backup_type, s.backup_id, s.time))
    return out


# -- verification ---------------------------------------------------------------------

def blob_csum(data: bytes) -> str:
    """Manifest csum of a blob file: BLAKE3 of its stored bytes."""
    return blake3.blake3(data).hexdigest()


def verify_file(name: str, data: bytes, entry: dict | None, key: str):
    """Check a downloaded snapshot file against its manifest entry; returns the
    Index for index files. Raises CorruptionError naming the key."""
    if name.endswith((".didx", ".fidx")):
        idx = read_index(data, key)  # verifies the index's own checksum
        if entry is not None and (idx.csum != entry["csum"] or idx.size != int(entry["size"])):
            raise CorruptionError(f"{key}: index does not match the manifest "
                                  f"(csum {idx.csum[:16]}…, size {idx.size})", key)
        return idx
    if not check_blob_crc(data):
        raise CorruptionError(f"{key}: CRC mismatch (the object is corrupt)", key)
    if entry is not None and (len(data) != int(entry["size"]) or blob_csum(data) != entry["csum"]):
        raise CorruptionError(f"{key}: blob does not match the manifest (size or csum)", key)
    return None


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
    r = SyncResult("pull")
    scope = Scope(normalize_ns(opt.ns), opt.max_depth, tuple(opt.group_filter))
    t0 = time.monotonic()
    before = opt.counters.snapshot() if opt.counters else None
    rep.log(f"pull from s3://{bucket.bucket}/{bucket.prefix} into datastore {store.path}")
    try:
        with store.writer("pull"), ThreadPoolExecutor(max_workers=max(1, opt.workers),
                                                      thread_name_prefix="pull") as pool:
            listing = _list_snapshot_objects(bucket, scope)
            if inventory is not None:
                for rd, objs in listing.items():
                    for name, info in objs.items():
                        inventory.add_file(f"{rd}/{name}", info.size, etag_md5(info.etag),
                                           info.last_modified.timestamp())
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
                    _pull_snapshot(bucket, store, rd, remote[rd], opt, rep, r, pool, progress, where)
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


def _get(bucket: Bucket, rel: str, opt, r: SyncResult) -> bytes:
    try:
        data = bucket.get(rel)
    except SyncError as e:
        if e.code in _MISSING:
            raise _SnapshotFailed(f"object {e.key} is missing: {e}") from None
        raise
    if opt.limiter is not None:
        opt.limiter.consume(len(data))
    r.objects_transferred += 1
    r.bytes_transferred += len(data)
    return data


def _fetch_chunk(bucket: Bucket, store: Datastore, digest: str, limiter) -> int:
    """Worker: download one chunk, verify it (CRC, digest) and insert it."""
    blob = bucket.get(chunk_rel(digest))
    if limiter is not None:
        limiter.consume(len(blob))
    try:
        store.insert_chunk(digest, blob, verify=True, fsync=False)
    except CorruptionError as e:
        raise CorruptionError(f"{bucket.key(chunk_rel(digest))}: corrupt chunk: {e}", digest) from None
    return len(blob)


def _pull_snapshot(bucket, store, rd, objs, opt, rep, r: SyncResult, pool, progress, where) -> None:
    i, n = where
    manifest_rel = f"{rd}/{MANIFEST_NAME}"
    local_manifest = store.path / manifest_rel
    data = _get(bucket, manifest_rel, opt, r)
    if local_manifest.is_file() and local_manifest.read_bytes() == data:
        r.snapshots_unchanged += 1
        r.objects_transferred -= 1
        r.bytes_transferred -= len(data)
        return
    t = time.monotonic()
    rep.log(f"sync snapshot {rd}")
    try:
        manifest = Manifest.from_blob(data, bucket.key(manifest_rel))
        snap = parse_snapshot_file(manifest_rel)[0]
        if (manifest.backup_type, manifest.backup_id, manifest.backup_time) != \
                (snap.backup_type, snap.backup_id, parse_time(snap.time)):
            raise CorruptionError(f"{bucket.key(manifest_rel)}: manifest is for another snapshot", manifest_rel)
        # files: everything the manifest names (except local-only ones), then
        # other recognised blobs in the directory (e.g. a client log)
        entries = {f["filename"]: f for f in manifest.files if f["filename"] not in LOCAL_ONLY_FILES}
        extra = [n for n in objs if n.endswith(".blob") and n not in entries
                 and n != MANIFEST_NAME and n not in LOCAL_ONLY_FILES]
        files: dict[str, bytes] = {}
        digests: list[str] = []
        seen: set[str] = set()
        for name in list(entries) + extra:
            rel = f"{rd}/{name}"
            content = _get(bucket, rel, opt, r)
            progress.add(len(content), fraction=i / n)
            idx = verify_file(name, content, entries.get(name), bucket.key(rel))
            files[name] = content
            if idx is not None:
                for d in idx.digests:
                    h = d.hex()
                    if h not in seen:
                        seen.add(h)
                        digests.append(h)
        missing = [d for d in digests if not store.chunks.exists(d)]
        r.chunks_skipped += len(digests) - len(missing)
        nbytes = done = 0
        gen = map_bounded(pool, lambda d: _fetch_chunk(bucket, store, d, opt.limiter), missing, opt.workers * 2)
        try:
            for digest, fut in gen:
                exc = fut.exception()
                if exc is not None:
                    raise exc
                size = fut.result()
                nbytes += size
                done += 1
                r.chunks_transferred += 1
                r.objects_transferred += 1
                r.bytes_transferred += size
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
    except CorruptionError as e:
        raise _SnapshotFailed(str(e)) from None
    except SyncError as e:
        if e.code in _MISSING:
            raise _SnapshotFailed(f"object {e.key} is missing: {e}") from None
        raise
    r.snapshots_synced.append(rd)
    dt = time.monotonic() - t
    rep.log(f"  downloaded {len(missing)} chunks ({len(digests) - len(missing)} already local) "
            f"and {len(files) + 1} files, {fmt_bytes(nbytes)} in {dt:.2f}s ({fmt_rate(nbytes, dt)})")


# -- restore straight from a bucket ---------------------------------------------------------

def restore_from_bucket(bucket: Bucket, snapshot_rel_dir: str, archive_name: str, target, crypt=None,
                        *, workers: int = 8, work_dir=None, reporter: Reporter | None = None,
                        limiter=None):
    """Restore one archive of a bucket snapshot without pulling the snapshot.

    Downloads the manifest, that archive's index and only the chunks it needs
    (in parallel, each verified) into a temporary datastore under `work_dir`
    (default: the system temp dir), restores with the datastore engine (which
    decrypts, checks the signature and every digest again), then removes the
    temporary store. Returns the engine's RestoreResult.
    """
    from datastores.engine.restore import archive_filename, restore_archive

    rep = reporter or Reporter()
    rd = snapshot_rel_dir.strip("/")
    snap = parse_snapshot_dir(rd)
    if snap is None:
        raise SyncError(f"{snapshot_rel_dir!r} is not a snapshot path ([ns/…/]<type>/<id>/<time>)")
    filename = archive_filename(archive_name)
    manifest_rel = f"{rd}/{MANIFEST_NAME}"
    manifest_blob = bucket.get(manifest_rel)
    manifest = Manifest.from_blob(manifest_blob, bucket.key(manifest_rel))
    entry = manifest.file(filename)
    if entry is None:
        raise DatastoreError(f"snapshot {rd} has no archive {archive_name} "
                             f"(has: {', '.join(manifest.filenames)})")
    index_rel = f"{rd}/{filename}"
    index_blob = bucket.get(index_rel)
    idx = verify_file(filename, index_blob, entry, bucket.key(index_rel))
    digests = list(dict.fromkeys(d.hex() for d in idx.digests))
    tmp = tempfile.mkdtemp(prefix=".pbsweb-restore-", dir=work_dir)
    try:
        store = Datastore.create(os.path.join(tmp, "store"))
        rep.log(f"fetching {len(digests)} chunks of {rd}/{filename} from s3://{bucket.bucket}/{bucket.prefix}")
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="restore") as pool:
            gen = map_bounded(pool, lambda d: _fetch_chunk(bucket, store, d, limiter), digests, workers * 2)
            try:
                for _, fut in gen:
                    fut.result()
                    rep.check_abort()
            finally:
                gen.close()
        store.write_file_atomic(index_rel, index_blob)
        store.write_file_atomic(manifest_rel, manifest_blob)
        ref = store.snapshot_ref(snap.ns, snap.backup_type, snap.backup_id, parse_time(snap.time))
        return restore_archive(store, ref, archive_name, target, crypt, reporter=rep)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
