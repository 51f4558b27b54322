"""Blob format: every chunk, small file and manifest is stored as a blob.

    magic(8) | crc32 LE(4) of everything after it | [iv(12) | tag(16)] | payload

Four magics: raw, zstd, encrypted, encrypted+zstd. Compression is zstd level 1,
kept only when smaller. Encryption is AES-256-GCM after compression, with the
magic as associated data. See docs/FORMAT.md.
"""
from __future__ import annotations

import struct
import threading
import zlib

import zstandard

from .errors import CorruptionError, DatastoreError

MAGIC_RAW = bytes([164, 159, 157, 213, 234, 206, 167, 16])
MAGIC_ZSTD = bytes([144, 168, 219, 208, 192, 6, 205, 248])
MAGIC_ENCR = bytes([28, 15, 21, 99, 57, 56, 123, 0])
MAGIC_ENCR_ZSTD = bytes([112, 150, 145, 22, 15, 137, 35, 12])

HEADER_SIZE = 12          # magic + crc
ENCR_HEADER_SIZE = 40     # magic + crc + iv + tag
IV_SIZE = 12
TAG_SIZE = 16
MAX_BLOB_DATA = 128 * 1024 * 1024  # refuse to decompress anything larger

_MAGICS = {MAGIC_RAW: (False, False), MAGIC_ZSTD: (False, True),
           MAGIC_ENCR: (True, False), MAGIC_ENCR_ZSTD: (True, True)}

_tls = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    # One compressor per thread: creating one per chunk costs allocations.
    c = getattr(_tls, "cctx", None)
    if c is None:
        c = _tls.cctx = zstandard.ZstdCompressor(level=1, write_content_size=True)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_tls, "dctx", None)
    if d is None:
        d = _tls.dctx = zstandard.ZstdDecompressor()
    return d


def encode_blob(data, crypt=None, compress: bool = True) -> bytes:
    """Encode bytes (or a memoryview) as a blob; compressed when that is smaller."""
    return b"".join(encode_blob_parts(data, crypt, compress))


def encode_blob_parts(data, crypt=None, compress: bool = True) -> list:
    """Like encode_blob, but returns the pieces (header, …, payload) unjoined,
    so a writer can hand them to os.writev without copying the payload again."""
    payload = data
    compressed = False
    if compress and len(data):
        z = _compressor().compress(data)
        if len(z) < len(data):
            payload, compressed = z, True
    if crypt is None:
        magic = MAGIC_ZSTD if compressed else MAGIC_RAW
        crc = zlib.crc32(payload)
        return [magic + struct.pack("<I", crc), payload]
    magic = MAGIC_ENCR_ZSTD if compressed else MAGIC_ENCR
    iv, tag, ct = crypt.encrypt(payload, magic)
    crc = zlib.crc32(ct, zlib.crc32(tag, zlib.crc32(iv)))
    return [b"".join((magic, struct.pack("<I", crc), iv, tag)), ct]


def _header(blob, what: str) -> tuple[bool, bool]:
    if len(blob) < HEADER_SIZE:
        raise CorruptionError(f"{what}: too short to be a blob ({len(blob)} bytes)", what)
    kind = _MAGICS.get(bytes(blob[:8]))
    if kind is None:
        raise CorruptionError(f"{what}: unknown blob magic {bytes(blob[:8]).hex()}", what)
    if kind[0] and len(blob) < ENCR_HEADER_SIZE:
        raise CorruptionError(f"{what}: encrypted blob too short ({len(blob)} bytes)", what)
    return kind


def blob_is_encrypted(blob, what: str = "blob") -> bool:
    """True if the blob's magic says it is encrypted (no other check)."""
    return _header(blob, what)[0]


def blob_is_compressed(blob) -> bool:
    return _header(blob, "blob")[1]


def check_blob_crc(blob) -> bool:
    """True if the magic is known and the CRC matches the content."""
    try:
        _header(blob, "blob")
    except CorruptionError:
        return False
    (crc,) = struct.unpack_from("<I", blob, 8)
    return zlib.crc32(memoryview(blob)[HEADER_SIZE:]) == crc


def decode_blob(blob, crypt=None, what: str = "blob") -> bytes:
    """Check the CRC, decrypt and decompress a blob; `what` names it in errors."""
    encrypted, compressed = _header(blob, what)
    mv = memoryview(blob)
    (crc,) = struct.unpack_from("<I", blob, 8)
    if zlib.crc32(mv[HEADER_SIZE:]) != crc:
        raise CorruptionError(f"{what}: CRC mismatch (the stored bytes are corrupt)", what)
    if encrypted:
        if crypt is None:
            raise DatastoreError(f"{what} is encrypted: an encryption key is needed to read it")
        iv = mv[12:24]
        tag = mv[24:40]
        payload = crypt.decrypt(iv, tag, mv[40:], bytes(mv[:8]), what)
    else:
        payload = mv[HEADER_SIZE:]
    if not compressed:
        return bytes(payload)
    try:
        size = zstandard.frame_content_size(payload)
        if size < 0 or size > MAX_BLOB_DATA:
            raise CorruptionError(f"{what}: bad zstd frame content size {size}", what)
        return _decompressor().decompress(payload)
    except zstandard.ZstdError as e:
        raise CorruptionError(f"{what}: zstd data is corrupt ({e})", what) from None
