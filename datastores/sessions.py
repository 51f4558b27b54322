"""Backup and reader sessions of network clients (docs/PROTOCOL.md).

A session lives on disk in `<store>/.sessions/<sid>/` so that any web worker
process can serve any of its requests (chunk uploads come in over several
connections, which gunicorn may hand to different processes):

    session.json   who, which group/snapshot, the task's UPID (written once)
    lock           flock()ed by the process that opened the session while it is alive
    uploads        one line per chunk received: "<digest> <blob bytes>\n" (O_APPEND)
    downloads      the same for a reader session
    digests        reader: the chunks the snapshot references (the only ones it may read)
    ended          written when the session finished or was aborted
    <files>        staged indexes and blobs of a backup, moved into the snapshot at finish

The process that opened a session also holds the datastore writer registration
(GC keeps everything written after it started) and the group lock, and runs a
reaper thread that aborts sessions whose client went silent. The directory
name starts with '.', so GC never marks the staged indexes: a session that dies
leaves only unreferenced chunks, which the next GC after the grace period removes.
"""
import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import blake3
from django.conf import settings
from django.db import connection
from django.utils import timezone

from datastores.engine._fsutil import tune_malloc
from datastores.engine.blob import blob_is_encrypted, check_blob_crc, decode_blob
from datastores.engine.crypto import chunk_digest
from datastores.engine.datastore import Datastore, SnapshotRef, validate_filename
from datastores.engine.errors import DatastoreError
from datastores.engine.index import read_index
from datastores.engine.manifest import MANIFEST_NAME, Manifest
from pbsweb import tasklog
from pbsweb.models import Task
from pbsweb.worker import create_task

log = logging.getLogger(__name__)

SESSIONS_DIR = ".sessions"
# A client that sends nothing for this long is gone; its session is aborted.
IDLE_TIMEOUT = float(os.environ.get("PBSWEB_CLIENT_SESSION_TIMEOUT", "60"))
MAX_CHUNK_BLOB = (16 << 20) + 4096          # a 16 MiB chunk plus blob header and zstd overhead
PROGRESS_LOG_INTERVAL = 5.0
HEARTBEAT_INTERVAL = 10.0     # the task heartbeat (pbsweb.worker.reap_dead_tasks) while a session lives
MiB = 1024 * 1024


class SessionError(Exception):
    """A refused protocol request: `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _sid_dir(store: Datastore, sid: str) -> Path:
    if len(sid) != 32 or any(c not in "0123456789abcdef" for c in sid):
        raise SessionError(404, f"no session {sid!r}")
    return store.path / SESSIONS_DIR / sid


def _flocked_by_someone(path: Path) -> bool:
    """True while another open file description holds an flock on `path`."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _read_lines(path: Path):
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    yield parts[0], int(parts[1])
    except FileNotFoundError:
        return


def _append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class TaskLog:
    """Writes a client session's task log and ends its task (from any process)."""

    def __init__(self, upid: str):
        self.task = Task.objects.get(upid=upid)

    def write(self, message: str) -> None:
        writer = tasklog.TaskLogWriter(self.task.log_path)
        try:
            writer.write(message)
        finally:
            writer.close()

    def end(self, ok: bool, status: str, result: dict | None = None) -> None:
        """Write the final TASK line once (whoever gets here first wins)."""
        state = Task.OK if ok else Task.ERROR
        if Task.objects.filter(pk=self.task.pk, state=Task.RUNNING).update(
                state=state, status=status if not ok else "OK", endtime=timezone.now(),
                progress=1.0 if ok else None, result=result or {}):
            self.write("TASK OK" if ok else f"TASK ERROR: {status}")


@dataclass
class SessionInfo:
    """What session.json holds."""
    sid: str
    kind: str                      # "backup" or "reader"
    auth_id: str
    ns: str
    backup_type: str
    backup_id: str
    backup_time: int
    upid: str
    start: float
    encrypted: bool = False
    previous: str | None = None    # rel dir of the previous snapshot a backup may reuse

    @property
    def ref(self) -> SnapshotRef:
        return SnapshotRef.make(self.ns, self.backup_type, self.backup_id, self.backup_time)


