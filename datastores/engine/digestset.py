"""A compact set of 32-byte chunk digests.

A Python set of 2.5 million digests (a ~10 TB datastore) costs ~310 MB as
bytes and ~430 MB as hex strings. DigestSet keeps the digests themselves in
one bytearray, an open-addressing hash table with linear probing, at most 2/3
full: 48-96 bytes a digest (134 MB for 2.5 million), at ~1 µs an operation.

Slots are found with Python's hash of the digest bytes (SipHash with a per-
process random key), so digests crafted to share their first bits cannot make
probe chains long. An all-zero slot is empty; the all-zero digest itself is
kept in a flag.
"""
from __future__ import annotations

from typing import Iterable, Iterator

DIGEST_SIZE = 32
_ZERO = bytes(DIGEST_SIZE)
_MIN_SLOTS = 1024


def _slots_for(n: int) -> int:
    slots = _MIN_SLOTS
    while slots * 2 < n * 3:
        slots *= 2
    return slots


class DigestSet:
    __slots__ = ("_buf", "_mask", "_len", "_zero")

    def __init__(self, digests: Iterable[bytes] = (), expected: int = 0):
        slots = _slots_for(expected)
        self._buf = bytearray(slots * DIGEST_SIZE)
        self._mask = slots - 1
        self._len = 0
        self._zero = False
        for d in digests:
            self.add(d)

    def __len__(self) -> int:
        return self._len

    @property
    def nbytes(self) -> int:
        """Memory held by the table."""
        return len(self._buf)

    def _find(self, d: bytes) -> tuple[int, bool]:
        """(byte offset of d's slot or of the empty slot where it belongs, found)."""
        if len(d) != DIGEST_SIZE:
            raise ValueError(f"a digest has {DIGEST_SIZE} bytes, not {len(d)}")
        buf, mask = self._buf, self._mask
        i = hash(d) & mask
        while True:
            o = i * DIGEST_SIZE
            slot = buf[o:o + DIGEST_SIZE]
            if slot == d:
                return o, True
            if slot == _ZERO:
                return o, False
            i = (i + 1) & mask

    def __contains__(self, d) -> bool:
        d = bytes(d)
        if d == _ZERO:
            return self._zero
        return self._find(d)[1]

    def add(self, d) -> bool:
        """Add a digest; True if it was not in the set."""
        d = bytes(d)
        if d == _ZERO:
            new, self._zero = not self._zero, True
            self._len += new
            return new
        o, found = self._find(d)
        if found:
            return False
        self._buf[o:o + DIGEST_SIZE] = d
        self._len += 1
        if self._len * 3 > (self._mask + 1) * 2:
            self._grow()
        return True

    def _grow(self) -> None:
        old = self._buf
        slots = (self._mask + 1) * 2
        self._buf = bytearray(slots * DIGEST_SIZE)
        self._mask = slots - 1
        buf, mask = self._buf, self._mask
        for o in range(0, len(old), DIGEST_SIZE):
            d = bytes(old[o:o + DIGEST_SIZE])
            if d == _ZERO:
                continue
            i = hash(d) & mask
            while buf[i * DIGEST_SIZE] or buf[i * DIGEST_SIZE:(i + 1) * DIGEST_SIZE] != _ZERO:
                i = (i + 1) & mask
            buf[i * DIGEST_SIZE:(i + 1) * DIGEST_SIZE] = d

    def __iter__(self) -> Iterator[bytes]:
        """The digests, in no particular order."""
        if self._zero:
            yield _ZERO
        buf = self._buf
        for o in range(0, len(buf), DIGEST_SIZE):
            d = bytes(buf[o:o + DIGEST_SIZE])
            if d != _ZERO:
                yield d
