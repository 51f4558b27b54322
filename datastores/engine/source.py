"""Reading snapshots from anywhere chunks are stored (docs/READERS.md).

A `ChunkSource` is a place laid out like a datastore: the local chunk store
(`LocalSource`), a bucket prefix (syncjobs/engine/bucket_source.py), a server
over HTTP. It hands out stored bytes only; every check is made here, once:

- `check_chunk`: CRC, decrypt, decompress, digest (keyed when encrypted), length.
- `check_snapshot_file`: an index or blob file against its manifest entry.
- `SnapshotReader`: a snapshot's manifest, files and archives via a source.
- `ArchiveReader`: a seekable stream over an archive's chunks with readahead.
"""
from __future__ import annotations

import io
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import blake3

from ._fsutil import tune_malloc
from .blob import blob_is_encrypted, check_blob_crc, decode_blob
from .chunkstore import check_digest_hex
from .crypto import chunk_digest
from .errors import CorruptionError, DatastoreError, MissingObjectError
from .index import Index, read_index
from .manifest import MANIFEST_NAME, Manifest


class ChunkSource(Protocol):
    """Where a reader gets stored bytes; no checks happen here."""

    def read_chunk(self, digest_hex: str) -> bytes:
        """The chunk blob as stored. Missing: CorruptionError (object = what is missing)."""

    def read_file(self, rel_path: str) -> bytes:
        """A snapshot file as stored, by its path relative to the datastore root
        (`<snapshot dir>/index.json.blob`, `….didx`, `….fidx`, `….blob`).
        Missing: DatastoreError naming it."""