class Session:
    """One open session as seen by the request at hand (any process)."""

    def __init__(self, store: Datastore, sid: str):
        self.store = store
        self.dir = _sid_dir(store, sid)
        try:
            doc = json.loads((self.dir / "session.json").read_text())
        except FileNotFoundError:
            raise SessionError(404, f"backup session {sid} does not exist or has ended") from None
        self.info = SessionInfo(**doc)

    # -- state -------------------------------------------------------------------
    def check(self, auth_id: str, kind: str) -> "Session":
        if self.info.auth_id != auth_id or self.info.kind != kind:
            raise SessionError(403, f"session {self.info.sid} belongs to another client")
        ended = self.ended()
        if ended is not None:
            raise SessionError(410, f"session {self.info.sid} has ended: {ended}")
        if not _flocked_by_someone(self.dir / "lock"):
            raise SessionError(410, f"session {self.info.sid} has ended: the server process that "
                                    f"held it is gone")
        try:
            os.utime(self.dir / "lock")   # activity: the reaper aborts idle sessions
        except FileNotFoundError:
            raise SessionError(410, f"session {self.info.sid} has ended") from None
        return self

    def ended(self) -> str | None:
        try:
            return (self.dir / "ended").read_text()
        except FileNotFoundError:
            return None

    @property
    def task_log(self) -> TaskLog:
        return TaskLog(self.info.upid)

    def uploaded(self) -> dict[str, int]:
        return dict(_read_lines(self.dir / "uploads"))

    # -- backup ------------------------------------------------------------------
    def put_chunk(self, digest_hex: str, blob: bytes) -> bool:
        """Check a chunk completely, then insert it. True if it was new to the store."""
        # Each request allocates chunk-sized buffers (body, decoded data); without this every
        # one is a fresh mmap the kernel zeroes page by page, a third of the server's CPU.
        tune_malloc()
        if len(blob) > MAX_CHUNK_BLOB:
            raise SessionError(413, f"chunk {digest_hex}: {len(blob)} bytes is larger than a chunk can be")
        if not check_blob_crc(blob):
            raise SessionError(400, f"chunk {digest_hex}: CRC mismatch or not a blob (damaged in transit?)")
        if blob_is_encrypted(blob) != self.info.encrypted:
            mode = "encrypted" if self.info.encrypted else "unencrypted"
            raise SessionError(400, f"chunk {digest_hex}: this is an {mode} backup; the chunk is not")
        if not self.info.encrypted:
            try:
                data = decode_blob(blob, None, f"chunk {digest_hex}")
            except DatastoreError as e:
                raise SessionError(400, str(e)) from None
            if chunk_digest(data).hex() != digest_hex:
                raise SessionError(400, f"chunk {digest_hex}: content does not match its digest")
        new = self.store.insert_chunk(digest_hex, blob, verify=False, fsync=False)
        _append(self.dir / "uploads", f"{digest_hex} {len(blob)}\n")
        return new

    def previous_file(self, filename: str) -> bytes:
        """An index (or the manifest) of the previous snapshot; its chunks are touched so GC
        keeps them for this session even if that snapshot is pruned meanwhile."""
        if not self.info.previous:
            raise SessionError(404, "this group has no previous snapshot")
        if filename != MANIFEST_NAME:
            validate_filename(filename)
        path = self.store.path / self.info.previous / filename
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SessionError(404, f"the previous snapshot has no file {filename}") from None
        if filename.endswith((".didx", ".fidx")):
            for d in read_index(data, filename).digests:
                self.store.chunks.touch(d.hex())
        return data

    def put_file(self, filename: str, data: bytes) -> dict:
        """Stage an index (every chunk it names must exist) or a blob of the snapshot."""
        validate_filename(filename)
        if filename == MANIFEST_NAME:
            raise SessionError(400, f"{filename}: the manifest is sent with finish, last")
        if filename.endswith((".didx", ".fidx")):
            index = read_index(data, filename)
            uploaded = self.uploaded()
            new = reused = new_bytes = reused_bytes = stored = 0
            for i, d in enumerate(index.digests):
                hx = d.hex()
                start, end = index.chunk_range(i)
                if not self.store.chunks.touch(hx):
                    raise SessionError(400, f"index {filename} names chunk {hx}, which was not uploaded "
                                            f"and is not in the datastore")
                if hx in uploaded:
                    new += 1
                    new_bytes += end - start
                    stored += uploaded.pop(hx)     # count a chunk once per index
                else:
                    reused += 1
                    reused_bytes += end - start
            stats = {"filename": filename, "size": index.size, "csum": index.csum, "chunks": len(index),
                     "new": new, "reused": reused, "new-bytes": new_bytes, "reused-bytes": reused_bytes,
                     "stored-bytes": stored}
            self.task_log.write(
                f"archive {filename}: {index.size / MiB:.1f} MiB, {len(index)} chunks: {new} new "
                f"({new_bytes / MiB:.1f} MiB, sent as {stored / MiB:.1f} MiB), {reused} reused "
                f"({reused_bytes / MiB:.1f} MiB, not sent)")
            _append(self.dir / "archives", json.dumps(stats) + "\n")
        else:
            if not check_blob_crc(data):
                raise SessionError(400, f"{filename}: CRC mismatch or not a blob")
            stats = {"filename": filename, "size": len(data)}
        (self.dir / filename).write_bytes(data)
        return stats

    def log_progress(self) -> None:
        """Called on a client's keep-alive: at most every few seconds, how much arrived."""
        marker = self.dir / "progress"
        try:
            if time.time() - marker.stat().st_mtime < PROGRESS_LOG_INTERVAL:
                return
        except FileNotFoundError:
            pass
        marker.touch()
        up = self.uploaded()
        total = sum(up.values())
        elapsed = max(time.time() - self.info.start, 1e-6)
        self.task_log.write(f"received {len(up)} new chunks, {total / MiB:.1f} MiB "
                            f"({total / MiB / elapsed:.1f} MiB/s)")

    def finish(self, manifest_blob: bytes) -> dict:
        """Check the manifest against the staged files, publish them, write the manifest last."""
        info = self.info
        try:
            manifest = Manifest.from_blob(manifest_blob, MANIFEST_NAME)
        except DatastoreError as e:
            raise SessionError(400, f"manifest: {e}") from None
        if (manifest.backup_type, manifest.backup_id, manifest.backup_time) != (
                info.backup_type, info.backup_id, info.backup_time):
            raise SessionError(400, "manifest: backup type, id or time differ from the session's")
        staged = {p.name for p in self.dir.iterdir() if p.name.endswith((".didx", ".fidx", ".blob"))}
        if not manifest.files:
            raise SessionError(400, "manifest: lists no files")
        for f in manifest.files:
            name = f["filename"]
            if name not in staged:
                raise SessionError(400, f"manifest: lists {name}, which was not uploaded")
            if (f["crypt-mode"] == "encrypt") != info.encrypted:
                raise SessionError(400, f"manifest: crypt-mode of {name} does not match the session")
            data = (self.dir / name).read_bytes()
            if name.endswith((".didx", ".fidx")):
                index = read_index(data, name)
                size, csum = index.size, index.csum
            else:
                size, csum = len(data), blake3.blake3(data).hexdigest()
            if (int(f["size"]), f["csum"]) != (size, csum):
                raise SessionError(400, f"manifest: size or checksum of {name} does not match the upload")
        unlisted = staged - set(manifest.filenames) - {"catalog.blob"}
        if unlisted:
            raise SessionError(400, f"manifest: does not list uploaded {', '.join(sorted(unlisted))}")
        sdir = self.store.snapshot_path(info.ref)
        try:
            sdir.mkdir()
        except FileExistsError:
            raise SessionError(409, f"snapshot {info.ref} already exists") from None
        try:
            for name in staged:
                os.rename(self.dir / name, sdir / name)
            # Chunks were stored without per-file fsync: flush before the manifest.
            self.store.chunks.sync()
            self.store.write_file_atomic(f"{info.ref.rel_dir}/{MANIFEST_NAME}", manifest_blob)
        except BaseException:
            shutil.rmtree(sdir, ignore_errors=True)
            raise
        archives = [json.loads(line) for line in (self.dir / "archives").read_text().splitlines()] \
            if (self.dir / "archives").exists() else []
        totals = {k: sum(a.get(k, 0) for a in archives)
                  for k in ("size", "chunks", "new", "reused", "new-bytes", "reused-bytes", "stored-bytes")}
        duration = time.time() - info.start
        self.task_log.write(
            f"backup {info.ref} finished: {totals['size'] / MiB:.1f} MiB in {duration:.2f} s "
            f"({totals['size'] / MiB / max(duration, 1e-6):.1f} MiB/s); chunks new {totals['new']} "
            f"({totals['new-bytes'] / MiB:.1f} MiB, sent {totals['stored-bytes'] / MiB:.1f} MiB), "
            f"reused {totals['reused']} ({totals['reused-bytes'] / MiB:.1f} MiB)")
        result = {"snapshot": info.ref.name, "duration": duration, **totals}
        self.end(True, "finished", result)
        return result

    # -- reader ------------------------------------------------------------------
    def read_chunk(self, digest_hex: str) -> bytes:
        tune_malloc()
        if digest_hex not in _allowed_digests(self):
            raise SessionError(403, f"chunk {digest_hex} is not part of snapshot {self.info.ref}")
        try:
            blob = self.store.chunks.read(digest_hex)
        except DatastoreError as e:
            raise SessionError(404, str(e)) from None
        _append(self.dir / "downloads", f"{digest_hex} {len(blob)}\n")
        return blob

    def read_file(self, filename: str) -> bytes:
        if filename != MANIFEST_NAME:
            validate_filename(filename)
        try:
            return (self.store.snapshot_path(self.info.ref) / filename).read_bytes()
        except FileNotFoundError:
            raise SessionError(404, f"snapshot {self.info.ref} has no file {filename}") from None

    def finish_reader(self) -> dict:
        down = list(_read_lines(self.dir / "downloads"))
        total = sum(n for _, n in down)
        duration = time.time() - self.info.start
        self.task_log.write(f"reader {self.info.ref} finished: sent {len(down)} chunks, "
                            f"{total / MiB:.1f} MiB in {duration:.2f} s "
                            f"({total / MiB / max(duration, 1e-6):.1f} MiB/s)")
        result = {"chunks": len(down), "bytes": total, "duration": duration}
        self.end(True, "finished", result)
        return result

    # -- end ---------------------------------------------------------------------
    def end(self, ok: bool, reason: str, result: dict | None = None) -> None:
        """Mark the session ended and end its task; the owner process releases its locks."""
        with contextlib.suppress(FileExistsError):
            fd = os.open(self.dir / "ended", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, reason.encode())
            os.close(fd)
        if not ok:
            self.task_log.write(f"session aborted: {reason}; nothing of it is visible")
        self.task_log.end(ok, reason, result)
        _release_if_mine(self.info.sid)


