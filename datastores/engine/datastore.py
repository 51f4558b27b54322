"""A datastore on disk: chunk store, namespaces, groups and snapshots.

    <path>/.pbsweb-datastore.json           {"uuid": ..., "format": 1}
    <path>/.chunks/<4 hex>/<64 hex>         chunk blobs
    <path>/[ns/<a>/[ns/<b>/…]]<type>/<id>/<YYYY-MM-DDTHH:MM:SSZ>/   snapshots
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import time
import uuid as uuidlib
from calendar import timegm
from dataclasses import dataclass
from pathlib import Path

from ._fsutil import fsync_dir, naming, write_atomic
from .blob import decode_blob
from .chunkstore import ChunkStore, check_digest_hex
from .errors import DatastoreError, GroupLockedError
from .index import Index, read_index
from .manifest import MANIFEST_NAME, Manifest
from .source import LocalSource, SnapshotReader, check_chunk

MARKER = ".pbsweb-datastore.json"
FORMAT_VERSION = 1
BACKUP_TYPES = ("vm", "ct", "host")
SAFE_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
FILE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*\.(fidx|didx|blob)$")
MAX_NS_DEPTH = 7
MAX_NS_LEN = 256
MAX_ID_LEN = 128
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
PROTECTED = ".protected"
WRITERS_DIR = ".writers"
# Group locks (docs/PROTOCOL.md §4): `<store>/.sessions/group-<hash>.lock`, flock()ed exclusively
# by a running backup of the group (local or a client session) and, for the moment of a
# removal, by forget/prune. A directory starting with '.' is ignored by listings and GC.
GROUP_LOCK_DIR = ".sessions"


# -- names and validation ---------------------------------------------------------

def validate_backup_type(value: str, field: str = "backup-type") -> str:
    if value not in BACKUP_TYPES:
        raise DatastoreError(f"{field}: {value!r} is not one of {', '.join(BACKUP_TYPES)}")
    return value


def validate_safe_id(value: str, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise DatastoreError(f"{field}: must not be empty")
    if len(value) > MAX_ID_LEN or not SAFE_ID_RE.match(value):
        raise DatastoreError(f"{field}: {value!r} is not valid (allowed: letters, digits, '_', '.', '-'; "
                             f"must not start with '.' or '-'; at most {MAX_ID_LEN} characters)")
    return value


def validate_backup_id(value: str, field: str = "backup-id") -> str:
    return validate_safe_id(value, field)


def validate_ns(ns: str, field: str = "namespace") -> str:
    """'' is the root namespace; otherwise 'a/b/c' (at most 7 levels)."""
    if ns is None or ns == "":
        return ""
    if not isinstance(ns, str) or len(ns) > MAX_NS_LEN:
        raise DatastoreError(f"{field}: longer than {MAX_NS_LEN} characters")
    parts = ns.split("/")
    if len(parts) > MAX_NS_DEPTH:
        raise DatastoreError(f"{field}: {ns!r} is nested deeper than {MAX_NS_DEPTH} levels")
    for p in parts:
        if not p or not SAFE_ID_RE.match(p):
            raise DatastoreError(f"{field}: {ns!r} has an invalid component {p!r}")
    return ns


def validate_filename(name: str, field: str = "filename") -> str:
    if not isinstance(name, str) or not FILE_RE.match(name):
        raise DatastoreError(f"{field}: {name!r} is not a valid snapshot file name")
    return name


def format_time(epoch: int) -> str:
    return time.strftime(TIME_FORMAT, time.gmtime(int(epoch)))


def parse_time(text: str, field: str = "backup-time") -> int:
    if not isinstance(text, str) or not TIME_RE.match(text):
        raise DatastoreError(f"{field}: {text!r} is not a UTC time like 2026-11-26T03:00:00Z")
    try:
        return timegm(time.strptime(text, TIME_FORMAT))
    except ValueError:
        raise DatastoreError(f"{field}: {text!r} is not a valid date") from None


def ns_to_rel(ns: str) -> str:
    """'a/b' -> 'ns/a/ns/b'; '' -> ''."""
    validate_ns(ns)
    return "/".join(f"ns/{p}" for p in ns.split("/")) if ns else ""


def rel_to_ns(rel: str) -> str:
    """'ns/a/ns/b' -> 'a/b'; '' -> ''."""
    rel = rel.strip("/")
    if not rel:
        return ""
    parts = rel.split("/")
    if len(parts) % 2 or any(parts[i] != "ns" for i in range(0, len(parts), 2)):
        raise DatastoreError(f"namespace path {rel!r} is not of the form ns/<a>/ns/<b>")
    return validate_ns("/".join(parts[1::2]))


def parse_snapshot_name(name: str) -> tuple[str, str, int]:
    """'host/web01/2026-11-26T03:00:00Z' -> ('host', 'web01', epoch)."""
    parts = name.strip("/").split("/")
    if len(parts) != 3:
        raise DatastoreError(f"snapshot: {name!r} is not of the form <type>/<id>/<time>")
    return (validate_backup_type(parts[0]), validate_backup_id(parts[1]),
            parse_time(parts[2], "snapshot time"))


def parse_snapshot_rel(rel_dir: str) -> tuple[str, str, str, int]:
    """'ns/a/host/web01/2026-…Z' -> ('a', 'host', 'web01', epoch)."""
    parts = rel_dir.strip("/").split("/")
    if len(parts) < 3:
        raise DatastoreError(f"snapshot: {rel_dir!r} is not of the form [ns/…/]<type>/<id>/<time>")
    t, i, tm = parse_snapshot_name("/".join(parts[-3:]))
    return rel_to_ns("/".join(parts[:-3])), t, i, tm


def group_rel_dir(ns: str, backup_type: str, backup_id: str) -> str:
    prefix = ns_to_rel(ns)
    g = f"{validate_backup_type(backup_type)}/{validate_backup_id(backup_id)}"
    return f"{prefix}/{g}" if prefix else g


@dataclass(frozen=True, order=True)
class SnapshotRef:
    ns: str
    backup_type: str
    backup_id: str
    time: int
    rel_dir: str
    finished: bool = False
    protected: bool = False

    @classmethod
    def make(cls, ns: str, backup_type: str, backup_id: str, time: int,
             finished: bool = False, protected: bool = False) -> "SnapshotRef":
        rel = f"{group_rel_dir(ns, backup_type, backup_id)}/{format_time(time)}"
        return cls(ns, backup_type, backup_id, int(time), rel, finished, protected)

    @property
    def time_str(self) -> str:
        return format_time(self.time)

    @property
    def group_rel_dir(self) -> str:
        return self.rel_dir.rsplit("/", 1)[0]

    @property
    def name(self) -> str:
        return f"{self.backup_type}/{self.backup_id}/{self.time_str}"

    def __str__(self) -> str:
        return f"{self.ns}:{self.name}" if self.ns else self.name


def _check_rel_path(rel_path: str) -> str:
    if not isinstance(rel_path, str) or not rel_path or rel_path.startswith("/") or "\0" in rel_path:
        raise DatastoreError(f"path {rel_path!r} must be relative to the datastore root")
    parts = rel_path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise DatastoreError(f"path {rel_path!r} must not contain empty, '.' or '..' components")
    return rel_path


class Datastore:
    """An existing datastore. Use Datastore.create() to make a new one."""

    def __init__(self, path):
        self.path = Path(path)
        marker = self.path / MARKER
        try:
            doc = json.loads(marker.read_text())
            self.uuid = str(doc["uuid"])
            fmt = int(doc["format"])
        except FileNotFoundError:
            raise DatastoreError(f"{self.path} is not a pbsweb datastore (no {MARKER})") from None
        except (ValueError, KeyError, TypeError):
            raise DatastoreError(f"{self.path}: {MARKER} is unreadable or malformed") from None
        if fmt != FORMAT_VERSION:
            raise DatastoreError(f"{self.path}: datastore format {fmt} is not supported "
                                 f"(this version reads format {FORMAT_VERSION})")
        self.chunks = ChunkStore(self.path / ".chunks")
        self.source = LocalSource(self.path)  # what readers read through (source.py)

    def __repr__(self) -> str:
        return f"<Datastore {self.path} uuid={self.uuid}>"

    @classmethod
    def create(cls, path, reuse: bool = False, uuid: str | None = None) -> "Datastore":
        """Create a datastore at `path` (a new or empty directory).

        An existing datastore there is an error unless reuse=True. The marker
        file is written last, so a failed create leaves no datastore behind.
        """
        path = Path(path)
        if (path / MARKER).exists():
            if reuse:
                return cls(path)
            raise DatastoreError(f"{path} already holds a datastore (use reuse to open it)")
        if path.exists():
            if not path.is_dir():
                raise DatastoreError(f"path: {path} exists and is not a directory")
            if any(path.iterdir()):
                raise DatastoreError(f"path: {path} is not empty and is not a datastore; refusing to use it")
            created_root = False
        else:
            try:
                path.mkdir(parents=True)
            except OSError as e:
                raise DatastoreError(f"path: cannot create {path}: {e.strerror}") from None
            created_root = True
        try:
            (path / ".chunks").mkdir()
            doc = {"uuid": uuid or str(uuidlib.uuid4()), "format": FORMAT_VERSION}
            write_atomic(path / MARKER, (json.dumps(doc) + "\n").encode())
        except BaseException:
            shutil.rmtree(path / ".chunks", ignore_errors=True)
            if created_root:
                shutil.rmtree(path, ignore_errors=True)
            raise
        return cls(path)

    # -- namespaces and groups ------------------------------------------------------

    def ns_path(self, ns: str) -> Path:
        rel = ns_to_rel(ns)
        return self.path / rel if rel else self.path

    def list_namespaces(self) -> list[str]:
        """All namespaces, '' (the root) first, then sorted."""
        out = [""]

        def walk(base: Path, ns: str, depth: int):
            nsdir = base / "ns"
            if depth >= MAX_NS_DEPTH or not nsdir.is_dir():
                return
            for e in sorted(os.scandir(nsdir), key=lambda e: e.name):
                if e.is_dir(follow_symlinks=False) and SAFE_ID_RE.match(e.name):
                    child = f"{ns}/{e.name}" if ns else e.name
                    out.append(child)
                    walk(Path(e.path), child, depth + 1)

        walk(self.path, "", 0)
        return out

    def create_namespace(self, ns: str) -> None:
        validate_ns(ns)
        if ns:
            self.ns_path(ns).mkdir(parents=True, exist_ok=True)

    def remove_namespace(self, ns: str) -> None:
        """Remove an empty namespace (no snapshots below it)."""
        validate_ns(ns)
        if not ns:
            raise DatastoreError("namespace: the root namespace cannot be removed")
        if self.list_snapshots(ns, recursive=True):
            raise DatastoreError(f"namespace {ns} is not empty")
        shutil.rmtree(self.ns_path(ns), ignore_errors=True)

    def list_groups(self, ns: str = "") -> list[tuple[str, str]]:
        """(type, id) of every group directly in namespace `ns`, sorted."""
        base = self.ns_path(ns)
        out = []
        for t in BACKUP_TYPES:
            tdir = base / t
            if not tdir.is_dir():
                continue
            for e in os.scandir(tdir):
                if e.is_dir(follow_symlinks=False) and SAFE_ID_RE.match(e.name):
                    out.append((t, e.name))
        return sorted(out)

    def group_path(self, ns: str, backup_type: str, backup_id: str) -> Path:
        return self.path / group_rel_dir(ns, backup_type, backup_id)

    def get_owner(self, ns: str, backup_type: str, backup_id: str) -> str | None:
        try:
            return (self.group_path(ns, backup_type, backup_id) / "owner").read_text().strip() or None
        except FileNotFoundError:
            return None

    def set_owner(self, ns: str, backup_type: str, backup_id: str, owner: str) -> None:
        if not owner or "\n" in owner:
            raise DatastoreError("owner: must be one non-empty line")
        g = self.group_path(ns, backup_type, backup_id)
        g.mkdir(parents=True, exist_ok=True)
        write_atomic(g / "owner", (owner + "\n").encode())

    def remove_group(self, ns: str, backup_type: str, backup_id: str, force: bool = False) -> None:
        """Remove a group and its snapshots (protected ones stop it unless force); refused with
        GroupLockedError while a backup of the group runs."""
        with self.group_lock(ns, backup_type, backup_id):
            for ref in self.list_snapshots(ns, recursive=False):
                if (ref.backup_type, ref.backup_id) == (backup_type, backup_id):
                    self._remove_snapshot(ref, force=force)
            shutil.rmtree(self.group_path(ns, backup_type, backup_id), ignore_errors=True)

    def group_lock_path(self, ns: str, backup_type: str, backup_id: str) -> Path:
        h = hashlib.sha256(group_rel_dir(ns, backup_type, backup_id).encode()).hexdigest()[:32]
        return self.path / GROUP_LOCK_DIR / f"group-{h}.lock"

    def try_group_lock(self, ns: str, backup_type: str, backup_id: str, wait: float = 0.0) -> int | None:
        """An fd holding the group's exclusive lock, or None if someone else holds it (after
        waiting up to `wait` seconds). Close the fd to release it."""
        p = self.group_lock_path(ns, backup_type, backup_id)
        p.parent.mkdir(exist_ok=True)
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(0.1)

    @contextlib.contextmanager
    def group_lock(self, ns: str, backup_type: str, backup_id: str, wait: float = 0.0):
        """Hold the group's lock for the block; GroupLockedError if a backup holds it."""
        fd = self.try_group_lock(ns, backup_type, backup_id, wait)
        if fd is None:
            raise GroupLockedError(f"backup group {backup_type}/{backup_id}"
                                   + (f" in namespace {ns}" if ns else "") + " is locked by a running backup")
        try:
            yield
        finally:
            os.close(fd)

    # -- snapshots ------------------------------------------------------------------

    def _ref_at(self, ns: str, backup_type: str, backup_id: str, tm: int, sdir: Path) -> SnapshotRef:
        return SnapshotRef.make(ns, backup_type, backup_id, tm,
                                finished=(sdir / MANIFEST_NAME).is_file(),
                                protected=(sdir / PROTECTED).exists())

    def list_snapshots(self, ns: str = "", recursive: bool = True) -> list[SnapshotRef]:
        """Snapshots in `ns` (and below when recursive), sorted by (ns, type, id, time)."""
        validate_ns(ns)
        if recursive:
            prefix = ns + "/"
            spaces = [n for n in self.list_namespaces() if n == ns or not ns or n.startswith(prefix)]
        else:
            spaces = [ns]
        out = []
        for n in spaces:
            for t, i in self.list_groups(n):
                gdir = self.group_path(n, t, i)
                for e in os.scandir(gdir):
                    if not (TIME_RE.match(e.name) and e.is_dir(follow_symlinks=False)):
                        continue
                    try:
                        tm = parse_time(e.name)
                    except DatastoreError:
                        continue
                    out.append(self._ref_at(n, t, i, tm, Path(e.path)))
        out.sort(key=lambda r: (r.ns, r.backup_type, r.backup_id, r.time))
        return out

    def snapshot_ref(self, ns: str, backup_type: str, backup_id: str, tm: int) -> SnapshotRef:
        """A ref with the current finished/protected state; DatastoreError if absent."""
        ref = SnapshotRef.make(ns, backup_type, backup_id, tm)
        sdir = self.path / ref.rel_dir
        if not sdir.is_dir():
            raise DatastoreError(f"snapshot {ref} does not exist in datastore {self.path}")
        return self._ref_at(ns, backup_type, backup_id, tm, sdir)

    def find_snapshot(self, name: str, ns: str = "") -> SnapshotRef:
        """Look up 'host/web01/2026-…Z' (or 'ns/a/host/…') in this store."""
        if name.startswith("ns/"):
            ns, t, i, tm = parse_snapshot_rel(name)
        else:
            t, i, tm = parse_snapshot_name(name)
        return self.snapshot_ref(ns, t, i, tm)

    def snapshot_path(self, ref: SnapshotRef) -> Path:
        return self.path / ref.rel_dir

    def load_manifest(self, ref: SnapshotRef) -> Manifest:
        p = self.snapshot_path(ref) / MANIFEST_NAME
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise DatastoreError(f"snapshot {ref} is unfinished or missing (no {MANIFEST_NAME})") from None
        return Manifest.from_blob(data, f"{ref}/{MANIFEST_NAME}")

    def snapshot_reader(self, ref: SnapshotRef) -> SnapshotReader:
        """The snapshot's manifest, files and archives, read through this store's source."""
        return SnapshotReader(self.source, ref.rel_dir, str(ref), manifest=self.load_manifest(ref))

    def load_index(self, ref: SnapshotRef, filename: str) -> Index:
        validate_filename(filename)
        return read_index(self.snapshot_path(ref) / filename, f"{ref}/{filename}")

    def read_blob_file(self, ref: SnapshotRef, filename: str, crypt=None) -> bytes:
        validate_filename(filename)
        p = self.snapshot_path(ref) / filename
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            raise DatastoreError(f"file {ref}/{filename} does not exist") from None
        return decode_blob(raw, crypt, f"{ref}/{filename}")

    def index_files(self, ref: SnapshotRef) -> list[str]:
        """Names of the index files present in the snapshot directory."""
        try:
            names = os.listdir(self.snapshot_path(ref))
        except FileNotFoundError:
            return []
        return sorted(n for n in names if FILE_RE.match(n) and n.endswith((".fidx", ".didx")))

    def chunk_digests(self, ref: SnapshotRef) -> set[str]:
        out: set[str] = set()
        for name in self.index_files(ref):
            out.update(d.hex() for d in self.load_index(ref, name).digests)
        return out

    def update_manifest(self, ref: SnapshotRef, change) -> Manifest:
        """Apply change(manifest) and rewrite the manifest atomically, under a lock."""
        with self.snapshot_lock(ref):
            m = self.load_manifest(ref)
            change(m)
            write_atomic(self.snapshot_path(ref) / MANIFEST_NAME, m.to_blob())
            return m

    @contextlib.contextmanager
    def snapshot_lock(self, ref: SnapshotRef):
        fd = os.open(self.snapshot_path(ref), os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def remove_snapshot(self, ref: SnapshotRef, force: bool = False, group_locked: bool = False) -> None:
        """Delete a snapshot: the manifest first (it becomes unfinished), then the rest.
        Refused with GroupLockedError while a backup of its group runs (group_locked: the
        caller holds the group's lock already, see group_lock())."""
        if group_locked:
            self._remove_snapshot(ref, force)
            return
        with self.group_lock(ref.ns, ref.backup_type, ref.backup_id):
            self._remove_snapshot(ref, force)

    def _remove_snapshot(self, ref: SnapshotRef, force: bool = False) -> None:
        sdir = self.snapshot_path(ref)
        if not sdir.is_dir():
            raise DatastoreError(f"snapshot {ref} does not exist")
        if (sdir / PROTECTED).exists() and not force:
            raise DatastoreError(f"snapshot {ref} is protected; unprotect it before removing it")
        try:
            os.unlink(sdir / MANIFEST_NAME)
            fsync_dir(sdir)
        except FileNotFoundError:
            pass
        shutil.rmtree(sdir)

    def set_protected(self, ref: SnapshotRef, protected: bool) -> None:
        p = self.snapshot_path(ref) / PROTECTED
        if protected:
            write_atomic(p, b"")
        else:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def set_notes(self, ref: SnapshotRef, text: str) -> None:
        def change(m):
            if text:
                m.unprotected["notes"] = text
            else:
                m.unprotected.pop("notes", None)
        self.update_manifest(ref, change)

    # -- chunks and files -------------------------------------------------------------

    def insert_chunk(self, digest_hex: str, blob: bytes, verify: bool = True, fsync: bool = True) -> bool:
        """Insert a chunk blob; with verify, check its CRC and (plain chunks) its digest."""
        check_digest_hex(digest_hex)
        if verify:
            check_chunk(digest_hex, blob, crc_only_without_key=True)
        return self.chunks.insert(digest_hex, blob, fsync=fsync)

    def write_file_atomic(self, rel_path: str, data: bytes) -> None:
        _check_rel_path(rel_path)
        p = self.path / rel_path
        p.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(p, data)

    # -- writer registration (GC respects running writers) ------------------------------

    @contextlib.contextmanager
    def writer(self, kind: str = "backup"):
        """Register a running writer (backup, pull) for the duration of the block.

        A file `.writers/<token>` holds the start time; the writer keeps an
        exclusive flock on it, so a crashed writer's file is detected as stale.
        Yields the start time (epoch seconds, float).
        """
        wdir = self.path / WRITERS_DIR
        wdir.mkdir(exist_ok=True)
        start = time.time()
        p = wdir / f"{kind}-{os.getpid()}-{secrets.token_hex(6)}"
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with naming(p):
                os.write(fd, json.dumps({"kind": kind, "pid": os.getpid(), "start": start}).encode())
            yield start
        finally:
            try:
                os.unlink(p)
            finally:
                os.close(fd)

    def running_writers(self) -> list[dict]:
        """Live writers (stale files of crashed writers are removed)."""
        wdir = self.path / WRITERS_DIR
        out = []
        try:
            entries = list(os.scandir(wdir))
        except FileNotFoundError:
            return out
        for e in entries:
            try:
                fd = os.open(e.path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    try:
                        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
                    except ValueError:
                        info = {}
                    info.setdefault("start", os.fstat(fd).st_mtime)
                    out.append(info)
                    continue
                # Nobody holds it: a crashed writer left it behind.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(e.path)
            finally:
                os.close(fd)
        return out

    def oldest_writer_start(self) -> float | None:
        starts = [w["start"] for w in self.running_writers()]
        return min(starts) if starts else None
