"""A bucket prefix as a ChunkSource, and reading snapshots out of it
(docs/READERS.md): the one place pull, the drills, Remote Content and restore
straight from a bucket read snapshots through.

Listing reads only manifests; `read_files` and `read_chunks` fetch a
snapshot's files and chunks, each checked (datastores.engine.source) before
anyone uses it.
"""
from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from datastores.engine.datastore import parse_time
from datastores.engine.errors import CorruptionError, DatastoreError, MissingObjectError
from datastores.engine.manifest import Manifest
from datastores.engine.source import SnapshotReader, check_chunk, unique_digests

from .bucket import Bucket, SyncError
from .common import map_bounded
from .inventory import chunk_rel
from .scope import MANIFEST_NAME, Scope, normalize_ns, parse_snapshot_dir, parse_snapshot_file

MISSING_CODES = ("NoSuchKey", "404", "NotFound")


class BucketSource:
    """Stored chunks and snapshot files of a bucket prefix (a ChunkSource).

    GETs go through the Bucket (its body retries; the client's request
    counters and botocore's retries); `limiter` (rate-in) is charged per
    object. A missing object raises MissingObjectError naming its key; any
    other S3 failure raises SyncError (the job cannot go on)."""

    REPEAT_BUDGET = 64 * 1024 * 1024  # stored bytes kept for chunks an archive names again

    def __init__(self, bucket: Bucket, limiter=None):
        self.bucket = bucket
        self.limiter = limiter
        self._lock = threading.Lock()
        self._uses: Counter | None = None        # digest -> reads still expected (expect())
        self._kept: OrderedDict[str, bytes] = OrderedDict()
        self._kept_bytes = 0

    def expect(self, digests, budget: int | None = None) -> None:
        """Say which chunks will be read, in order, repeats included (an
        archive's index). A chunk named again later is kept after its GET
        (its stored bytes, oldest dropped first beyond `budget`) and handed
        out again instead of a second GET: a restore reads each chunk once
        although the reader keeps only the last few it decoded."""
        with self._lock:
            self._uses = Counter(digests)
            self._kept.clear()
            self._kept_bytes = 0
            self._budget = self.REPEAT_BUDGET if budget is None else budget

    def _kept_chunk(self, digest_hex: str) -> bytes | None:
        with self._lock:
            self._uses[digest_hex] -= 1
            blob = self._kept.get(digest_hex)
            if blob is not None and self._uses[digest_hex] <= 0:
                del self._kept[digest_hex]
                self._kept_bytes -= len(blob)
            return blob

    def _keep(self, digest_hex: str, blob: bytes) -> None:
        with self._lock:
            if self._uses[digest_hex] <= 0 or digest_hex in self._kept or len(blob) > self._budget:
                return
            self._kept[digest_hex] = blob
            self._kept_bytes += len(blob)
            while self._kept_bytes > self._budget:
                _, old = self._kept.popitem(last=False)
                self._kept_bytes -= len(old)

    def _get(self, rel: str) -> bytes:
        try:
            data = self.bucket.get(rel)
        except SyncError as e:
            if e.code in MISSING_CODES:
                raise MissingObjectError(f"object {e.key} is missing: {e}", e.key or self.bucket.key(rel)) from None
            raise
        if self.limiter is not None:
            self.limiter.consume(len(data))
        return data

    def read_chunk(self, digest_hex: str) -> bytes:
        if self._uses is None:
            return self._get(chunk_rel(digest_hex))
        blob = self._kept_chunk(digest_hex)
        if blob is None:
            blob = self._get(chunk_rel(digest_hex))
            self._keep(digest_hex, blob)
        return blob

    def read_file(self, rel_path: str) -> bytes:
        return self._get(rel_path)

    def read_checked_chunk(self, digest_hex: str, crypt=None) -> bytes:
        """The stored blob of a chunk after check_chunk (an encrypted one
        without its key: CRC only); CorruptionError names the object key."""
        blob = self.read_chunk(digest_hex)
        try:
            check_chunk(digest_hex, blob, crypt, crc_only_without_key=True)
        except CorruptionError as e:
            raise CorruptionError(f"{self.bucket.key(chunk_rel(digest_hex))}: corrupt chunk: {e}",
                                  digest_hex) from None
        return blob

    def snapshot(self, rel_dir: str, manifest_blob: bytes | None = None) -> SnapshotReader:
        """A snapshot of the prefix, named by its object keys in messages."""
        rd = rel_dir.strip("/")
        return SnapshotReader(self, rd, self.bucket.key(rd), manifest_blob=manifest_blob)


# -- reading a snapshot's objects -----------------------------------------------------------

def read_files(snapshot: SnapshotReader, names, problems: list | None = None,
               on_read=None) -> tuple[dict[str, bytes], list[str]]:
    """Fetch the named files of a snapshot, each checked against the manifest;
    returns ({name: stored bytes}, hex digests of the chunks their indexes
    name, each once). A failure raises, or with `problems` is recorded there
    ("<key>: <what is wrong>") and the file skipped. on_read(nbytes) is
    called per file fetched."""
    files: dict[str, bytes] = {}
    indexes = []
    for name in names:
        try:
            data, idx = snapshot.read_file(name)
        except (CorruptionError, DatastoreError, SyncError) as e:
            if problems is None:
                raise
            problems.append(problem_text(e, snapshot.what(name)))
            continue
        if on_read is not None:
            on_read(len(data))
        files[name] = data
        if idx is not None:
            indexes.append(idx)
    return files, unique_digests(indexes)


