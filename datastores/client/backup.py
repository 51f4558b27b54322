"""A backup over the network: the engine cuts and encodes chunks exactly as a local backup
does (datastores.engine.backup.backup_archive); this module's Uploader is the chunk target
that sends the new ones to the server in parallel."""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from datastores.engine._fsutil import tune_malloc
from datastores.engine.backup import BUF_SIZE, N_BUFFERS, _check_archives, backup_archive
from datastores.engine.catalog import CATALOG_NAME, encode_catalog
from datastores.engine.index import read_index
from datastores.engine.manifest import MANIFEST_NAME, Manifest

from .errors import ClientError, RequestError
from .http import RateLimit, Server

PING_INTERVAL = 5.0
PROGRESS_INTERVAL = 0.5
CHUNK_THREADS = 4        # hash, compress (and encrypt) chunks: zstd, blake3 and AES release the GIL
UPLOAD_THREADS = 4       # uploads in parallel, each on its own keep-alive connection
UPLOADS_QUEUED = 8       # encoded chunks waiting for or in upload (bounded memory: ~8 x 4 MiB)
MiB = 1024 * 1024


class Uploader:
    """Chunk target for backup_archive: touch() answers "known, do not send" for chunks the
    previous snapshot references or this session sent or is sending; insert() queues a new
    chunk for upload and returns at once, so the chunk threads go on hashing and compressing
    while up to `threads` uploads wait on the network. flush() waits for every upload (before
    an index that names the chunks is sent) and raises the first failure as soon as it happens.

    The upload threads are daemons: after a failure the client reports and exits at once, even
    if another upload is still stuck on a dead connection (TIMEOUT)."""

    def __init__(self, server: Server, base: str, known: set[str], rate: RateLimit,
                 threads: int = UPLOAD_THREADS, queued: int = UPLOADS_QUEUED):
        self.server, self.base, self.known, self.rate = server, base, known, rate
        self.sent_chunks = 0
        self.sent_bytes = 0
        self.reused_chunks = 0
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.pending: set[str] = set()          # queued or being uploaded
        self.queue: queue.Queue = queue.Queue(maxsize=queued)   # full: insert() waits (bounded memory)
        self.error: BaseException | None = None
        self.closed = False
        for i in range(threads):
            threading.Thread(target=self._worker, daemon=True, name=f"upload-{i}").start()

    def touch(self, digest_hex: str) -> bool:
        with self.lock:
            if digest_hex in self.known or digest_hex in self.pending:
                self.reused_chunks += 1
                return True
            return False

    def insert(self, digest_hex: str, blob, fsync: bool = False) -> bool:
        self._raise_error()
        # A copy: the blob may point into the reader's buffer, which is reused once we return.
        data = b"".join(blob) if isinstance(blob, list) else bytes(blob)
        with self.lock:
            if digest_hex in self.known or digest_hex in self.pending:
                return False         # another chunk thread got there first
            self.pending.add(digest_hex)
        while True:
            try:
                self.queue.put((digest_hex, data), timeout=0.2)
                return True
            except queue.Full:
                self._raise_error()

    def _worker(self) -> None:
        while True:
            digest_hex, data = self.queue.get()
            try:
                if self.error is None and not self.closed:
                    self.rate.wait(len(data))
                    self.server.request("POST", f"{self.base}/chunk/{digest_hex}", body=data)
                    with self.lock:
                        self.known.add(digest_hex)
                        self.sent_chunks += 1
                        self.sent_bytes += len(data)
            except BaseException as e:  # noqa: BLE001 - handed to the main thread by flush()/insert()
                with self.lock:
                    if self.error is None:
                        self.error = e
            finally:
                with self.lock:
                    self.pending.discard(digest_hex)
                    self.idle.notify_all()

    def _raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def flush(self) -> None:
        with self.lock:
            while self.pending and self.error is None:
                self.idle.wait(0.5)
        self._raise_error()

    def close(self) -> None:
        """Send nothing more (uploads already running end on their own)."""
        self.closed = True


class _Pinger(threading.Thread):
    """Keeps the session alive while the client reads a large file between uploads."""

    def __init__(self, server: Server, base: str, idle_timeout: float | None = None):
        super().__init__(daemon=True, name="ping")
        self.server, self.base = server, base
        # well within the server's idle timeout (docs/PROTOCOL.md §4), even a short one
        self.interval = min(PING_INTERVAL, idle_timeout / 3) if idle_timeout else PING_INTERVAL
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.server.request("POST", f"{self.base}/ping", body=b"")
            except ClientError:
                pass    # the main thread sees the failure on its next request


class _Progress(threading.Thread):
    """The progress line (shown only on a terminal, cli.Output): chunks sent and reused, speed."""

    def __init__(self, uploader: Uploader, reporter, interval: float = PROGRESS_INTERVAL):
        super().__init__(daemon=True, name="progress")
        self.uploader, self.reporter, self.interval = uploader, reporter, interval
        self.stopped = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            u = self.uploader
            elapsed = max(time.monotonic() - self.t0, 1e-6)
            self.reporter.progress(0.0, f"sent {u.sent_chunks} chunks, {u.sent_bytes / MiB:.1f} MiB "
                                        f"({u.sent_bytes / MiB / elapsed:.1f} MiB/s); "
                                        f"{u.reused_chunks} chunks reused; {elapsed:.0f} s")


