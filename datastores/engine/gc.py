"""Garbage collection with PBS semantics.

Phase 1 (mark) sets the atime of every chunk that any index file references.
Phase 2 (sweep) removes chunks whose atime is older than

    min(phase-1 start − 24 h 5 min, oldest running writer start − 5 min)

so chunks a running backup wrote or reused (it touches reused chunks) are
kept. atime is set explicitly with os.utime, so relatime/noatime mounts
do not matter.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ._fsutil import write_atomic
from .chunkstore import DIGEST_RE
from .datastore import Datastore
from .errors import DatastoreError
from .index import read_index
from .report import Reporter

GC_STATUS = ".gc-status"
GC_LOCK = ".gc.lock"
DEFAULT_CUTOFF = 24 * 3600 + 5 * 60
WRITER_MARGIN = 5 * 60
MiB = 1024 * 1024


@dataclass
class GcStatus:
    upid: str | None = None
    start: float = 0.0
    end: float = 0.0
    min_atime: float = 0.0
    index_files: int = 0
    index_data_bytes: int = 0     # "original data usage": sum of archive sizes
    marked_chunks: int = 0
    missing_chunks: int = 0
    removed_chunks: int = 0
    removed_bytes: int = 0
    removed_bad: int = 0
    still_bad: int = 0
    removed_temp: int = 0
    pending_chunks: int = 0
    pending_bytes: int = 0
    disk_chunks: int = 0
    disk_bytes: int = 0

    @property
    def dedup_factor(self) -> float:
        return self.index_data_bytes / self.disk_bytes if self.disk_bytes else 1.0

    @property
    def average_chunk_size(self) -> int:
        return self.disk_bytes // self.disk_chunks if self.disk_chunks else 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dedup_factor"] = round(self.dedup_factor, 4)
        d["average_chunk_size"] = self.average_chunk_size
        return d


def read_gc_status(store: Datastore) -> dict | None:
    """The last GC's status (as written to .gc-status), or None."""
    try:
        return json.loads((store.path / GC_STATUS).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _index_files(root: Path):
    """Every .fidx/.didx below the store root (not chunks, not temp files)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if f.endswith((".fidx", ".didx")) and not f.startswith("."):
                yield Path(dirpath) / f


def garbage_collection(store: Datastore, reporter: Reporter | None = None, now: float | None = None,
                       cutoff_seconds: int = DEFAULT_CUTOFF, upid: str | None = None) -> GcStatus:
    """Run GC on the store; one at a time per store. `now` is injectable for tests."""
    reporter = reporter or Reporter()
    lock_fd = os.open(store.path / GC_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatastoreError(f"garbage collection is already running on datastore {store.path}") from None
        return _run(store, reporter, now, cutoff_seconds, upid)
    finally:
        os.close(lock_fd)


def _run(store: Datastore, reporter: Reporter, now, cutoff_seconds: int, upid) -> GcStatus:
    st = GcStatus(upid=upid)
    phase1_start = time.time() if now is None else float(now)
    st.start = phase1_start
    now_ns = int(phase1_start * 1e9)
    reporter.log(f"starting garbage collection on store {store.path}")
    reporter.log("Start GC phase1 (mark used chunks)")

    indexes = list(_index_files(store.path))
    # The chunk files' atimes are the set of marked chunks: a chunk whose atime is
    # already this phase's mark was marked through an earlier reference and is
    # skipped. A set of every digest would cost ~300 MB at 2.5 million chunks.
    # (A filesystem keeping whole seconds truncates the mark: that counts too.)
    now_s_ns = now_ns - now_ns % 1_000_000_000
    missing: set[bytes] = set()
    chunk_root = os.fspath(store.chunks.root)
    for n, path in enumerate(indexes):
        reporter.check_abort()
        # An unreadable index aborts GC: its chunks must not be swept.
        idx = read_index(path, str(path.relative_to(store.path)))
        st.index_files += 1
        st.index_data_bytes += idx.size
        for d in idx.digests:
            hx = d.hex()
            p = f"{chunk_root}/{hx[:4]}/{hx}"
            try:
                s = os.stat(p)
            except FileNotFoundError:
                if d not in missing:
                    missing.add(d)
                    st.marked_chunks += 1
                    st.missing_chunks += 1
                    reporter.warn(f"chunk {hx} is missing (referenced by {path.relative_to(store.path)})")
                continue
            if s.st_atime_ns == now_ns or s.st_atime_ns == now_s_ns:
                continue  # marked already
            try:
                os.utime(p, ns=(now_ns, s.st_mtime_ns))
            except FileNotFoundError:
                missing.add(d)
                st.marked_chunks += 1
                st.missing_chunks += 1
                reporter.warn(f"chunk {hx} is missing (referenced by {path.relative_to(store.path)})")
                continue
            st.marked_chunks += 1
        if indexes:
            reporter.progress(0.5 * (n + 1) / len(indexes), f"marked {n + 1} of {len(indexes)} indexes")
    reporter.log(f"marked {st.marked_chunks} chunks in {st.index_files} index files")

    oldest = store.oldest_writer_start()
    min_atime = phase1_start - cutoff_seconds
    if oldest is not None:
        min_atime = min(min_atime, oldest - WRITER_MARGIN)
        reporter.log(f"oldest running writer started {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(oldest))}")
    pending_limit = oldest if oldest is not None else phase1_start
    st.min_atime = min_atime

    reporter.log("Start GC phase2 (sweep unused chunks)")
    dirs = list(store.chunks.prefix_dirs())
    for n, d in enumerate(dirs):
        reporter.check_abort()
        for e in os.scandir(d):
            name = e.name
            try:
                s = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if len(name) == 64 and DIGEST_RE.match(name):
                if s.st_atime < min_atime:
                    # Re-check right before unlinking: a writer may have touched it meanwhile.
                    try:
                        s2 = os.stat(e.path)
                        if s2.st_atime < min_atime:
                            os.unlink(e.path)
                            st.removed_chunks += 1
                            st.removed_bytes += s2.st_size
                            continue
                        s = s2
                    except FileNotFoundError:
                        continue
                if s.st_atime < pending_limit:
                    st.pending_chunks += 1
                    st.pending_bytes += s.st_size
                st.disk_chunks += 1
                st.disk_bytes += s.st_size
            elif name.endswith(".bad"):
                if s.st_atime < min_atime:
                    os.unlink(e.path)
                    st.removed_bad += 1
                else:
                    st.still_bad += 1
            elif name.endswith(".tmp") and s.st_mtime < min_atime:
                os.unlink(e.path)  # left behind by a crashed writer
                st.removed_temp += 1
        reporter.progress(0.5 + 0.5 * (n + 1) / max(len(dirs), 1), "sweeping chunks")
    st.end = time.time() if now is None else max(time.time(), phase1_start)

    reporter.log(f"Removed garbage: {st.removed_bytes / MiB:.2f} MiB")
    reporter.log(f"Removed chunks: {st.removed_chunks}")
    reporter.log(f"Pending removals: {st.pending_bytes / MiB:.2f} MiB (in {st.pending_chunks} chunks)")
    if st.removed_bad:
        reporter.log(f"Removed bad chunks: {st.removed_bad}")
    if st.still_bad:
        reporter.log(f"Leftover bad chunks: {st.still_bad}")
    reporter.log(f"Original data usage: {st.index_data_bytes / MiB:.2f} MiB")
    if st.index_data_bytes:
        pct = 100.0 * st.disk_bytes / st.index_data_bytes
        reporter.log(f"On-Disk usage: {st.disk_bytes / MiB:.2f} MiB ({pct:.2f}%)")
    else:
        reporter.log(f"On-Disk usage: {st.disk_bytes / MiB:.2f} MiB")
    reporter.log(f"On-Disk chunks: {st.disk_chunks}")
    reporter.log(f"Deduplication factor: {st.dedup_factor:.2f}")
    reporter.log(f"Average chunk size: {st.average_chunk_size / 1024:.1f} KiB")
    if st.missing_chunks:
        reporter.warn(f"{st.missing_chunks} referenced chunks are missing; run verify")
    write_atomic(store.path / GC_STATUS, (json.dumps(st.to_dict(), indent=2) + "\n").encode())
    reporter.progress(1.0, "done")
    return st
