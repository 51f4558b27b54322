"""Index files: the ordered list of chunks that make up an archive.

    .fidx  fixed-size chunks (disk images)        header 4096 bytes + 32-byte digests
    .didx  content-defined chunks (file archives) header 4096 bytes + (end u64, digest) entries

All integers little-endian. The header carries a BLAKE3 checksum of the entry
bytes, verified on every read. See docs/FORMAT.md for the exact layout.
"""
from __future__ import annotations

import bisect
import struct
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from ._fsutil import write_atomic
from .errors import CorruptionError, DatastoreError

FIDX_MAGIC = bytes([175, 236, 85, 75, 50, 103, 86, 172])
DIDX_MAGIC = bytes([86, 146, 27, 17, 141, 197, 15, 140])
HEADER_SIZE = 4096
DIGEST_SIZE = 32
DIDX_ENTRY = 40
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024

# magic, uuid, ctime i64, csum[32]  (+ size u64, chunk_size u64 for fidx)
_COMMON = struct.Struct("<8s16sq32s")
_FIDX_EXTRA = struct.Struct("<QQ")


@dataclass
class Index:
    kind: str                 # "fidx" or "didx"
    uuid: str
    ctime: int
    size: int                 # total archive data size in bytes
    digests: list[bytes]
    csum: str                 # hex BLAKE3 of the entry bytes
    chunk_size: int = 0       # fidx only
    ends: list[int] = field(default_factory=list)  # didx: cumulative end offsets

    def __len__(self) -> int:
        return len(self.digests)

    def chunk_range(self, i: int) -> tuple[int, int]:
        """(start, end) byte offsets of chunk i in the archive."""
        if self.kind == "fidx":
            start = i * self.chunk_size
            return start, min(start + self.chunk_size, self.size)
        return (self.ends[i - 1] if i else 0), self.ends[i]

    def chunk_index(self, offset: int) -> int:
        """Index of the chunk holding byte `offset`."""
        if self.kind == "fidx":
            return offset // self.chunk_size
        return bisect.bisect_right(self.ends, offset)

    def hex_digests(self) -> list[str]:
        return [d.hex() for d in self.digests]


def read_index(data_or_path, name: str | None = None) -> Index:
    """Parse and verify an index from bytes or a path. CorruptionError if bad."""
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        data = bytes(data_or_path)
        what = name or "index"
    else:
        what = name or str(data_or_path)
        try:
            data = Path(data_or_path).read_bytes()
        except FileNotFoundError:
            raise DatastoreError(f"index {what} does not exist") from None
    if len(data) < HEADER_SIZE:
        raise CorruptionError(f"index {what}: file too short ({len(data)} bytes)", what)
    magic, uid, ctime, csum = _COMMON.unpack_from(data, 0)
    body = memoryview(data)[HEADER_SIZE:]
    if blake3.blake3(body).digest() != csum:
        raise CorruptionError(f"index {what}: checksum mismatch", what)
    u = str(uuidlib.UUID(bytes=uid))
    if magic == FIDX_MAGIC:
        size, chunk_size = _FIDX_EXTRA.unpack_from(data, _COMMON.size)
        _check_reserved(data, _COMMON.size + _FIDX_EXTRA.size, what)
        if chunk_size <= 0 or len(body) % DIGEST_SIZE:
            raise CorruptionError(f"index {what}: bad fixed index header", what)
        count = len(body) // DIGEST_SIZE
        if count != -(-size // chunk_size):
            raise CorruptionError(f"index {what}: {count} entries do not match size {size}", what)
        digests = [bytes(body[i:i + 32]) for i in range(0, len(body), 32)]
        return Index("fidx", u, ctime, size, digests, csum.hex(), chunk_size=chunk_size)
    if magic == DIDX_MAGIC:
        _check_reserved(data, _COMMON.size, what)
        if len(body) % DIDX_ENTRY:
            raise CorruptionError(f"index {what}: entry area is not a multiple of {DIDX_ENTRY}", what)
        ends, digests, prev = [], [], 0
        for off in range(0, len(body), DIDX_ENTRY):
            (end,) = struct.unpack_from("<Q", body, off)
            if end <= prev:
                raise CorruptionError(f"index {what}: end offsets are not increasing", what)
            ends.append(end)
            digests.append(bytes(body[off + 8:off + 40]))
            prev = end
        return Index("didx", u, ctime, prev, digests, csum.hex(), ends=ends)
    raise CorruptionError(f"index {what}: unknown magic {magic.hex()}", what)


def _check_reserved(data: bytes, start: int, what: str) -> None:
    if data.count(0, start, HEADER_SIZE) != HEADER_SIZE - start:
        raise CorruptionError(f"index {what}: reserved header bytes are not zero", what)


class _IndexWriter:
    kind = ""

    def __init__(self, path=None, ctime: int | None = None, uuid: bytes | None = None):
        self.path = Path(path) if path is not None else None
        self.ctime = int(time.time()) if ctime is None else int(ctime)
        self.uuid = uuid or uuidlib.uuid4().bytes
        self._entries = bytearray()
        self._hasher = blake3.blake3()
        self.size = 0
        self.count = 0
        self.closed = False

    def _header(self) -> bytes:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        hdr = self._header()
        return hdr + b"\0" * (HEADER_SIZE - len(hdr)) + bytes(self._entries)

    @property
    def csum(self) -> str:
        return self._hasher.digest().hex()

    def close(self) -> Index:
        """Write the index atomically (temp + fsync + rename) and return it."""
        data = self.to_bytes()
        if self.path is not None:
            write_atomic(self.path, data)
        self.closed = True
        return read_index(data, str(self.path or "index"))

    def abort(self) -> None:
        self.closed = True
        self._entries = bytearray()


class FixedIndexWriter(_IndexWriter):
    """Builds a .fidx: every chunk has chunk_size bytes except the last."""
    kind = "fidx"

    def __init__(self, path=None, chunk_size: int = DEFAULT_CHUNK_SIZE, **kw):
        super().__init__(path, **kw)
        self.chunk_size = chunk_size
        self._short = False

    def add_chunk(self, digest: bytes, length: int) -> None:
        if self._short or length <= 0 or length > self.chunk_size:
            raise DatastoreError(f"fixed index {self.path}: only the last chunk may be short")
        self._short = length < self.chunk_size
        self._entries += digest
        self._hasher.update(digest)
        self.size += length
        self.count += 1

    def _header(self) -> bytes:
        return (_COMMON.pack(FIDX_MAGIC, self.uuid, self.ctime, self._hasher.digest())
                + _FIDX_EXTRA.pack(self.size, self.chunk_size))


class DynamicIndexWriter(_IndexWriter):
    """Builds a .didx: entries are (cumulative end offset, digest)."""
    kind = "didx"

    def add_chunk(self, digest: bytes, length: int) -> None:
        if length <= 0:
            raise DatastoreError(f"dynamic index {self.path}: empty chunk")
        self.size += length
        entry = struct.pack("<Q", self.size) + digest
        self._entries += entry
        self._hasher.update(entry)
        self.count += 1

    def _header(self) -> bytes:
        return _COMMON.pack(DIDX_MAGIC, self.uuid, self.ctime, self._hasher.digest())
