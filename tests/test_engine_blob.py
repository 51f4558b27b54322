"""Blob format: round trips, corruption detection, encryption."""
import os

import pytest
from hypothesis import given, settings, strategies as st

from datastores.engine.blob import (MAGIC_ENCR, MAGIC_ENCR_ZSTD, MAGIC_RAW, MAGIC_ZSTD,
                                     blob_is_encrypted, check_blob_crc, decode_blob, encode_blob)
from datastores.engine.crypto import CryptConfig
from datastores.engine.errors import CorruptionError, DatastoreError

KEY = CryptConfig(bytes(range(32)))
OTHER = CryptConfig(bytes(range(1, 33)))


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000), compress=st.booleans(), encrypted=st.booleans())
def test_round_trip(data, compress, encrypted):
    crypt = KEY if encrypted else None
    b = encode_blob(data, crypt, compress)
    assert check_blob_crc(b)
    assert blob_is_encrypted(b) == encrypted
    assert decode_blob(b, crypt) == data


@settings(max_examples=80, deadline=None)
@given(data=st.binary(min_size=1, max_size=2000), encrypted=st.booleans(),
       pos=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_detected(data, encrypted, pos, bit):
    crypt = KEY if encrypted else None
    b = bytearray(encode_blob(data * 3, crypt))
    b[pos % len(b)] ^= 1 << bit
    if pos % len(b) >= 12:
        assert not check_blob_crc(bytes(b))
    with pytest.raises(CorruptionError):
        decode_blob(bytes(b), crypt)


def test_magics_and_compression_choice():
    text = b"abc" * 10000
    rnd = os.urandom(10000)
    assert encode_blob(text)[:8] == MAGIC_ZSTD
    assert encode_blob(rnd)[:8] == MAGIC_RAW          # zstd not smaller: kept raw
    assert encode_blob(text, compress=False)[:8] == MAGIC_RAW
    assert encode_blob(text, KEY)[:8] == MAGIC_ENCR_ZSTD
    assert encode_blob(rnd, KEY)[:8] == MAGIC_ENCR
    assert len(encode_blob(text)) < 1000


def test_encrypted_needs_key_and_right_key():
    b = encode_blob(b"secret data" * 100, KEY)
    assert b"secret data" not in b
    with pytest.raises(DatastoreError, match="encrypted: an encryption key is needed"):
        decode_blob(b, None, "chunk abc")
    with pytest.raises(DatastoreError, match="wrong encryption key"):
        decode_blob(b, OTHER)


def test_unknown_magic_and_short():
    with pytest.raises(CorruptionError, match="unknown blob magic"):
        decode_blob(b"\0" * 20)
    with pytest.raises(CorruptionError, match="too short"):
        decode_blob(b"abc")
    assert not check_blob_crc(b"\0" * 20)


def test_memoryview_input():
    data = bytearray(b"xy" * 50000)
    assert decode_blob(encode_blob(memoryview(data)[10:])) == bytes(data[10:])


def test_independent_reader_per_format_doc():
    """Decode blobs following docs/FORMAT.md §3/§4 only, without the engine's decoder."""
    import struct
    import zlib

    import blake3
    import zstandard
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = bytes(range(32))
    data = b"format check " * 1000
    # plain zstd blob
    b = encode_blob(data)
    assert b[:8] == bytes([144, 168, 219, 208, 192, 6, 205, 248])
    assert struct.unpack("<I", b[8:12])[0] == zlib.crc32(b[12:])
    assert zstandard.ZstdDecompressor().decompress(b[12:]) == data
    # encrypted zstd blob: iv at 12, tag at 24, ciphertext at 40, AAD = magic
    e = encode_blob(data, CryptConfig(key))
    assert e[:8] == bytes([112, 150, 145, 22, 15, 137, 35, 12])
    assert struct.unpack("<I", e[8:12])[0] == zlib.crc32(e[12:])
    frame = AESGCM(key).decrypt(e[12:24], e[40:] + e[24:40], e[:8])
    assert zstandard.ZstdDecompressor().decompress(frame) == data
    # keyed digest and fingerprint
    id_key = blake3.blake3(key, derive_key_context="pbsweb 2026-11-26 chunk digest key").digest()
    c = CryptConfig(key)
    assert c.digest(data) == blake3.blake3(data, key=id_key).digest()
    fp = blake3.blake3(blake3.blake3(b"pbsweb encryption key fingerprint").digest(), key=id_key).digest()[:8]
    assert c.fingerprint == ":".join(f"{x:02x}" for x in fp)