def read_chunks(pool, source: BucketSource, digests, workers: int, crypt=None, sink=None):
    """Fetch and check chunks on the pool (`workers` threads, the client's
    connection pool sized to match); yield (digest, Future) as they complete.

    Everything per chunk happens on the worker thread: the GET, check_chunk
    (CRC, decompression, digest: these release the GIL) and, with `sink`,
    sink(digest, blob) (pull writes the chunk into the datastore there).
    The Future's result is the stored blob, or with `sink` its size.
    Memory: without a sink at most 2 * workers blobs are submitted or
    waiting for the caller; with one the caller never holds the bytes, only
    the `workers` running chunks do, and 3 * workers more digests are queued
    (they hold nothing) so that a worker finds its next chunk without
    waiting for the caller's thread. result() raises CorruptionError naming
    the key, or SyncError; the remote's request limits apply to every GET
    (remotes/engine/limits.py, in the client)."""
    workers = max(1, workers)
    if sink is None:
        return map_bounded(pool, lambda d: source.read_checked_chunk(d, crypt), digests, workers * 2)

    def fetch_check_store(d):
        blob = source.read_checked_chunk(d, crypt)
        sink(d, blob)
        return len(blob)
    return map_bounded(pool, fetch_check_store, digests, workers * 4)


def problem_text(e: Exception, key: str) -> str:
    """'<key>: <what is wrong>' for a failed object."""
    if isinstance(e, SyncError) and e.code in MISSING_CODES:
        return f"{e.key or key}: object is missing"
    if isinstance(e, MissingObjectError):
        return f"{e.object or key}: object is missing"
    msg = str(e)
    return msg if key in msg else f"{key}: {msg}"


# -- listing ----------------------------------------------------------------------------------

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


def list_snapshot_objects(bucket: Bucket, scope: Scope | None = None) -> dict[str, dict]:
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


def chunks_without_snapshot(bucket: Bucket, listing: dict[str, dict], ns: str) -> str:
    """When a whole prefix lists no snapshot manifest, one LIST of `.chunks/`
    (one page) tells whether it holds chunks anyway; returns the warning to
    show ("" when there is nothing to say). A prefix full of data must never
    read as "nothing new" (an S3 server whose delimiter listing drops deeper
    prefixes produces exactly this)."""
    if ns or any(MANIFEST_NAME in objs for objs in listing.values()):
        return ""
    n, more = bucket.count_objects(".chunks/")
    if not n:
        return ""
    return (f"{n}{'+' if more else ''} chunk objects but no snapshot: s3://{bucket.bucket}/"
            f"{bucket.key('')} holds chunks, yet the listing shows no snapshot manifest "
            f"({MANIFEST_NAME}); check the bucket listing (provider) or whether the snapshots were removed")


def remote_snapshot(rd: str, objs: dict, manifest_blob: bytes, what: str) -> RemoteSnapshot:
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


@dataclass
class Listing:
    snapshots: list[RemoteSnapshot] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)   # "<key>: <error>" of manifests that fail
    unfinished: list[str] = field(default_factory=list)   # snapshot dirs without a manifest
    warning: str = ""                                     # e.g. chunk objects but no snapshot

    def namespaces(self) -> list[str]:
        out = {""}
        for s in self.snapshots:
            parts = s.ns.split("/") if s.ns else []
            for i in range(len(parts)):
                out.add("/".join(parts[:i + 1]))
        return sorted(out)

    def groups(self) -> list[dict]:
        groups: dict[tuple, dict] = {}
        for s in self.snapshots:
            g = groups.setdefault((s.ns, s.backup_type, s.backup_id), {
                "ns": s.ns, "type": s.backup_type, "id": s.backup_id, "snapshots": [], "size": 0})
            g["snapshots"].append(s)
            g["size"] += s.size
        out = []
        for g in groups.values():
            g["snapshots"].sort(key=lambda s: s.time, reverse=True)
            g["last"] = g["snapshots"][0]
            g["name"] = f"{g['type']}/{g['id']}"
            out.append(g)
        out.sort(key=lambda g: (g["ns"], g["type"], g["id"]))
        return out


def list_snapshots(bucket: Bucket, ns: str = "", max_depth: int | None = None, group_filter=()) -> Listing:
    """Every finished snapshot under the prefix (one GET per manifest, no
    chunk), sorted by (ns, type, id, time); a manifest that cannot be read is
    reported by key, not skipped silently."""
    scope = Scope(normalize_ns(ns), max_depth, tuple(group_filter))
    out = Listing()
    objects = list_snapshot_objects(bucket, scope)
    for rd, objs in objects.items():
        snap = parse_snapshot_dir(rd)
        if snap is None or not scope.contains_path(snap):
            continue
        if MANIFEST_NAME not in objs:
            out.unfinished.append(rd)
            continue
        rel = f"{rd}/{MANIFEST_NAME}"
        try:
            out.snapshots.append(remote_snapshot(rd, objs, bucket.get(rel), bucket.key(rel)))
        except (SyncError, DatastoreError) as e:
            out.unreadable.append(problem_text(e, bucket.key(rel)))
    out.snapshots.sort(key=lambda s: (s.ns, s.backup_type, s.backup_id, s.time))
    out.warning = chunks_without_snapshot(bucket, objects, scope.ns)
    return out