_allowed_cache: dict[str, frozenset] = {}


def _allowed_digests(session: Session) -> frozenset:
    sid = session.info.sid
    if sid not in _allowed_cache:
        _allowed_cache[sid] = frozenset((session.dir / "digests").read_text().split())
    return _allowed_cache[sid]


# -- opening sessions (the owner process) -----------------------------------------------

@dataclass
class _Held:
    store: Datastore
    dir: Path
    upid: str
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    last_beat: float = 0.0


_held: dict[str, _Held] = {}
_held_lock = threading.Lock()
_reaper: threading.Thread | None = None


def _flock_file(stack: contextlib.ExitStack, path: Path) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    stack.callback(os.close, fd)


def open_session(store: Datastore, store_name: str, kind: str, auth_id: str, ref: SnapshotRef,
                 encrypted: bool = False, previous: str | None = None, digests=None) -> Session:
    """Create the session directory, its task, and (backup) lock the group and register a writer."""
    cleanup_stale(store)
    sid = secrets.token_hex(16)
    sdir = store.path / SESSIONS_DIR / sid
    held = _Held(store, sdir, "")
    try:
        sdir.mkdir(parents=True)
        _flock_file(held.stack, sdir / "lock")      # first: a directory with a held lock is alive
        if kind == "backup":
            # A session that just ended may still hold the lock for a moment (its owner
            # process releases it within a second): wait that long, not longer.
            # The group lock also keeps forget/prune away from the group (docs/PROTOCOL.md §4).
            fd = store.try_group_lock(ref.ns, ref.backup_type, ref.backup_id, wait=2.0)
            if fd is None:
                raise SessionError(409, f"backup group {ref.backup_type}/{ref.backup_id} is locked by "
                                        f"another running backup")
            held.stack.callback(os.close, fd)
            held.stack.enter_context(store.writer("backup"))
        worker_id = f"{store_name}:{ref.ns + '/' if ref.ns else ''}{ref.backup_type}/{ref.backup_id}"
        task = create_task("datastores.tasks.client_session", kind, worker_id, auth_id, store=store_name)
        Task.objects.filter(pk=task.pk).update(state=Task.RUNNING, heartbeat=timezone.now(),
                                               node=settings.NODE_NAME)
        held.upid = task.upid
        info = SessionInfo(sid, kind, auth_id, ref.ns, ref.backup_type, ref.backup_id, ref.time,
                           task.upid, time.time(), encrypted, previous)
        if digests is not None:
            (sdir / "digests").write_text("\n".join(sorted(digests)) + "\n")
        (sdir / "session.json").write_text(json.dumps(info.__dict__))
    except BaseException:
        held.stack.close()
        shutil.rmtree(sdir, ignore_errors=True)
        raise
    with _held_lock:
        _held[sid] = held
    _start_reaper()
    session = Session(store, sid)
    mode = "encrypted" if encrypted else "unencrypted"
    what = (f"starting backup of {ref} ({mode})" + (f"; previous snapshot {previous}" if previous else "")
            if kind == "backup" else f"starting restore from {ref}")
    session.task_log.write(f"{what} on datastore {store_name} for {auth_id}")
    return session