class LocalSource:
    """The chunk store and snapshot files of a datastore on disk."""

    def __init__(self, root):
        self.root = Path(root)

    def read_chunk(self, digest_hex: str) -> bytes:
        p = self.root / ".chunks" / check_digest_hex(digest_hex)[:4] / digest_hex
        try:
            with open(p, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise MissingObjectError(f"chunk {digest_hex} is missing from datastore {self.root}",
                                    digest_hex) from None

    def read_file(self, rel_path: str) -> bytes:
        parts = rel_path.split("/")
        if rel_path.startswith("/") or ".." in parts or "" in parts:
            raise DatastoreError(f"file path {rel_path!r} is not relative to the datastore")
        try:
            return (self.root / rel_path).read_bytes()
        except FileNotFoundError:
            raise DatastoreError(f"file {rel_path} does not exist in datastore {self.root}") from None


# -- checks ---------------------------------------------------------------------------

def check_chunk(digest_hex: str, blob, crypt=None, expected_len: int | None = None, *,
                crc_only_without_key: bool = False) -> bytes | None:
    """Check a stored chunk blob and return its plain data.

    CRC, decryption (AES-GCM tag), decompression, digest (BLAKE3, keyed when the
    chunk is encrypted) and, when given, the length the index expects.
    CorruptionError names the digest. An encrypted chunk needs `crypt`; with
    crc_only_without_key an encrypted chunk without it is checked by CRC only
    (its digest is keyed) and None is returned.
    """
    what = f"chunk {digest_hex}"
    try:
        if crypt is None and crc_only_without_key and blob_is_encrypted(blob, what):
            if not check_blob_crc(blob):
                raise CorruptionError(f"{what}: CRC mismatch (the stored bytes are corrupt)", digest_hex)
            return None
        data = decode_blob(blob, crypt, what)
    except CorruptionError as e:
        e.object = digest_hex
        raise
    if expected_len is not None and len(data) != expected_len:
        raise CorruptionError(f"{what}: length {len(data)} does not match the index ({expected_len})",
                              digest_hex)
    if chunk_digest(data, crypt).hex() != digest_hex:
        raise CorruptionError(f"{what}: content does not match its digest", digest_hex)
    return data


def blob_csum(data: bytes) -> str:
    """Manifest csum of a blob file: BLAKE3 of its stored bytes."""
    return blake3.blake3(data).hexdigest()


def check_snapshot_file(name: str, data: bytes, entry: dict | None, what: str) -> Index | None:
    """Check a snapshot file's stored bytes against its manifest entry (None:
    not in the manifest, own checks only); returns the Index of index files.
    CorruptionError names `what`."""
    if name.endswith((".didx", ".fidx")):
        idx = read_index(data, what)  # verifies the index's own checksum
        if entry is not None and (idx.csum != entry["csum"] or idx.size != int(entry["size"])):
            raise CorruptionError(f"{what}: index does not match the manifest "
                                  f"(csum {idx.csum[:16]}…, size {idx.size})", what)
        return idx
    if not check_blob_crc(data):
        raise CorruptionError(f"{what}: CRC mismatch (the object is corrupt)", what)
    if entry is not None and (len(data) != int(entry["size"]) or blob_csum(data) != entry["csum"]):
        raise CorruptionError(f"{what}: blob does not match the manifest (size or csum)", what)
    return None


def archive_filename(archive_name: str) -> str:
    """'root.tar' -> 'root.tar.didx', 'disk.img' -> 'disk.img.fidx' (full names pass through)."""
    if archive_name.endswith((".didx", ".fidx")):
        return archive_name
    if archive_name.endswith(".tar"):
        return archive_name + ".didx"
    if archive_name.endswith(".img"):
        return archive_name + ".fidx"
    raise DatastoreError(f"archive name: {archive_name!r} must end in .tar or .img")


# -- snapshot reader --------------------------------------------------------------------

class SnapshotReader:
    """One snapshot read through a ChunkSource: the manifest, its files checked
    against it, its archives. `label` names the snapshot in messages (the
    snapshot ref locally, the object key prefix in a bucket)."""

    def __init__(self, source: ChunkSource, rel_dir: str, label: str | None = None, *,
                 manifest: Manifest | None = None, manifest_blob: bytes | None = None):
        self.source = source
        self.rel_dir = rel_dir.strip("/")
        self.label = label or self.rel_dir
        if manifest is None:
            if manifest_blob is None:
                manifest_blob = source.read_file(f"{self.rel_dir}/{MANIFEST_NAME}")
            manifest = Manifest.from_blob(manifest_blob, self.what(MANIFEST_NAME))
        self.manifest = manifest
        self.manifest_blob = manifest_blob
        self._indexes: dict[str, Index] = {}

    def what(self, filename: str) -> str:
        return f"{self.label}/{filename}"

    def check_key(self, crypt):
        """The key to read the snapshot with (None if it is not encrypted).

        DatastoreError if it is encrypted and no key, or a different key, is
        given; CorruptionError if the manifest's signature does not verify."""
        m = self.manifest
        if not m.encrypted:
            return None
        fp = m.key_fingerprint or "?"
        if crypt is None:
            raise DatastoreError(f"snapshot {self.label} is encrypted with key {fp}; no key was given")
        if m.key_fingerprint and crypt.fingerprint != m.key_fingerprint:
            raise DatastoreError(f"snapshot {self.label} is encrypted with key {fp}; "
                                 f"the key given has fingerprint {crypt.fingerprint}")
        m.check_signature(crypt, self.what(MANIFEST_NAME))
        return crypt

    def read_file(self, filename: str) -> tuple[bytes, Index | None]:
        """A file of the snapshot, checked against the manifest: (stored bytes,
        Index for index files). Files the manifest does not name get their own
        checks only."""
        data = self.source.read_file(f"{self.rel_dir}/{filename}")
        return data, check_snapshot_file(filename, data, self.manifest.file(filename), self.what(filename))

    def index(self, filename: str) -> Index:
        """An index file of the snapshot, checked against the manifest (read once)."""
        if filename not in self._indexes:
            _, idx = self.read_file(filename)
            if idx is None:
                raise DatastoreError(f"{self.what(filename)} is not an index file")
            self._indexes[filename] = idx
        return self._indexes[filename]

    def archive_entry(self, archive_name: str) -> tuple[str, dict]:
        filename = archive_filename(archive_name)
        entry = self.manifest.file(filename)
        if entry is None:
            raise DatastoreError(f"snapshot {self.label} has no archive {archive_name} "
                                 f"(has: {', '.join(self.manifest.filenames)})")
        return filename, entry

    def open_archive(self, archive_name: str, crypt=None, readahead: int = 4,
                     workers: int = 2) -> ArchiveReader:
        """A seekable reader over an archive ('root.tar', 'disk.img')."""
        filename, _ = self.archive_entry(archive_name)
        crypt = self.check_key(crypt)
        return ArchiveReader(self.source, self.index(filename), crypt, readahead, workers)


# -- archive reader ---------------------------------------------------------------------

class ArchiveReader(io.RawIOBase):
    """A seekable reader over an archive's chunks, each checked by check_chunk.

    Reads ahead `readahead` chunks on `workers` threads (a bucket wants more
    than a local disk); a chunk repeated nearby (zero blocks) is read once.
    """

    RECENT = 4  # decoded chunks kept for repeats

    def __init__(self, source: ChunkSource, index: Index, crypt=None, readahead: int = 4,
                 workers: int = 2):
        super().__init__()
        tune_malloc()
        self.source, self.index, self.crypt = source, index, crypt
        self.size = index.size
        self.pos = 0
        self.readahead = readahead
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="reader") if readahead else None
        self._futures: dict[bytes, object] = {}   # digest -> Future of its data
        self._recent: OrderedDict[bytes, bytes] = OrderedDict()
        self._cur = -1
        self._cur_data = b""
        self._cur_start = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1:
            offset += self.pos
        elif whence == 2:
            offset += self.size
        if offset < 0:
            raise ValueError("negative seek position")
        self.pos = offset
        return self.pos

    def _load(self, i: int) -> bytes:
        start, end = self.index.chunk_range(i)
        hx = self.index.digests[i].hex()
        return check_chunk(hx, self.source.read_chunk(hx), self.crypt, end - start)

    def _chunk(self, i: int):
        if i != self._cur:
            digests = self.index.digests
            d = digests[i]
            data = self._recent.get(d)
            if data is not None:
                self._recent.move_to_end(d)
            elif self._pool is None:
                data = self._load(i)
            else:
                window: dict[bytes, int] = {}
                for k in range(i, min(i + self.readahead + 1, len(digests))):
                    window.setdefault(digests[k], k)
                for k in [k for k in self._futures if k not in window]:
                    self._futures.pop(k).cancel()
                for dg, k in window.items():
                    if dg not in self._futures and dg not in self._recent:
                        self._futures[dg] = self._pool.submit(self._load, k)
                data = self._futures.pop(d).result()
            self._recent[d] = data
            if len(self._recent) > self.RECENT:
                self._recent.popitem(last=False)
            self._cur, self._cur_data = i, data
            self._cur_start = self.index.chunk_range(i)[0]
        return self._cur_data, self._cur_start

    def readinto(self, b) -> int:
        if self.pos >= self.size:
            return 0
        data, start = self._chunk(self.index.chunk_index(self.pos))
        off = self.pos - start
        n = min(len(b), len(data) - off)
        b[:n] = memoryview(data)[off:off + n]
        self.pos += n
        return n

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.size - self.pos
        parts, want = [], n
        while want > 0 and self.pos < self.size:
            data, start = self._chunk(self.index.chunk_index(self.pos))
            off = self.pos - start
            k = min(want, len(data) - off)
            parts.append(data[off:off + k] if (off or k != len(data)) else data)
            self.pos += k
            want -= k
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def pieces(self, start: int, end: int):
        """Yield memoryviews (no copies) over the archive bytes [start, end), chunk
        by chunk, through the same readahead as read(); the position is left at end."""
        if end > self.size:
            raise CorruptionError(f"archive data ends at {self.size}, before {end} (truncated)", "archive")
        pos = start
        while pos < end:
            data, cstart = self._chunk(self.index.chunk_index(pos))
            off = pos - cstart
            k = min(end - pos, len(data) - off)
            yield memoryview(data)[off:off + k]
            pos += k
        self.pos = end

    def iter_chunks(self):
        """Yield (offset, data) of every chunk in order (for whole-archive copies)."""
        for i in range(len(self.index)):
            data, start = self._chunk(i)
            yield start, data

    def close(self) -> None:
        if self._pool is not None:
            for f in self._futures.values():
                f.cancel()
            self._futures.clear()
            self._pool.shutdown(wait=True)
            self._pool = None
        self._recent.clear()
        super().close()


def unique_digests(indexes) -> list[str]:
    """Hex digests of the chunks the indexes name, each once, in order."""
    return list(dict.fromkeys(d.hex() for idx in indexes for d in idx.digests))
