"""Encryption keys, keyed digests and key files.

A key is 32 random bytes. It encrypts blobs with AES-256-GCM directly; two
further keys are derived from it with BLAKE3's key derivation mode: the id key
that makes chunk digests keyed (digests reveal nothing about the data, and
dedup still works under one key) and the manifest signing key.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._fsutil import write_atomic
from .errors import CorruptionError, DatastoreError

KEY_SIZE = 32
ID_KEY_CONTEXT = "pbsweb 2026-11-26 chunk digest key"
SIGN_KEY_CONTEXT = "pbsweb 2026-11-26 manifest signing key"
FINGERPRINT_INPUT = b"pbsweb encryption key fingerprint"
KEYFILE_AAD = b"pbsweb key file"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 65536, 8, 1
MIN_PASSPHRASE = 5


class CryptConfig:
    """Holds an encryption key. Its repr shows only the fingerprint."""

    __slots__ = ("_key", "_id_key", "_sign_key", "_aes", "fingerprint")

    def __init__(self, key: bytes):
        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
            raise DatastoreError(f"encryption key must be {KEY_SIZE} bytes")
        self._key = bytes(key)
        self._id_key = blake3.blake3(self._key, derive_key_context=ID_KEY_CONTEXT).digest()
        self._sign_key = blake3.blake3(self._key, derive_key_context=SIGN_KEY_CONTEXT).digest()
        self._aes = AESGCM(self._key)
        fp = self.digest(blake3.blake3(FINGERPRINT_INPUT).digest())[:8]
        self.fingerprint = ":".join(f"{b:02x}" for b in fp)

    @classmethod
    def generate(cls) -> "CryptConfig":
        return cls(os.urandom(KEY_SIZE))

    def __repr__(self) -> str:
        return f"<CryptConfig fingerprint={self.fingerprint}>"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("CryptConfig cannot be pickled (it holds a secret key)")

    def digest(self, data) -> bytes:
        """Keyed BLAKE3-256 of data (the chunk digest under this key)."""
        return blake3.blake3(data, key=self._id_key).digest()

    def sign(self, data: bytes) -> str:
        """Hex keyed BLAKE3 tag of data (manifest signature)."""
        return blake3.blake3(data, key=self._sign_key).hexdigest()

    def encrypt(self, payload, aad: bytes):
        """AES-256-GCM; returns (iv, tag, ciphertext as a memoryview)."""
        iv = os.urandom(12)
        out = self._aes.encrypt(iv, payload, aad)
        mv = memoryview(out)
        return iv, mv[-16:], mv[:-16]

    def decrypt(self, iv, tag, ciphertext, aad: bytes, what: str = "blob") -> bytes:
        try:
            return self._aes.decrypt(bytes(iv), b"".join((ciphertext, tag)), aad)
        except InvalidTag:
            raise DatastoreError(
                f"cannot decrypt {what}: wrong encryption key (fingerprint {self.fingerprint}) "
                f"or the data was tampered with") from None


def chunk_digest(data, crypt: CryptConfig | None = None) -> bytes:
    """Digest of plain chunk data: BLAKE3-256, keyed when a key is given."""
    if crypt is None:
        return blake3.blake3(data).digest()
    return crypt.digest(data)


def _now_rfc3339() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _scrypt(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(passphrase.encode(), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * 1024 * 1024, dklen=32)


def create_keyfile(path, kdf: str = "scrypt", passphrase: str | None = None,
                   hint: str | None = None, key: bytes | None = None) -> str:
    """Create a new key file at `path` (refuses to overwrite); returns its fingerprint.

    Losing the key file (or its passphrase) makes the encrypted backups unrecoverable.
    """
    path = Path(path)
    if path.exists():
        raise DatastoreError(f"key file {path} already exists; refusing to overwrite it")
    crypt = CryptConfig(key if key is not None else os.urandom(KEY_SIZE))
    doc = {"kdf": None, "created": _now_rfc3339(), "modified": None, "data": None,
           "fingerprint": crypt.fingerprint}
    doc["modified"] = doc["created"]
    if kdf == "none":
        doc["data"] = base64.b64encode(crypt._key).decode()
    elif kdf == "scrypt":
        if not passphrase or len(passphrase) < MIN_PASSPHRASE:
            raise DatastoreError(f"passphrase: at least {MIN_PASSPHRASE} characters are required for kdf scrypt")
        salt = os.urandom(32)
        wrap = _scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        iv = os.urandom(12)
        ct = AESGCM(wrap).encrypt(iv, crypt._key, KEYFILE_AAD)
        doc["kdf"] = {"scrypt": {"n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
                                 "salt": base64.b64encode(salt).decode()}}
        doc["data"] = base64.b64encode(iv + ct[-16:] + ct[:-16]).decode()
    else:
        raise DatastoreError(f"kdf: unknown key derivation '{kdf}' (use scrypt or none)")
    if hint:
        doc["hint"] = hint
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode(), mode=0o600)
    return crypt.fingerprint


def _read_keyfile(path) -> dict:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatastoreError(f"key file {path} does not exist") from None
    except (ValueError, UnicodeDecodeError):
        raise DatastoreError(f"key file {path} is not a valid key file (bad JSON)") from None
    if not isinstance(doc, dict) or "data" not in doc or "fingerprint" not in doc:
        raise DatastoreError(f"key file {path} is not a valid key file (missing data/fingerprint)")
    return doc


def keyfile_info(path) -> dict:
    """Public facts about a key file (no secret): kdf, created, modified, fingerprint, hint."""
    doc = _read_keyfile(path)
    kdf = doc.get("kdf")
    return {"path": str(path), "kdf": next(iter(kdf)) if kdf else "none",
            "created": doc.get("created"), "modified": doc.get("modified"),
            "fingerprint": doc["fingerprint"], "hint": doc.get("hint")}


def load_keyfile(path, passphrase: str | None = None) -> CryptConfig:
    """Load a key file; DatastoreError on a missing or wrong passphrase."""
    doc = _read_keyfile(path)
    kdf = doc.get("kdf")
    try:
        data = base64.b64decode(doc["data"])
        if not kdf:
            key = data
        elif "scrypt" in kdf:
            if passphrase is None:
                raise DatastoreError(f"key file {path} is protected by a passphrase; none was given")
            s = kdf["scrypt"]
            wrap = _scrypt(passphrase, base64.b64decode(s["salt"]), s["n"], s["r"], s["p"])
            iv, tag, ct = data[:12], data[12:28], data[28:]
            try:
                key = AESGCM(wrap).decrypt(iv, ct + tag, KEYFILE_AAD)
            except InvalidTag:
                raise DatastoreError(f"wrong passphrase for key file {path}") from None
        else:
            raise DatastoreError(f"key file {path}: unknown kdf {list(kdf)}")
    except (KeyError, TypeError, ValueError):
        raise DatastoreError(f"key file {path} is not a valid key file (bad kdf or data)") from None
    crypt = CryptConfig(key)
    if crypt.fingerprint != doc["fingerprint"]:
        raise CorruptionError(f"key file {path}: fingerprint mismatch (stored {doc['fingerprint']}, "
                              f"key has {crypt.fingerprint})", str(path))
    return crypt


def paper_key(path) -> str:
    """A printable copy of the key file (store it offline; it is the key)."""
    doc = _read_keyfile(path)
    body = json.dumps(doc, indent=2)
    return ("-----BEGIN PBSWEB BACKUP KEY-----\n" + body +
            "\n-----END PBSWEB BACKUP KEY-----\n")


def key_from_paper(text: str) -> dict:
    """Parse the JSON back out of paper_key() text (write it to a file to use it)."""
    start = text.index("-----BEGIN PBSWEB BACKUP KEY-----") + len("-----BEGIN PBSWEB BACKUP KEY-----")
    end = text.index("-----END PBSWEB BACKUP KEY-----")
    return json.loads(text[start:end])
