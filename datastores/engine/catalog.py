"""The snapshot catalog `catalog.blob`: a file list for browsing (local only).

A blob (compressed; encrypted when the backup is) holding JSON:

    {"format": "pbsweb-catalog", "version": 1,
     "archives": {"root.tar": [[path, type, size, mtime, mode, offset, link], ...]}}

type: f file, d directory, l symlink, c/b char/block device, p fifo. `offset`
is where the member's data starts in the archive's tar stream, so one file can
be restored without reading the archive up to it.
"""
from __future__ import annotations

import json
import posixpath
import tarfile
from dataclasses import dataclass

from ._fsutil import write_atomic
from .blob import decode_blob, encode_blob
from .errors import CorruptionError, DatastoreError
from .report import Reporter

CATALOG_NAME = "catalog.blob"
FORMAT = "pbsweb-catalog"
VERSION = 1


@dataclass(frozen=True)
class CatalogEntry:
    path: str
    type: str
    size: int
    mtime: float
    mode: int
    offset: int
    link: str = ""

    @property
    def name(self) -> str:
        return posixpath.basename(self.path) if self.path != "." else "."


class Catalog:
    def __init__(self, archives: dict[str, list]):
        self.archives = {name: [CatalogEntry(*e) for e in entries] for name, entries in archives.items()}
        self._by_path = {name: {e.path: e for e in es} for name, es in self.archives.items()}

    def entries(self, archive: str) -> list[CatalogEntry]:
        if archive not in self.archives:
            raise DatastoreError(f"catalog has no archive {archive} (has: {', '.join(self.archives)})")
        return self.archives[archive]

    def find(self, archive: str, path: str) -> CatalogEntry | None:
        self.entries(archive)
        return self._by_path[archive].get(_norm(path))

    def list_dir(self, archive: str, path: str = ".") -> list[CatalogEntry]:
        """Entries directly inside directory `path` ('.' or '' is the archive root)."""
        d = _norm(path)
        e = self.find(archive, d)
        if e is None:
            raise DatastoreError(f"archive {archive}: no directory {path!r}")
        if e.type != "d":
            raise DatastoreError(f"archive {archive}: {path!r} is not a directory")
        out = [x for x in self.archives[archive]
               if x.path != "." and (posixpath.dirname(x.path) or ".") == d]
        return sorted(out, key=lambda x: x.path)


def _norm(path: str) -> str:
    p = posixpath.normpath("./" + path.strip("/")) if path not in ("", ".", "/") else "."
    return p[2:] if p.startswith("./") else p


def encode_catalog(archives: dict[str, list], crypt=None) -> bytes:
    doc = {"format": FORMAT, "version": VERSION, "archives": archives}
    return encode_blob(json.dumps(doc, separators=(",", ":")).encode(), crypt)


def write_catalog(path, archives: dict[str, list], crypt=None) -> None:
    write_atomic(path, encode_catalog(archives, crypt))


def read_catalog(store, ref, crypt=None) -> Catalog:
    p = store.snapshot_path(ref) / CATALOG_NAME
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DatastoreError(f"snapshot {ref} has no catalog; rebuild it with 'catalog rebuild'") from None
    data = decode_blob(raw, crypt, f"{ref}/{CATALOG_NAME}")
    try:
        doc = json.loads(data)
        if doc.get("format") != FORMAT:
            raise ValueError("format")
        return Catalog(doc["archives"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CorruptionError(f"{ref}/{CATALOG_NAME}: not a valid catalog", str(p)) from None


_TYPES = {tarfile.REGTYPE: "f", tarfile.AREGTYPE: "f", tarfile.DIRTYPE: "d", tarfile.SYMTYPE: "l",
          tarfile.CHRTYPE: "c", tarfile.BLKTYPE: "b", tarfile.FIFOTYPE: "p", tarfile.LNKTYPE: "h"}


def catalog_from_tar(reader, reporter: Reporter | None = None) -> list[list]:
    """Build catalog entries by reading only the tar headers of an archive stream."""
    reporter = reporter or Reporter()
    out = []
    try:
        with tarfile.open(fileobj=reader, mode="r:") as tf:
            for m in tf:
                reporter.check_abort()
                name = m.name if m.name not in ("", "./") else "."
                out.append([name, _TYPES.get(m.type, "?"), m.size if m.isreg() else 0,
                            float(m.mtime), m.mode, m.offset_data, m.linkname])
    except tarfile.TarError as e:
        raise CorruptionError(f"archive is not a valid tar stream: {e}", "archive") from None
    return out


def rebuild_catalog(store, ref, crypt=None, reporter: Reporter | None = None) -> Catalog:
    """Recreate catalog.blob from the snapshot's .tar archives."""
    reporter = reporter or Reporter()
    snapshot = store.snapshot_reader(ref)
    manifest = snapshot.manifest
    archives = {}
    for f in manifest.files:
        if f["filename"].endswith(".tar.didx"):
            name = f["filename"][:-5]
            reporter.log(f"catalog: reading headers of {ref}/{name}")
            with snapshot.open_archive(name, crypt, readahead=0) as r:
                archives[name] = catalog_from_tar(r, reporter)
    use_crypt = crypt if manifest.encrypted else None
    write_catalog(store.snapshot_path(ref) / CATALOG_NAME, archives, use_crypt)
    reporter.log(f"catalog of {ref} rebuilt: {sum(len(v) for v in archives.values())} entries")
    return Catalog(archives)