@dataclass
class NetBackupResult:
    snapshot: str
    archives: list = field(default_factory=list)   # per archive: dict
    duration: float = 0.0
    sent_chunks: int = 0
    sent_bytes: int = 0
    reused_chunks: int = 0
    bytes_read: int = 0
    previous: str | None = None
    warnings: int = 0

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def run_network_backup(server: Server, store: str, backup_type: str, backup_id: str, archives,
                       reporter, ns: str = "", crypt=None, exclude=(), rate: float | None = None,
                       backup_time: int | None = None) -> NetBackupResult:
    sources = _check_archives(archives)
    tune_malloc()      # chunk-sized buffers from the heap, not a fresh mmap each (as a local backup)
    backup_time = int(time.time()) if backup_time is None else backup_time
    start = server.post_json(f"/api2/json/backup/{store}/start", {
        "ns": ns, "backup-type": backup_type, "backup-id": backup_id, "backup-time": backup_time,
        "encrypted": crypt is not None})
    base = f"/api2/json/backup/{store}/{start['session']}"
    result = NetBackupResult(f"{backup_type}/{backup_id}/" + time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                           time.gmtime(backup_time)))
    pinger = _Pinger(server, base, start.get("idle-timeout"))
    pinger.start()
    progress = uploader = None
    t0 = time.monotonic()
    try:
        known = _previous_chunks(server, base, start.get("previous"), crypt, reporter)
        result.previous = start.get("previous") if known else None
        uploader = Uploader(server, base, known, RateLimit(rate))
        progress = _Progress(uploader, reporter)
        progress.start()
        manifest = Manifest(backup_type, backup_id, backup_time)
        catalog: dict[str, list] = {}
        buffers = [memoryview(bytearray(BUF_SIZE)) for _ in range(N_BUFFERS)]
        with ThreadPoolExecutor(CHUNK_THREADS, thread_name_prefix="chunk") as pool:
            for name, source in sources:
                data, index, stats, tar_catalog, warnings = backup_archive(
                    name, source, uploader, crypt, pool, buffers, reporter, backup_time, exclude=exclude)
                uploader.flush()        # the server checks that every chunk the index names exists
                server.request("POST", f"{base}/file/{stats.filename}", body=data)
                manifest.add_file(stats.filename, index.size, index.csum, "encrypt" if crypt else "none")
                if tar_catalog is not None:
                    catalog[name] = tar_catalog
                    result.warnings += warnings
                result.archives.append({"archive": name, "size": stats.size, "chunks": stats.chunks,
                                        "new": stats.chunks_new, "reused": stats.chunks_reused,
                                        "new-bytes": stats.bytes_new, "sent-bytes": stats.stored_new})
                result.bytes_read += stats.size
                result.reused_chunks += stats.chunks_reused
        if catalog:
            server.request("POST", f"{base}/file/{CATALOG_NAME}", body=encode_catalog(catalog, crypt))
        if crypt is not None:
            manifest.sign(crypt)
        server.request("POST", f"{base}/finish", body=manifest.to_blob(), retry=False)
    except BaseException as e:
        pinger.stopped.set()
        if uploader is not None:
            uploader.close()        # no upload after the abort
        reason = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        try:
            server.post_json(f"{base}/abort", {"reason": reason})
        except ClientError:
            pass    # the server aborts the session by itself when the client falls silent
        raise
    finally:
        pinger.stopped.set()
        if uploader is not None:
            uploader.close()
        if progress is not None:
            progress.stopped.set()
            progress.join()
    result.duration = time.monotonic() - t0
    result.sent_chunks, result.sent_bytes = uploader.sent_chunks, uploader.sent_bytes
    return result


def _previous_chunks(server: Server, base: str, previous: str | None, crypt, reporter) -> set[str]:
    """Digests the previous snapshot's indexes reference, if its chunks are usable for this
    backup (same encryption key); empty otherwise."""
    if not previous:
        return set()
    manifest = Manifest.from_blob(server.request("GET", f"{base}/previous/{MANIFEST_NAME}"), "previous manifest")
    fingerprint = crypt.fingerprint if crypt is not None else None
    if manifest.encrypted != (crypt is not None) or manifest.key_fingerprint != fingerprint:
        reporter.log(f"previous snapshot {previous} was made with another key or mode; "
                     f"not reusing its chunks")
        return set()
    known: set[str] = set()
    for name in manifest.filenames:
        if name.endswith((".didx", ".fidx")):
            try:
                data = server.request("GET", f"{base}/previous/{name}")
            except RequestError:
                continue
            known.update(read_index(data, name).hex_digests())
    reporter.log(f"previous snapshot {previous}: {len(known)} known chunks will not be sent again")
    return known
