"""Restore over the network: a reader session is a ChunkSource (datastores/engine/source.py),
so the engine's SnapshotReader checks every file and chunk and restores exactly as it
does from a local datastore or a bucket."""
from __future__ import annotations

import base64
import json

from datastores.engine.blob import decode_blob
from datastores.engine.catalog import CATALOG_NAME, catalog_from_tar, encode_catalog
from datastores.engine.errors import DatastoreError, MissingObjectError
from datastores.engine.restore import restore_snapshot_archive
from datastores.engine.source import SnapshotReader

from .errors import ClientError, RequestError
from .http import Server

# Over the network a chunk waits on a round trip, not on a disk: read further ahead, on more threads.
READAHEAD, DOWNLOAD_THREADS = 8, 4


class HttpSource:
    """The ChunkSource protocol over a reader session: stored blobs and snapshot files."""

    def __init__(self, server: Server, base: str, snapshot_rel: str):
        self.server, self.base, self.snapshot_rel = server, base, snapshot_rel

    def read_chunk(self, digest_hex: str) -> bytes:
        try:
            return self.server.request("GET", f"{self.base}/chunk/{digest_hex}")
        except RequestError as e:
            if e.status == 404:
                raise MissingObjectError(str(e), digest_hex) from None
            raise

    def read_file(self, rel_path: str) -> bytes:
        folder, _, name = rel_path.rpartition("/")
        if folder != self.snapshot_rel:
            raise DatastoreError(f"{rel_path}: this reader session serves only {self.snapshot_rel}")
        try:
            return self.server.request("GET", f"{self.base}/file/{name}")
        except RequestError as e:
            if e.status == 404:
                raise DatastoreError(str(e)) from None
            raise


def _snapshot_rel(ns: str, snapshot: str) -> str:
    prefix = "/".join(f"ns/{p}" for p in ns.split("/")) if ns else ""
    return f"{prefix}/{snapshot}" if prefix else snapshot


class ReaderSession:
    """A reader session on one snapshot; use as a context manager (finishes or aborts)."""

    def __init__(self, server: Server, store: str, snapshot: str, ns: str = "", crypt=None):
        self.server, self.crypt = server, crypt
        start = server.post_json(f"/api2/json/reader/{store}/start", {"ns": ns, "snapshot": snapshot})
        self.base = f"/api2/json/reader/{store}/{start['session']}"
        rel = _snapshot_rel(ns, snapshot)
        self.snapshot = SnapshotReader(HttpSource(server, self.base, rel), rel, snapshot,
                                       manifest_blob=base64.b64decode(start["manifest"]))

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
        """The key for this snapshot (None if unencrypted); a missing key says how to give it."""
        try:
            return self.snapshot.check_key(self.crypt)
        except DatastoreError as e:
            if self.crypt is None:
                raise ClientError(f"{e}; pass it with --keyfile") from None
            raise

    def restore(self, archive: str, target, reporter, pattern: str | None = None) -> dict:
        res = restore_snapshot_archive(self.snapshot, archive, target, self.key(), reporter,
                                       readahead=READAHEAD, workers=DOWNLOAD_THREADS, pattern=pattern)
        return {"archive": archive, "bytes": res.bytes, "files": res.files, "duration": res.duration}

    def catalog(self) -> dict:
        """The snapshot's catalog {archive: [[path, type, size, mtime, mode, offset, link]…]}."""
        crypt = self.key()
        try:
            raw, _ = self.snapshot.read_file(CATALOG_NAME)
        except DatastoreError as e:
            raise ClientError(f"{e}; rebuild it with 'catalog rebuild'") from None
        return json.loads(decode_blob(raw, crypt, CATALOG_NAME))["archives"]

    def rebuild_catalog(self, reporter) -> bytes:
        crypt = self.key()
        archives = {}
        for name in self.snapshot.manifest.filenames:
            if name.endswith(".tar.didx"):
                with self.snapshot.open_archive(name, crypt, READAHEAD, DOWNLOAD_THREADS) as reader:
                    archives[name[:-5]] = catalog_from_tar(reader, reporter)
        return encode_catalog(archives, crypt)
