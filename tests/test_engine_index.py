"""Index formats: round trips, checksums, corruption detection, atomic writes."""
import os

import pytest
from hypothesis import given, settings, strategies as st

from datastores.engine.errors import CorruptionError, DatastoreError
from datastores.engine.index import (DIDX_MAGIC, FIDX_MAGIC, HEADER_SIZE, DynamicIndexWriter,
                                     FixedIndexWriter, read_index)

digests = st.binary(min_size=32, max_size=32)


@settings(max_examples=50, deadline=None)
@given(entries=st.lists(st.tuples(digests, st.integers(1, 1 << 30)), max_size=40))
def test_didx_round_trip(entries):
    w = DynamicIndexWriter(ctime=1700000000)
    for d, n in entries:
        w.add_chunk(d, n)
    data = w.to_bytes()
    assert data[:8] == DIDX_MAGIC and len(data) == HEADER_SIZE + 40 * len(entries)
    idx = read_index(data)
    assert idx.kind == "didx" and idx.ctime == 1700000000
    assert idx.digests == [d for d, _ in entries]
    assert idx.size == sum(n for _, n in entries)
    assert idx.csum == w.csum
    for i in range(len(entries)):
        s, e = idx.chunk_range(i)
        assert e - s == entries[i][1]
        assert idx.chunk_index(s) == i and idx.chunk_index(e - 1) == i


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 30), last=st.integers(1, 4096), ds=st.data())
def test_fidx_round_trip(n, last, ds):
    w = FixedIndexWriter(chunk_size=4096)
    dl = [ds.draw(digests) for _ in range(n + 1)]
    for d in dl[:-1]:
        w.add_chunk(d, 4096)
    w.add_chunk(dl[-1], last)
    idx = read_index(w.to_bytes())
    assert idx.kind == "fidx" and idx.chunk_size == 4096
    assert idx.size == n * 4096 + last
    assert idx.digests == dl
    assert idx.chunk_range(n) == (n * 4096, n * 4096 + last)


@settings(max_examples=80, deadline=None)
@given(fixed=st.booleans(), k=st.integers(1, 10), pos=st.integers(0), bit=st.integers(0, 7), ds=st.data())
def test_flipped_byte_detected(fixed, k, pos, bit, ds):
    w = FixedIndexWriter(chunk_size=1024) if fixed else DynamicIndexWriter()
    for _ in range(k):
        w.add_chunk(ds.draw(digests), 1024)
    data = bytearray(w.to_bytes())
    # Every byte except uuid and ctime (informational, not covered by the checksum):
    # magic, csum, size fields, reserved area and entries.
    meaningful = list(range(0, 8)) + list(range(32, len(data)))
    p = meaningful[pos % len(meaningful)]
    data[p] ^= 1 << bit
    with pytest.raises(CorruptionError):
        read_index(bytes(data))


def test_truncated_and_missing(tmp_path):
    w = DynamicIndexWriter(tmp_path / "a.didx")
    w.add_chunk(b"\1" * 32, 10)
    w.close()
    data = (tmp_path / "a.didx").read_bytes()
    with pytest.raises(CorruptionError, match="checksum mismatch"):
        read_index(data[:-1])
    with pytest.raises(CorruptionError, match="too short"):
        read_index(data[:100])
    with pytest.raises(DatastoreError, match="does not exist"):
        read_index(tmp_path / "nope.didx")


def test_writer_atomic_and_path(tmp_path):
    p = tmp_path / "disk.img.fidx"
    w = FixedIndexWriter(p, chunk_size=4 << 20)
    w.add_chunk(b"\2" * 32, 4 << 20)
    w.add_chunk(b"\3" * 32, 5)
    assert not p.exists()
    idx = w.close()
    assert p.read_bytes()[:8] == FIDX_MAGIC
    assert read_index(p).csum == idx.csum
    assert [n for n in os.listdir(tmp_path)] == ["disk.img.fidx"]  # no temp left


def test_fixed_only_last_short():
    w = FixedIndexWriter(chunk_size=1024)
    w.add_chunk(b"\0" * 32, 10)
    with pytest.raises(DatastoreError, match="only the last chunk may be short"):
        w.add_chunk(b"\0" * 32, 1024)


def test_independent_reader_per_format_doc():
    """Parse a .didx and a .fidx following docs/FORMAT.md §6 only."""
    import struct

    import blake3

    w = DynamicIndexWriter(ctime=1234)
    w.add_chunk(b"\x11" * 32, 100)
    w.add_chunk(b"\x22" * 32, 50)
    d = w.to_bytes()
    magic, uid, ctime, csum = struct.unpack_from("<8s16sq32s", d, 0)
    assert magic == bytes([86, 146, 27, 17, 141, 197, 15, 140]) and ctime == 1234
    assert csum == blake3.blake3(d[4096:]).digest() and d[64:4096] == bytes(4032)
    entries = [struct.unpack_from("<Q32s", d, 4096 + 40 * i) for i in range(2)]
    assert entries == [(100, b"\x11" * 32), (150, b"\x22" * 32)]
    f = FixedIndexWriter(chunk_size=64)
    f.add_chunk(b"\x33" * 32, 64)
    f.add_chunk(b"\x44" * 32, 10)
    d = f.to_bytes()
    magic, uid, ctime, csum, size, cs = struct.unpack_from("<8s16sq32sQQ", d, 0)
    assert magic == bytes([175, 236, 85, 75, 50, 103, 86, 172]) and (size, cs) == (74, 64)
    assert csum == blake3.blake3(d[4096:]).digest() and d[4096:] == b"\x33" * 32 + b"\x44" * 32
