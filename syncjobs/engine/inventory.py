"""The local inventory of what one remote prefix holds.

An SQLite file (stdlib, on disk, scales to millions of chunks without loading
them into memory) with three tables:

    chunks(digest BLOB 32 bytes, uploaded, size)   every chunk object
    files(rel, size, md5, uploaded)                every other object
                                                   (marker, snapshot files)
    meta(k, v)                                     reconciled_at, owner uuid, ...

Both object tables also keep `lock_until` and `version` for a remote with
Object Lock: when the lock of the version we wrote ends (epoch; NULL when not
known) and its version id, so a run knows without a request which locks to
extend and which deletions must wait (docs/DESIGN.md §3).

`uploaded` is when the object was written (from the listing's LastModified or
our PUT), which min-storage-days deferral needs. `md5` is the content MD5
when known (our PUT, or a listing ETag that is a plain MD5), so an unchanged
manifest can be recognised without a request.

The inventory is trusted between reconciles: a run that changes nothing
lists nothing. `reconcile(bucket)` lists the whole prefix and replaces the
inventory in one transaction (a failed listing leaves the old one intact).
"""
from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
CHUNKS_DIR = ".chunks/"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (digest BLOB PRIMARY KEY, uploaded REAL NOT NULL,
                                   size INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (rel TEXT PRIMARY KEY, size INTEGER NOT NULL, md5 TEXT,
                                  uploaded REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
"""
# Added for Object Lock; ALTERed into inventories written before.
_LOCK_COLUMNS = (("lock_until", "REAL"), ("version", "TEXT"))
_TABLE_KEY = {"chunks": "digest", "files": "rel"}


def chunk_rel(digest_hex: str) -> str:
    return f".chunks/{digest_hex[:4]}/{digest_hex}"


def parse_chunk_rel(rel: str) -> str | None:
    """The digest of a `.chunks/<4>/<64>` path, or None."""
    if not rel.startswith(CHUNKS_DIR):
        return None
    parts = rel.split("/")
    if len(parts) == 3 and _HEX64.match(parts[2]) and parts[1] == parts[2][:4]:
        return parts[2]
    return None


def etag_md5(etag: str) -> str | None:
    """The ETag when it is a plain MD5 of the content (single-part, no SSE-KMS)."""
    etag = (etag or "").strip('"').lower()
    return etag if _MD5.match(etag) else None


@dataclass
class ReconcileStats:
    chunks: int          # chunk objects on the remote
    files: int           # other objects
    lost: int            # chunks the inventory believed were there but are not
    found: int           # chunks on the remote the inventory did not know
    seconds: float


@dataclass
class FileEntry:
    size: int
    md5: str | None
    uploaded: float


class Inventory:
    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._lock = threading.RLock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        for table in _TABLE_KEY:
            have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            for column, kind in _LOCK_COLUMNS:
                if column not in have:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    @classmethod
    def for_remote(cls, directory: str | os.PathLike, bucket: str, prefix: str,
                   endpoint: str = "") -> "Inventory":
        """The inventory file for one remote prefix under the app's directory."""
        ident = f"{endpoint}|{bucket}|{prefix.strip('/')}"
        name = f"{bucket}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.sqlite"
        return cls(os.path.join(os.fspath(directory), name))

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- meta ---------------------------------------------------------------
    def get_meta(self, k: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self.db.execute("SELECT v FROM meta WHERE k=?", (k,)).fetchone()
        return row[0] if row else default

    def set_meta(self, k: str, v: str | None) -> None:
        with self._lock:
            if v is None:
                self.db.execute("DELETE FROM meta WHERE k=?", (k,))
            else:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (k, str(v)))

    @property
    def reconciled_at(self) -> float | None:
        v = self.get_meta("reconciled_at")
        return float(v) if v else None

    # -- chunks -------------------------------------------------------------
    def chunk_count(self) -> int:
        with self._lock:
            return self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def has_chunk(self, digest_hex: str) -> bool:
        with self._lock:
            return self.db.execute("SELECT 1 FROM chunks WHERE digest=?",
                                   (bytes.fromhex(digest_hex),)).fetchone() is not None

    def missing_chunks(self, digests: Iterable[str]) -> list[str]:
        """The digests (hex) the remote does not hold, in the given order.

        Many digests (a snapshot after a reconcile: every one of its chunks) are
        looked up in one anti-join through a temporary table, ~10x faster than a
        query each."""
        digests = list(digests)
        with self._lock:
            cur = self.db.cursor()
            if len(digests) < 1000:
                return [d for d in digests if cur.execute("SELECT 1 FROM chunks WHERE digest=?",
                                                          (bytes.fromhex(d),)).fetchone() is None]
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS want (i INTEGER PRIMARY KEY, digest BLOB NOT NULL)")
            cur.execute("BEGIN")
            try:
                cur.execute("DELETE FROM temp.want")
                cur.executemany("INSERT INTO temp.want VALUES (?,?)",
                                ((i, bytes.fromhex(d)) for i, d in enumerate(digests)))
                rows = cur.execute("SELECT i FROM temp.want w WHERE NOT EXISTS "
                                   "(SELECT 1 FROM chunks c WHERE c.digest = w.digest) ORDER BY i").fetchall()
                cur.execute("DELETE FROM temp.want")
            finally:
                cur.execute("COMMIT")
            return [digests[i] for (i,) in rows]

    def add_chunks(self, items: Iterable[tuple[str, float, int]]) -> None:
        """Record chunks as (digest hex, uploaded epoch, size); one transaction."""
        with self._lock:
            self.db.execute("BEGIN")
            # an upsert: a chunk recorded again keeps its lock
            self.db.executemany("INSERT INTO chunks (digest, uploaded, size) VALUES (?,?,?) ON CONFLICT(digest) "
                                "DO UPDATE SET uploaded=excluded.uploaded, size=excluded.size",
                                ((bytes.fromhex(d), t, n) for d, t, n in items))
            self.db.execute("COMMIT")

    def remove_chunks(self, digests: Iterable[str]) -> None:
        with self._lock:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM chunks WHERE digest=?", ((bytes.fromhex(d),) for d in digests))
            self.db.execute("COMMIT")

    def iter_chunks(self) -> Iterator[tuple[str, float, int]]:
        """Every (digest hex, uploaded, size), read in pages; safe to modify meanwhile."""
        last = b""
        while True:
            with self._lock:
                rows = self.db.execute("SELECT digest, uploaded, size FROM chunks WHERE digest > ? "
                                       "ORDER BY digest LIMIT 10000", (last,)).fetchall()
            if not rows:
                return
            for d, t, n in rows:
                yield d.hex(), t, n
            last = rows[-1][0]

    # -- other files ------------------------------------------------------------
    def file(self, rel: str) -> FileEntry | None:
        with self._lock:
            row = self.db.execute("SELECT size, md5, uploaded FROM files WHERE rel=?", (rel,)).fetchone()
        return FileEntry(*row) if row else None

    def add_file(self, rel: str, size: int, md5: str | None, uploaded: float) -> None:
        with self._lock:
            self.db.execute("INSERT INTO files (rel, size, md5, uploaded) VALUES (?,?,?,?) ON CONFLICT(rel) "
                            "DO UPDATE SET size=excluded.size, md5=excluded.md5, uploaded=excluded.uploaded",
                            (rel, size, md5, uploaded))

    def remove_files(self, rels: Iterable[str]) -> None:
        with self._lock:
            self.db.executemany("DELETE FROM files WHERE rel=?", ((r,) for r in rels))

    def files(self, under: str = "") -> dict[str, FileEntry]:
        with self._lock:
            rows = self.db.execute("SELECT rel, size, md5, uploaded FROM files WHERE rel >= ? AND rel < ?",
                                   (under, under + "\U0010ffff")).fetchall()
        return {r: FileEntry(s, m, t) for r, s, m, t in rows}

    def manifests(self) -> list[str]:
        """Relative paths of every snapshot manifest on the remote."""
        with self._lock:
            rows = self.db.execute("SELECT rel FROM files WHERE rel LIKE '%/index.json.blob'").fetchall()
        return sorted(r for (r,) in rows)

    # -- Object Lock ------------------------------------------------------------
    @staticmethod
    def _key(table: str, key: str):
        return bytes.fromhex(key) if table == "chunks" else key

    def set_locks(self, table: str, items: Iterable[tuple[str, float, str | None]]) -> None:
        """Record (digest hex or rel, lock until epoch, version id or None) of objects in the
        inventory; a None version keeps the one known."""
        with self._lock:
            self.db.execute("BEGIN")
            self.db.executemany(f"UPDATE {table} SET lock_until=?, version=coalesce(?, version) "
                                f"WHERE {_TABLE_KEY[table]}=?",
                                ((t, v, self._key(table, k)) for k, t, v in items))
            self.db.execute("COMMIT")

    def locks(self, table: str, keys: Iterable[str]) -> dict[str, tuple[float | None, str | None]]:
        """{key: (lock_until, version)} of the given objects that are in the inventory."""
        out = {}
        with self._lock:
            cur = self.db.cursor()
            for k in keys:
                row = cur.execute(f"SELECT lock_until, version FROM {table} WHERE {_TABLE_KEY[table]}=?",
                                  (self._key(table, k),)).fetchone()
                if row:
                    out[k] = row
        return out

    def locks_due(self, table: str, before: float) -> list[tuple[str, str | None]]:
        """(key, version) of every object whose lock ends before `before` or is not known."""
        with self._lock:
            rows = self.db.execute(f"SELECT {_TABLE_KEY[table]}, version FROM {table} "
                                   "WHERE lock_until IS NULL OR lock_until < ?", (before,)).fetchall()
        return [(k.hex() if table == "chunks" else k, v) for k, v in rows]

    # -- reconcile --------------------------------------------------------------
    def reconcile(self, bucket, now: float | None = None) -> ReconcileStats:
        """Replace the inventory with a full listing of the remote prefix."""
        t0 = time.monotonic()
        nchunks = nfiles = 0
        with self._lock:
            db = self.db
            db.execute("BEGIN")
            try:
                db.execute("CREATE TEMP TABLE IF NOT EXISTS new_chunks "
                           "(digest BLOB PRIMARY KEY, uploaded REAL, size INTEGER) WITHOUT ROWID")
                db.execute("DELETE FROM new_chunks")
                # the locks we set are not in a listing: keep them for the objects still there
                db.execute("DROP TABLE IF EXISTS temp.old_file_locks")
                db.execute("CREATE TEMP TABLE old_file_locks AS SELECT rel, lock_until, version FROM files "
                           "WHERE lock_until IS NOT NULL OR version IS NOT NULL")
                db.execute("DELETE FROM files")
                for page in bucket.list_pages(""):
                    batch = []
                    for rel, size, modified, etag in page:
                        ts = modified.timestamp()
                        if rel.startswith(CHUNKS_DIR):
                            digest = parse_chunk_rel(rel)
                            if digest:
                                batch.append((bytes.fromhex(digest), ts, size))
                        else:
                            db.execute("INSERT OR REPLACE INTO files (rel, size, md5, uploaded) VALUES (?,?,?,?)",
                                       (rel, size, etag_md5(etag), ts))
                            nfiles += 1
                    nchunks += len(batch)
                    db.executemany("INSERT OR REPLACE INTO new_chunks VALUES (?,?,?)", batch)
                # Merged in place, not rewritten: after a reconcile that finds what the
                # inventory knew (the usual case), 2.5 million rows cost lookups, not
                # writes; the locks of the objects still there stay as they are.
                found = db.execute("SELECT count(*) FROM new_chunks WHERE digest NOT IN "
                                   "(SELECT digest FROM chunks)").fetchone()[0]
                lost = db.execute("DELETE FROM chunks WHERE digest NOT IN (SELECT digest FROM new_chunks)").rowcount
                db.execute("INSERT INTO chunks (digest, uploaded, size) SELECT digest, uploaded, size "
                           "FROM new_chunks WHERE true ON CONFLICT(digest) DO UPDATE SET "
                           "uploaded=excluded.uploaded, size=excluded.size "
                           "WHERE uploaded != excluded.uploaded OR size != excluded.size")
                db.execute("UPDATE files SET (lock_until, version) = (SELECT lock_until, version FROM "
                           "old_file_locks o WHERE o.rel = files.rel) "
                           "WHERE rel IN (SELECT rel FROM old_file_locks)")
                db.execute("DROP TABLE temp.old_file_locks")
                db.execute("DELETE FROM new_chunks")
                db.execute("INSERT OR REPLACE INTO meta VALUES ('reconciled_at', ?)",
                           (str(now if now is not None else time.time()),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return ReconcileStats(nchunks, nfiles, lost, found, time.monotonic() - t0)

    def clear(self) -> None:
        with self._lock:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM chunks")
            self.db.execute("DELETE FROM files")
            self.db.execute("DELETE FROM meta")
            self.db.execute("COMMIT")
