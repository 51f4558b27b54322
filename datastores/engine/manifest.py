"""The snapshot manifest `index.json.blob`: a compressed, never encrypted blob of JSON."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from .blob import decode_blob, encode_blob
from .errors import CorruptionError, DatastoreError

MANIFEST_NAME = "index.json.blob"
CRYPT_MODES = ("none", "encrypt")


@dataclass
class Manifest:
    backup_type: str
    backup_id: str
    backup_time: int
    files: list[dict] = field(default_factory=list)
    unprotected: dict = field(default_factory=dict)
    signature: str | None = None

    # -- files -----------------------------------------------------------
    def add_file(self, filename: str, size: int, csum: str, crypt_mode: str = "none") -> None:
        if crypt_mode not in CRYPT_MODES:
            raise DatastoreError(f"crypt-mode: unknown mode {crypt_mode!r}")
        if self.file(filename) is not None:
            raise DatastoreError(f"manifest already lists file {filename}")
        self.files.append({"filename": filename, "size": int(size), "csum": csum,
                           "crypt-mode": crypt_mode})

    def file(self, filename: str) -> dict | None:
        for f in self.files:
            if f["filename"] == filename:
                return f
        return None

    @property
    def filenames(self) -> list[str]:
        return [f["filename"] for f in self.files]

    @property
    def encrypted(self) -> bool:
        return any(f.get("crypt-mode") == "encrypt" for f in self.files)

    @property
    def key_fingerprint(self) -> str | None:
        return self.unprotected.get("key-fingerprint")

    @property
    def verify_state(self) -> dict | None:
        return self.unprotected.get("verify_state")

    @property
    def notes(self) -> str:
        return self.unprotected.get("notes", "")

    # -- signature ---------------------------------------------------------
    def signed_bytes(self) -> bytes:
        """Canonical JSON of the protected part (what the signature covers)."""
        doc = {"backup-type": self.backup_type, "backup-id": self.backup_id,
               "backup-time": self.backup_time, "files": self.files}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def sign(self, crypt) -> None:
        self.signature = crypt.sign(self.signed_bytes())
        self.unprotected["key-fingerprint"] = crypt.fingerprint

    def check_signature(self, crypt, what: str = "manifest") -> None:
        """Raise CorruptionError if the signature does not match under this key."""
        if self.signature is None:
            return
        if crypt.sign(self.signed_bytes()) != self.signature:
            raise CorruptionError(f"{what}: signature mismatch (manifest was modified or wrong key)", what)

    # -- (de)serialisation ---------------------------------------------------
    def to_json(self) -> dict:
        return {"backup-type": self.backup_type, "backup-id": self.backup_id,
                "backup-time": self.backup_time, "files": self.files,
                "signature": self.signature, "unprotected": self.unprotected}

    def to_blob(self) -> bytes:
        return encode_blob(json.dumps(self.to_json(), indent=2).encode(), None, compress=True)

    @classmethod
    def from_json(cls, doc: dict, what: str = "manifest") -> "Manifest":
        try:
            m = cls(backup_type=str(doc["backup-type"]), backup_id=str(doc["backup-id"]),
                    backup_time=int(doc["backup-time"]), files=list(doc.get("files") or []),
                    unprotected=dict(doc.get("unprotected") or {}),
                    signature=doc.get("signature"))
            for f in m.files:
                f["filename"], f["size"], f["csum"]  # noqa: B018 - presence check
                f.setdefault("crypt-mode", "none")
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptionError(f"{what}: malformed manifest ({e!r})", what) from None
        return m

    @classmethod
    def from_blob(cls, blob: bytes, what: str = "manifest") -> "Manifest":
        data = decode_blob(blob, None, what)
        try:
            doc = json.loads(data)
        except ValueError:
            raise CorruptionError(f"{what}: not valid JSON", what) from None
        if not isinstance(doc, dict):
            raise CorruptionError(f"{what}: not a JSON object", what)
        return cls.from_json(doc, what)