def _release_if_mine(sid: str) -> None:
    with _held_lock:
        held = _held.pop(sid, None)
    if held is not None:
        held.stack.close()
        shutil.rmtree(held.dir, ignore_errors=True)


def cleanup_stale(store: Datastore) -> None:
    """Remove session directories of ended sessions and of dead processes (server restart);
    end their tasks if nobody did."""
    base = store.path / SESSIONS_DIR
    try:
        entries = list(os.scandir(base))
    except FileNotFoundError:
        return
    for e in entries:
        if not e.is_dir() or e.name in _held:
            continue
        d = Path(e.path)
        if _flocked_by_someone(d / "lock"):
            continue
        if not (d / "session.json").exists() and time.time() - e.stat().st_mtime < 60:
            continue        # being created by another process this instant (mkdir, then flock)
        try:
            info = json.loads((d / "session.json").read_text())
            TaskLog(info["upid"]).end(False, "the server process serving the session ended")
        except (FileNotFoundError, ValueError, KeyError, Task.DoesNotExist):
            pass
        shutil.rmtree(d, ignore_errors=True)


def _reap_once() -> None:
    now = time.time()
    with _held_lock:
        items = list(_held.items())
    for sid, held in items:
        try:
            session = Session(held.store, sid)
        except SessionError:
            _release_if_mine(sid)
            continue
        if session.ended() is not None:
            _release_if_mine(sid)
            continue
        idle = now - (held.dir / "lock").stat().st_mtime
        if idle > IDLE_TIMEOUT:
            session.end(False, f"no request from the client for {idle:.0f} s (client gone or connection lost)")
        elif now - held.last_beat >= HEARTBEAT_INTERVAL:
            held.last_beat = now
            Task.objects.filter(upid=held.upid, state=Task.RUNNING).update(heartbeat=timezone.now())


def _reaper_loop() -> None:
    while True:
        time.sleep(1.0)
        try:
            _reap_once()
        except Exception:  # the reaper must survive a bad session
            log.exception("client session reaper")
        finally:
            connection.close()


def _start_reaper() -> None:
    global _reaper
    with _held_lock:
        if _reaper is None or not _reaper.is_alive():
            _reaper = threading.Thread(target=_reaper_loop, daemon=True, name="client-session-reaper")
            _reaper.start()
