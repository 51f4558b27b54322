"""The chunk store: `<store>/.chunks/<first 4 hex>/<64 hex digest>`, one blob per file."""
from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

from ._fsutil import fsync_dir, naming, syncfs
from .errors import DatastoreError

DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


def check_digest_hex(digest_hex: str) -> str:
    if not isinstance(digest_hex, str) or not DIGEST_RE.match(digest_hex):
        raise DatastoreError(f"chunk digest {digest_hex!r} is not 64 lowercase hex digits")
    return digest_hex


class ChunkStore:
    """Chunk files under `root` (the store's `.chunks` directory).

    Prefix directories are created on demand. Inserts are atomic (temp file +
    rename); by default each insert fsyncs, a bulk writer may pass fsync=False
    and call sync() once at the end.
    """

    def __init__(self, root):
        self.root = Path(root)

    def path(self, digest_hex: str) -> Path:
        check_digest_hex(digest_hex)
        return self.root / digest_hex[:4] / digest_hex

    def exists(self, digest_hex: str) -> bool:
        return self.path(digest_hex).exists()

    def touch(self, digest_hex: str, now: float | None = None) -> bool:
        """Set the chunk's atime to now (GC mark), keep its mtime. False if missing."""
        p = self.path(digest_hex)
        try:
            st = os.stat(p)
            t = time.time_ns() if now is None else int(now * 1e9)
            os.utime(p, ns=(t, st.st_mtime_ns))
            return True
        except FileNotFoundError:
            return False

    def insert(self, digest_hex: str, blob, fsync: bool = True) -> bool:
        """Store a chunk blob. True if it was new; if it exists, touch it and return False.

        `blob` is bytes-like, or a list of bytes-like parts written in order."""
        p = self.path(digest_hex)
        if self.touch(digest_hex):
            return False
        d = p.parent
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f"{digest_hex}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            parts = [memoryview(b) for b in (blob if isinstance(blob, list) else [blob])]
            with naming(p):
                while parts:
                    n = os.writev(fd, parts)
                    while parts and n >= len(parts[0]):
                        n -= len(parts[0])
                        parts.pop(0)
                    if n:
                        parts[0] = parts[0][n:]
                if fsync:
                    os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, p)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        if fsync:
            fsync_dir(d)
        return True

    def read(self, digest_hex: str) -> bytes:
        try:
            with open(self.path(digest_hex), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise DatastoreError(f"chunk {digest_hex} is missing from the datastore") from None

    def remove(self, digest_hex: str) -> None:
        os.unlink(self.path(digest_hex))

    def mark_bad(self, digest_hex: str) -> Path:
        """Rename a corrupt chunk to `<digest>.<n>.bad` (first free n); returns the new path."""
        p = self.path(digest_hex)
        for n in range(10):
            bad = p.with_name(f"{digest_hex}.{n}.bad")
            if not bad.exists():
                os.replace(p, bad)
                return bad
        os.replace(p, bad)  # all ten taken: overwrite the last one, as PBS
        return bad

    def prefix_dirs(self):
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for e in entries:
            if len(e.name) == 4 and e.is_dir(follow_symlinks=False):
                yield e.path

    def iter_digests(self):
        """Yield the hex digest of every chunk on disk (not .bad or temp files)."""
        for d in self.prefix_dirs():
            for e in os.scandir(d):
                if len(e.name) == 64 and DIGEST_RE.match(e.name):
                    yield e.name

    def sync(self) -> None:
        syncfs(self.root)
