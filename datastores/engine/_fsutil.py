"""Small filesystem helpers: atomic writes, directory fsync, filesystem sync."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_name(path: Path) -> Path:
    """A unique temp file name beside `path`, hidden and ending in .tmp."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


@contextmanager
def naming(path):
    """An OSError from a write on a file descriptor (ENOSPC, EIO) names no file;
    give it the path so the user learns which datastore is full."""
    try:
        yield
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def write_atomic(path, data, mode: int = 0o644, fsync: bool = True) -> None:
    """Write `data` to `path` via a temp file in the same directory, then rename.

    Readers see either the old or the new content, never a partial file.
    """
    path = Path(path)
    tmp = tmp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with naming(path), os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if fsync:
        fsync_dir(path.parent)


_libc = None


def syncfs(path) -> None:
    """Flush the filesystem holding `path` (one call instead of an fsync per chunk)."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name, use_errno=True) if name else False
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if not _libc or not hasattr(_libc, "syncfs") or _libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


_malloc_tuned = False


def tune_malloc() -> None:
    """Keep large (chunk-sized) buffers in the heap instead of fresh mmaps.

    glibc serves each ≥128 KiB allocation with a new mmap, so every 4 MiB
    chunk buffer page-faults 1024 times; that halves zstd/AES throughput
    (tooling-notes.md, "allocation caveat"). Same effect as the
    MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ environment variables.
    """
    global _malloc_tuned
    if _malloc_tuned or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    _malloc_tuned = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        libc.mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024)
    except (OSError, AttributeError):
        pass
