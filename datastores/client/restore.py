"""Restore over the network: a reader session is a chunk source (read_chunk / read_file, the
ChunkSource protocol of datastores.engine.source) under the engine's archive reader."""
from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from datastores.engine.blob import decode_blob
from datastores.engine.catalog import CATALOG_NAME, catalog_from_tar, encode_catalog
from datastores.engine.crypto import chunk_digest
from datastores.engine.errors import CorruptionError, DatastoreError
from datastores.engine.index import read_index
from datastores.engine.manifest import MANIFEST_NAME, Manifest
from datastores.engine.restore import ArchiveReader, _extract_tar, _write_image, archive_filename

from .errors import ClientError
from .http import Server

MiB = 1024 * 1024
DOWNLOAD_THREADS = 4


class HttpSource:
    """The ChunkSource protocol over a reader session: raw stored blobs and snapshot files."""

    def __init__(self, server: Server, base: str, snapshot_rel: str):
        self.server, self.base, self.snapshot_rel = server, base, snapshot_rel

    def read_chunk(self, digest_hex: str) -> bytes:
        return self.server.request("GET", f"{self.base}/chunk/{digest_hex}")

    def read_file(self, rel_path: str) -> bytes:
        folder, _, name = rel_path.rpartition("/")
        if folder != self.snapshot_rel:
            raise DatastoreError(f"{rel_path}: this reader session serves only {self.snapshot_rel}")
        return self.server.request("GET", f"{self.base}/file/{name}")


# ADAPTER until datastores/engine/source.py (check_chunk and an archive reader over any
# source) is merged: then use those and drop check_chunk and SourceArchiveReader here.
def check_chunk(digest_hex: str, blob: bytes, crypt=None, expected_len: int | None = None) -> bytes:
    data = decode_blob(blob, crypt, f"chunk {digest_hex}")
    if expected_len is not None and len(data) != expected_len:
        raise CorruptionError(f"chunk {digest_hex}: length {len(data)} does not match the index", digest_hex)
    if chunk_digest(data, crypt).hex() != digest_hex:
        raise CorruptionError(f"chunk {digest_hex}: content does not match its digest", digest_hex)
    return data


class SourceArchiveReader(ArchiveReader):
    def __init__(self, source, index, crypt=None, readahead: int = 8):
        super().__init__(None, index, crypt, readahead)
        self.source = source
        # Over the network a chunk waits on a round trip, not on the disk: more downloads at once.
        self._pool.shutdown()
        self._pool = ThreadPoolExecutor(DOWNLOAD_THREADS, thread_name_prefix="download")

    def _load(self, i: int) -> bytes:
        start, end = self.index.chunk_range(i)
        hx = self.index.digests[i].hex()
        return check_chunk(hx, self.source.read_chunk(hx), self.crypt, end - start)


def _snapshot_rel(ns: str, snapshot: str) -> str:
    prefix = "/".join(f"ns/{p}" for p in ns.split("/")) if ns else ""
    return f"{prefix}/{snapshot}" if prefix else snapshot


class ReaderSession:
    """A reader session on one snapshot; use as a context manager (finishes or aborts)."""

    def __init__(self, server: Server, store: str, snapshot: str, ns: str = "", crypt=None):
        self.server, self.crypt = server, crypt
        start = server.post_json(f"/api2/json/reader/{store}/start", {"ns": ns, "snapshot": snapshot})
        self.base = f"/api2/json/reader/{store}/{start['session']}"
        self.snapshot = snapshot
        self.manifest = Manifest.from_blob(base64.b64decode(start["manifest"]), f"{snapshot}/{MANIFEST_NAME}")
        self.source = HttpSource(server, self.base, _snapshot_rel(ns, snapshot))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.server.request("POST", f"{self.base}/finish", body=b"")
            else:
                self.server.post_json(f"{self.base}/abort", {"reason": str(exc)[:200] or exc_type.__name__})
        except ClientError:
            if exc_type is None:
                raise

    def key(self):
        """The key for this snapshot (None if unencrypted); ClientError if it is missing or wrong."""
        m = self.manifest
        if not m.encrypted:
            return None
        fp = m.key_fingerprint or "?"
        if self.crypt is None:
            raise ClientError(f"snapshot {self.snapshot} is encrypted with key {fp}; "
                              f"pass its key with --keyfile")
        if m.key_fingerprint and self.crypt.fingerprint != m.key_fingerprint:
            raise ClientError(f"snapshot {self.snapshot} is encrypted with key {fp}; the key given "
                              f"has fingerprint {self.crypt.fingerprint}")
        m.check_signature(self.crypt, f"{self.snapshot}/{MANIFEST_NAME}")
        return self.crypt

    def open_archive(self, archive: str) -> SourceArchiveReader:
        filename = archive_filename(archive)
        entry = self.manifest.file(filename)
        if entry is None:
            raise ClientError(f"snapshot {self.snapshot} has no archive {archive} "
                              f"(has: {', '.join(self.manifest.filenames)})")
        crypt = self.key()
        index = read_index(self.source.read_file(f"{self.source.snapshot_rel}/{filename}"), filename)
        if entry["csum"] != index.csum or entry["size"] != index.size:
            raise CorruptionError(f"{self.snapshot}/{filename}: index does not match the manifest",
                                  filename)
        return SourceArchiveReader(self.source, index, crypt)

    def restore(self, archive: str, target, reporter, pattern: str | None = None) -> dict:
        t0 = time.monotonic()
        target = Path(target)
        with self.open_archive(archive) as reader:
            if archive_filename(archive).endswith(".didx"):
                files = _extract_tar(reader, target, reporter, pattern)
            else:
                if pattern:
                    raise ClientError("--pattern: only .tar archives hold files to select")
                files = 1
                _write_image(reader, target, reporter)
            size = reader.size
        return {"archive": archive, "bytes": size, "files": files, "duration": time.monotonic() - t0}

    def catalog(self) -> dict:
        """The snapshot's catalog {archive: [[path, type, size, mtime, mode, offset, link]…]}."""
        try:
            raw = self.source.read_file(f"{self.source.snapshot_rel}/{CATALOG_NAME}")
        except ClientError as e:
            raise ClientError(f"snapshot {self.snapshot} has no catalog ({e}); "
                              f"rebuild it with 'catalog rebuild'") from None
        return json.loads(decode_blob(raw, self.key(), CATALOG_NAME))["archives"]

    def rebuild_catalog(self, reporter) -> bytes:
        archives = {}
        for name in self.manifest.filenames:
            if name.endswith(".tar.didx"):
                with self.open_archive(name) as reader:
                    archives[name[:-5]] = catalog_from_tar(reader, reporter)
        return encode_catalog(archives, self.key())
