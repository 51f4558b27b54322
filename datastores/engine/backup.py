"""Back up directories (as PAX tar streams, content-defined chunks) and files or
block devices (fixed 4 MiB chunks) into a new snapshot.

Pipeline: the calling thread fills large reusable buffers from the source and
cuts them into chunks (FastCDC or fixed); a small thread pool hashes each chunk,
skips it if the store already has it, else compresses, encrypts and writes it.
zstd, BLAKE3, AES and file I/O release the GIL, so this scales over cores.
Results are consumed in order to build the index. Memory stays bounded by the
buffer pool.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pyfastcdc import FastCDC

from ._fsutil import tune_malloc, write_atomic
from .blob import encode_blob_parts
from .catalog import CATALOG_NAME, write_catalog
from .crypto import chunk_digest
from .datastore import Datastore, SnapshotRef, validate_backup_id, validate_backup_type, validate_ns
from .errors import DatastoreError
from .index import DEFAULT_CHUNK_SIZE, DynamicIndexWriter, FixedIndexWriter
from .manifest import MANIFEST_NAME, Manifest
from .report import Reporter, TaskAborted
from .tarstream import TarStream

CDC_MIN, CDC_AVG, CDC_MAX = 1 << 20, 4 << 20, 16 << 20
BUF_SIZE = 32 << 20          # ≥ 2 × max chunk; a multiple of the fixed chunk size
N_BUFFERS = 4
MAX_INFLIGHT = 12      # chunks queued or in work (bounded memory: ~12 × 5 MiB + buffers)
ARCHIVE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*\.(tar|img)$")
MiB = 1024 * 1024


def _default_workers() -> int:
    return max(2, min(4, (os.cpu_count() or 2) + 1))


@dataclass
class ArchiveStats:
    name: str
    filename: str
    size: int = 0             # bytes of archive data (bytes read)
    chunks: int = 0
    chunks_new: int = 0
    chunks_reused: int = 0
    bytes_new: int = 0        # uncompressed bytes of new chunks
    stored_new: int = 0       # bytes written to the chunk store (blobs)
    csum: str = ""
    files: int = 0
    duration: float = 0.0


@dataclass
class BackupResult:
    ref: SnapshotRef
    archives: list[ArchiveStats] = field(default_factory=list)
    duration: float = 0.0
    warnings: int = 0

    def _sum(self, attr):
        return sum(getattr(a, attr) for a in self.archives)

    @property
    def bytes_read(self) -> int:
        return self._sum("size")

    @property
    def chunks_new(self) -> int:
        return self._sum("chunks_new")

    @property
    def chunks_reused(self) -> int:
        return self._sum("chunks_reused")

    @property
    def bytes_new(self) -> int:
        return self._sum("bytes_new")

    @property
    def stored_new(self) -> int:
        return self._sum("stored_new")

    @property
    def dedup_factor(self) -> float | None:
        """Data read / new data that had to be stored (uncompressed); None if nothing was new."""
        return self.bytes_read / self.bytes_new if self.bytes_new else None

    @property
    def mbps(self) -> float:
        return self.bytes_read / MiB / self.duration if self.duration > 0 else 0.0

    def summary(self) -> str:
        return (f"backup {self.ref}: {self.bytes_read / MiB:.1f} MiB read in {self.duration:.2f} s "
                f"({self.mbps:.1f} MiB/s); chunks new {self.chunks_new}, reused {self.chunks_reused}; "
                f"new data {self.bytes_new / MiB:.1f} MiB stored as {self.stored_new / MiB:.1f} MiB; "
                f"dedup factor " + (f"{self.dedup_factor:.2f}" if self.dedup_factor else "n/a (no new data)"))


class _ChunkPipeline:
    """Hash/compress/encrypt/store chunks in worker threads, results in order."""

    def __init__(self, target, crypt, pool: ThreadPoolExecutor, max_inflight: int):
        # target: where chunks go: a ChunkStore, or the network client's uploader;
        # anything with touch(hex) -> known? and insert(hex, blob parts, fsync) -> new?
        self.target = target
        self.crypt = crypt
        self.pool = pool
        self.max_inflight = max_inflight
        self.pending: deque = deque()    # (future, buffer id)
        self.seen: set[bytes] = set()    # digests handled in this backup run

    def _work(self, data):
        digest = chunk_digest(data, self.crypt)
        hx = digest.hex()
        chunks = self.target
        # Existing chunk: touch it (so GC keeps it) and skip compression.
        if chunks.touch(hx):
            return digest, len(data), False, 0
        parts = encode_blob_parts(data, self.crypt)
        new = chunks.insert(hx, parts, fsync=False)
        return digest, len(data), new, sum(len(p) for p in parts) if new else 0

    def submit(self, data, buf_id: int, sink) -> None:
        self.pending.append((self.pool.submit(self._work, data), buf_id, sink))
        while len(self.pending) > self.max_inflight:
            self._complete_one()

    def _complete_one(self) -> None:
        fut, _, (writer, stats) = self.pending.popleft()
        digest, length, new, stored = fut.result()
        writer.add_chunk(digest, length)
        stats.chunks += 1
        if new and digest not in self.seen:
            stats.chunks_new += 1
            stats.bytes_new += length
            stats.stored_new += stored
        else:
            stats.chunks_reused += 1
        self.seen.add(digest)

    def release_buffer(self, buf_id: int) -> None:
        """Wait until no queued chunk still points into buffer buf_id."""
        while any(b == buf_id for _, b, _ in self.pending):
            self._complete_one()

    def drain(self) -> None:
        while self.pending:
            self._complete_one()

    def cancel(self) -> None:
        for fut, _, _ in self.pending:
            fut.cancel()
        for fut, _, _ in self.pending:
            if not fut.cancelled():
                try:
                    fut.result()
                except Exception:
                    pass
        self.pending.clear()


def _fill(src, mv) -> int:
    """Read into mv until it is full or the source ends."""
    n = 0
    while n < len(mv):
        k = src.readinto(mv[n:])
        if not k:
            break
        n += k
    return n


def _ingest(src, pipeline: _ChunkPipeline, buffers: list, writer, stats: ArchiveStats,
            cdc: FastCDC | None, reporter: Reporter, total: int | None, label: str) -> None:
    """Cut the stream `src` into chunks (CDC if cdc else fixed) and feed the pipeline."""
    sink = (writer, stats)
    carry_from = None      # (buffer, start, end) of the incomplete last chunk
    bi = 0
    done = 0
    t0 = time.monotonic()
    last_report = t0
    while True:
        reporter.check_abort()
        pipeline.release_buffer(bi)
        buf = buffers[bi]
        carry = 0
        if carry_from is not None:
            pbuf, s, e = carry_from
            carry = e - s
            buf[:carry] = pbuf[s:e]
        n = _fill(src, buf[carry:])
        done += n
        end = carry + n
        eof = end < len(buf)
        view = buf[:end]
        if cdc is not None:
            pieces = [(c.offset, c.length) for c in cdc.cut_buf(view)] if end else []
        else:
            cs = DEFAULT_CHUNK_SIZE
            pieces = [(o, min(cs, end - o)) for o in range(0, end, cs)]
        carry_from = None
        if not eof and cdc is not None and pieces:
            o, ln = pieces.pop()
            carry_from = (buf, o, o + ln)
        for o, ln in pieces:
            pipeline.submit(view[o:o + ln], bi, sink)
        now = time.monotonic()
        if now - last_report > 2:
            last_report = now
            rate = done / MiB / (now - t0)
            if total:
                reporter.progress(min(done / total, 1.0), f"{label}: {done / MiB:.0f} of {total / MiB:.0f} MiB")
            else:
                reporter.progress(0.0, f"{label}: {done / MiB:.0f} MiB")
            reporter.log(f"{label}: {done / MiB:.0f} MiB read, {rate:.1f} MiB/s")
        if eof:
            break
        bi = (bi + 1) % len(buffers)
    pipeline.drain()
    stats.size = writer.size


class _FileSource:
    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY)

    def readinto(self, mv) -> int:
        return os.readv(self.fd, [mv])

    def close(self) -> None:
        os.close(self.fd)


def validate_archive_name(name: str) -> str:
    if not isinstance(name, str) or not ARCHIVE_RE.match(name):
        raise DatastoreError(f"archive name: {name!r} must look like NAME.tar (directory) or "
                             f"NAME.img (file or block device), letters, digits, '_', '.', '-'")
    return name


def parse_archive_specs(specs) -> list[tuple[str, str]]:
    """Command-line archives, `NAME.tar:PATH` or `NAME.img:FILE`, as checked (name, path) pairs
    (the server's `backup` command and the network client); DatastoreError names the bad one."""
    pairs = []
    for spec in specs:
        name, sep, path = spec.partition(":")
        if not sep or not path:
            raise DatastoreError(f"archive: {spec!r} is not of the form NAME.tar:PATH or NAME.img:FILE")
        if "\0" in spec:
            raise DatastoreError(f"archive: {spec!r} contains a NUL byte")
        pairs.append((name, path))
    _check_archives(pairs)
    return pairs


def _check_archives(archives) -> list[tuple[str, Path]]:
    if not archives:
        raise DatastoreError("archives: at least one NAME.tar:PATH or NAME.img:PATH is required")
    seen, out = set(), []
    for name, source in archives:
        validate_archive_name(name)
        if name in seen:
            raise DatastoreError(f"archive name: {name} is given twice")
        seen.add(name)
        p = Path(source)
        try:
            st = os.stat(p)
        except OSError as e:
            raise DatastoreError(f"archive {name}: source {p} cannot be read: {e.strerror}") from None
        if name.endswith(".tar") and not stat.S_ISDIR(st.st_mode):
            raise DatastoreError(f"archive {name}: source {p} is not a directory (.tar archives back up directories)")
        if name.endswith(".img") and not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise DatastoreError(f"archive {name}: source {p} is not a file or block device")
        if not os.access(p, os.R_OK):
            raise DatastoreError(f"archive {name}: source {p} is not readable")
        out.append((name, p))
    return out


def backup_archive(name: str, source, target, crypt, pool: ThreadPoolExecutor, buffers: list,
                   reporter: Reporter, ctime: int, index_path=None, one_file_system: bool = True,
                   exclude=()) -> tuple:
    """Read one archive (NAME.tar: a directory, NAME.img: a file or device), send its chunks
    to `target` (see _ChunkPipeline) and build its index (written to index_path if given).

    Returns (index bytes, Index, ArchiveStats, catalog entries or None, warnings). Shared by
    the local backup and the network client, so both cut and encode chunks identically.
    """
    pipeline = _ChunkPipeline(target, crypt, pool, max_inflight=MAX_INFLIGHT)
    filename = name + (".didx" if name.endswith(".tar") else ".fidx")
    stats = ArchiveStats(name, filename)
    t0 = time.monotonic()
    if name.endswith(".tar"):
        writer = DynamicIndexWriter(index_path, ctime=ctime)
        src = TarStream(source, reporter, one_file_system, exclude=exclude)
        cdc = FastCDC(CDC_AVG, min_size=CDC_MIN, max_size=CDC_MAX)
        total = None
    else:
        writer = FixedIndexWriter(index_path, DEFAULT_CHUNK_SIZE, ctime=ctime)
        src = _FileSource(source)
        cdc = None
        st = os.stat(source)
        total = st.st_size if stat.S_ISREG(st.st_mode) else None
    reporter.log(f"archive {name}: reading {source}")
    try:
        _ingest(src, pipeline, buffers, writer, stats, cdc, reporter, total, name)
    except BaseException:
        pipeline.cancel()
        raise
    finally:
        src.close()
    data = writer.to_bytes()
    index = writer.close()
    stats.csum = index.csum
    stats.duration = time.monotonic() - t0
    rate = stats.size / MiB / stats.duration if stats.duration else 0
    reporter.log(f"archive {name}: {stats.size / MiB:.1f} MiB in {stats.duration:.2f} s "
                 f"({rate:.1f} MiB/s), {stats.chunks} chunks: {stats.chunks_new} new, "
                 f"{stats.chunks_reused} reused; new data {stats.bytes_new / MiB:.1f} MiB "
                 f"stored as {stats.stored_new / MiB:.1f} MiB")
    if isinstance(src, TarStream):
        stats.files = src.files
        return data, index, stats, src.catalog, src.warnings
    return data, index, stats, None, 0


def run_backup(store: Datastore, backup_type: str, backup_id: str, archives,
               ns: str = "", crypt=None, reporter: Reporter | None = None,
               backup_time: int | None = None, owner: str | None = None,
               workers: int | None = None, one_file_system: bool = True) -> BackupResult:
    """Back up `archives` [(name, source_path)] into a new snapshot and return stats.

    Everything is validated before anything is written. On any error (or abort)
    the new snapshot directory is removed; the manifest is written last, so a
    crash leaves at most an unfinished snapshot.
    """
    reporter = reporter or Reporter()
    tune_malloc()
    validate_backup_type(backup_type)
    validate_backup_id(backup_id)
    validate_ns(ns)
    if owner is not None and (not owner.strip() or "\n" in owner):
        raise DatastoreError("owner: must be one non-empty line")
    sources = _check_archives(archives)
    if backup_time is None:
        backup_time = int(time.time())
    ref = SnapshotRef.make(ns, backup_type, backup_id, int(backup_time))
    if ns and not store.ns_path(ns).is_dir():
        raise DatastoreError(f"namespace {ns} does not exist in datastore {store.path}")
    sdir = store.snapshot_path(ref)
    if sdir.exists():
        raise DatastoreError(f"snapshot {ref} already exists")
    existing_owner = store.get_owner(ns, backup_type, backup_id)
    if owner and existing_owner and existing_owner != owner:
        raise DatastoreError(f"backup group {backup_type}/{backup_id}: owned by {existing_owner}, not {owner}")

    result = BackupResult(ref)
    t_start = time.monotonic()
    workers = workers or _default_workers()
    mode = "encrypted" if crypt is not None else "unencrypted"
    reporter.log(f"starting backup {ref} to datastore {store.path} ({mode}"
                 + (f", key {crypt.fingerprint}" if crypt else "") + ")")
    # One writer per group; forget/prune of the group wait for us (docs/PROTOCOL.md §4).
    with store.group_lock(ns, backup_type, backup_id, wait=2.0), store.writer("backup"):
        sdir.parent.mkdir(parents=True, exist_ok=True)
        if existing_owner is None:
            store.set_owner(ns, backup_type, backup_id, owner or "root@pam")
        try:
            sdir.mkdir()
        except FileExistsError:
            raise DatastoreError(f"snapshot {ref} already exists") from None
        manifest = Manifest(backup_type, backup_id, int(backup_time))
        catalog: dict[str, list] = {}
        warnings = 0
        try:
            buffers = [memoryview(bytearray(BUF_SIZE)) for _ in range(N_BUFFERS)]
            with ThreadPoolExecutor(workers, thread_name_prefix="chunker") as pool:
                for name, source in sources:
                    filename = name + (".didx" if name.endswith(".tar") else ".fidx")
                    _, index, stats, tar_catalog, tar_warnings = backup_archive(
                        name, source, store.chunks, crypt, pool, buffers, reporter, backup_time,
                        index_path=sdir / filename, one_file_system=one_file_system)
                    if tar_catalog is not None:
                        warnings += tar_warnings
                        catalog[name] = tar_catalog
                    manifest.add_file(filename, index.size, index.csum,
                                      "encrypt" if crypt is not None else "none")
                    result.archives.append(stats)
            reporter.check_abort()
            if catalog:
                write_catalog(sdir / CATALOG_NAME, catalog, crypt)
            if crypt is not None:
                manifest.sign(crypt)
            # Chunks were written without per-file fsync: flush them all before
            # the manifest makes the snapshot visible as finished.
            store.chunks.sync()
            write_atomic(sdir / MANIFEST_NAME, manifest.to_blob())
        except BaseException as e:
            shutil.rmtree(sdir, ignore_errors=True)
            if isinstance(e, TaskAborted):
                reporter.warn(f"backup {ref} aborted; snapshot removed")
            raise
    result.duration = time.monotonic() - t_start
    result.warnings = warnings
    reporter.log(result.summary())
    reporter.progress(1.0, "done")
    return result
