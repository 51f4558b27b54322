"""Restore archives from a snapshot: extract tar archives into a directory,
write images to a file or device. The snapshot is read through a
SnapshotReader (source.py), so a local snapshot and one in a bucket restore
the same way, every chunk digest verified."""
from __future__ import annotations

import fcntl
import fnmatch
import os
import secrets
import shutil
import stat
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ._fsutil import naming
from .catalog import read_catalog
from .datastore import Datastore, SnapshotRef
from .errors import CorruptionError, DatastoreError
from .report import Reporter
from .source import ArchiveReader, SnapshotReader, archive_filename

__all__ = ["RestoreResult", "archive_filename", "open_archive_stream", "restore_archive", "restore_file",
           "restore_snapshot_archive"]

MiB = 1024 * 1024
COPY_BUF = 4 * MiB


def open_archive_stream(store: Datastore, ref: SnapshotRef, archive_name: str, crypt=None,
                        readahead: int = 4) -> ArchiveReader:
    """A file-like reader over an archive ('root.tar' or 'disk.img') of a local snapshot."""
    return store.snapshot_reader(ref).open_archive(archive_name, crypt, readahead)


@dataclass
class RestoreResult:
    bytes: int
    files: int
    duration: float

    @property
    def mbps(self) -> float:
        return self.bytes / MiB / self.duration if self.duration > 0 else 0.0


def mtime_ns(member: tarfile.TarInfo) -> int:
    """Exact mtime in ns: the PAX 'mtime' record keeps all 9 digits a float would lose."""
    pax = member.pax_headers.get("mtime")
    if pax:
        try:
            neg = pax.startswith("-")
            sec, _, frac = pax.lstrip("-").partition(".")
            ns = int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])
            return -ns if neg else ns
        except ValueError:
            pass
    return int(member.mtime) * 1_000_000_000


class _TarFile(tarfile.TarFile):
    def utime(self, tarinfo, targetpath):
        ns = mtime_ns(tarinfo)
        os.utime(targetpath, ns=(ns, ns))


def _inside(base: str, path: str) -> bool:
    return path == base or path.startswith(base + os.sep)


def _check_member(member: tarfile.TarInfo, base_real: str, symlinks_seen: bool) -> str:
    """The member's path under base_real, or DatastoreError if it would land outside.

    Only symlinks restored earlier can redirect a path that passed the textual
    checks, so the (costly) realpath check runs once the tree holds one."""
    name = member.name
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or "\0" in name:
        raise DatastoreError(f"archive member {name!r} would escape the target directory; refused")
    target = os.path.join(base_real, name)
    if symlinks_seen:
        # Follow links already on disk: nothing may be written outside the target.
        where = os.path.realpath(os.path.dirname(target) if member.issym() else target)
        if not _inside(base_real, where):
            raise DatastoreError(f"archive member {name!r} would be written outside the target "
                                 f"directory (through a symlink); refused")
    if member.islnk():
        link = os.path.realpath(os.path.join(base_real, member.linkname))
        if member.linkname.startswith("/") or "\0" in member.linkname or not _inside(base_real, link):
            raise DatastoreError(f"archive member {name!r} is a hard link outside the target; refused")
    return os.path.normpath(target)


def _partial_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")


def _remove_stale_partials(target: Path, reporter: Reporter) -> None:
    """Remove what a restore to `target` killed earlier (SIGKILL, power loss) left
    behind: `.<name>.partial-<pid>-<random>` that no restore holds a flock() on
    (a running restore holds one on its partial tree or file, whatever its
    host or PID namespace)."""
    prefix = f".{target.name}.partial-"
    try:
        siblings = list(os.scandir(target.parent))
    except FileNotFoundError:
        return
    for e in siblings:
        if not e.name.startswith(prefix) or e.is_symlink():
            continue
        try:
            fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue                  # a running restore holds it
            reporter.log(f"removing {e.path}, left by an interrupted restore")
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                try:
                    os.unlink(e.path)
                except FileNotFoundError:
                    pass
        finally:
            os.close(fd)


def _hold(path) -> int:
    """An fd holding an exclusive flock() on `path` while a restore works in it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _prepare_target_dir(target: Path, reporter: Reporter) -> Path:
    if target.exists():
        if not target.is_dir():
            raise DatastoreError(f"target {target} exists and is not a directory")
        if any(target.iterdir()):
            raise DatastoreError(f"target directory {target} is not empty; refusing to restore into it")
        target.rmdir()
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target, reporter)
    return _partial_name(target)


def _default_workers() -> int:
    return max(2, min(4, (os.cpu_count() or 2) + 1))


def restore_archive(store: Datastore, ref: SnapshotRef, archive_name: str, target, crypt=None,
                    reporter: Reporter | None = None, **kw) -> RestoreResult:
    """Restore an archive of a local snapshot (see restore_snapshot_archive)."""
    return restore_snapshot_archive(store.snapshot_reader(ref), archive_name, target, crypt, reporter, **kw)


def restore_snapshot_archive(snapshot: SnapshotReader, archive_name: str, target, crypt=None,
                             reporter: Reporter | None = None, *, readahead: int = 8,
                             workers: int | None = None, pattern: str | None = None,
                             writers: int = 4) -> RestoreResult:
    """Restore a .tar archive into the directory `target` (must not exist or be
    empty) or an .img archive into the file or block device `target`. With a
    glob `pattern`, only the .tar members it matches (and everything below them).

    Chunks are read, checked and decoded `readahead` ahead on `workers` threads;
    file data is written by `writers` threads, several files at once, all-zero
    64 KiB blocks left as holes; hard links are restored as links.
    Directory restores happen in a temporary sibling renamed into place at the
    end, so a failure leaves no half-restored tree behind (and a restore killed
    outright leaves one that the next restore to the same target removes).
    """
    reporter = reporter or Reporter()
    target = Path(target)
    t0 = time.monotonic()
    filename = archive_filename(archive_name)
    with snapshot.open_archive(archive_name, crypt, readahead, workers or _default_workers()) as reader:
        reporter.log(f"restoring {snapshot.label}/{archive_name} ({reader.size / MiB:.1f} MiB) to {target}")
        if filename.endswith(".didx"):
            files = _extract_tar(reader, target, reporter, pattern, writers)
        else:
            if pattern:
                raise DatastoreError("pattern: only .tar archives hold files to select")
            files = 1
            _write_image(reader, target, reporter)
    res = RestoreResult(reader.size, files, time.monotonic() - t0)
    reporter.log(f"restored {res.bytes / MiB:.1f} MiB, {res.files} files in {res.duration:.2f} s "
                 f"({res.mbps:.1f} MiB/s)")
    reporter.progress(1.0, "done")
    return res


def member_matches(name: str, pattern: str | None) -> bool:
    """True if the member or one of its parent directories matches the glob (no pattern: all)."""
    if not pattern:
        return True
    parts = name.split("/")
    return any(fnmatch.fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


# -- parallel file writer -----------------------------------------------------------------

WRITERS = 4                 # threads writing file data
WRITE_INFLIGHT = 64 * MiB   # file bytes handed to the writers and not yet written (bounded memory)
MAX_TASKS = 64              # queued write tasks (each may hold an open file)
BATCH = 8 * MiB             # bytes of one file per write task
SMALL = 1 * MiB             # files up to this size are created by the writers, in groups of
GROUP_FILES = 64            # at most this many files
GROUP_BYTES = 4 * MiB       # or bytes
HOLE_BLOCK = 64 * 1024      # all-zero blocks of this size (file-aligned) become holes
_ZERO = bytes(HOLE_BLOCK)
_EUID = os.geteuid()
_IS_ROOT = _EUID == 0
_ALWAYS_CHOWN = False       # see _extract_tar: under a set-group-ID directory new files take its group


def _pwrite_all(fd: int, mv, pos: int) -> None:
    while mv:
        n = os.pwrite(fd, mv, pos)
        mv, pos = mv[n:], pos + n


def write_sparse(fd: int, mv, off: int) -> int:
    """pwrite `mv` at file offset `off`, skipping all-zero blocks (file-aligned
    HOLE_BLOCKs, or the part of one that mv covers): the file is new, so skipped
    blocks read back as zeros; the caller truncates the file to its size at the end).
    Returns the file offset after the last byte written (off if none)."""
    n = len(mv)
    end = off
    run = 0                                   # start of the pending non-zero run
    s = 0
    while s < n:
        e = min(n, s + HOLE_BLOCK - (off + s) % HOLE_BLOCK)
        if _ZERO.startswith(mv[s:e]):         # memcmp; fails at the first non-zero byte
            if s > run:
                _pwrite_all(fd, mv[run:s], off + run)
                end = off + s
            run = e
        s = e
    if run < n:
        _pwrite_all(fd, mv[run:], off + run)
        end = off + n
    return end


class _FileJob:
    __slots__ = ("fd", "path", "size", "member", "pending", "lock", "end", "mode", "chmod")

    def __init__(self, fd: int, path: str, size: int, member: tarfile.TarInfo):
        self.fd, self.path, self.size, self.member = fd, path, size, member
        self.end = 0                  # file offset after the last byte written
        self.mode, self.chmod = _create_mode(member)
        self.pending = 1              # the main thread's token, dropped by _Writer.close_job
        self.lock = threading.Lock()


def _read_umask() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return None


_UMASK = _read_umask()


def _create_mode(member: tarfile.TarInfo) -> tuple[int, bool]:
    """(mode to create a file with, whether it still needs a chmod): a file
    created with its final permission bits under the umask needs none."""
    mode = member.mode & 0o7777
    if _UMASK is not None and not mode & 0o7000 and not mode & _UMASK:
        return mode, False
    return 0o600, True


def _set_attrs(path, member: tarfile.TarInfo, fd: int | None = None, chmod: bool = True) -> None:
    """Owner (as root), mode and exact mtime, as tarfile sets them (skipping
    what a new file already has: our owner, the mode it was created with)."""
    ns = mtime_ns(member)
    if member.issym():
        if _IS_ROOT:
            os.lchown(path, member.uid, member.gid)
        try:
            os.utime(path, ns=(ns, ns), follow_symlinks=False)
        except (NotImplementedError, OSError):
            pass
        return
    where = fd if fd is not None else path
    if _IS_ROOT and (fd is None or _ALWAYS_CHOWN or member.uid != _EUID or member.gid != os.getegid()):
        os.chown(where, member.uid, member.gid)
        chmod = True                   # chown clears set-id bits
    if chmod:
        os.chmod(where, member.mode)
    os.utime(where, ns=(ns, ns))


class _Writer:
    """Writes file data on a few threads, pieces of several files at once.

    Pieces are memoryviews of decoded chunks (no copies); at most
    WRITE_INFLIGHT bytes and MAX_TASKS tasks wait, so memory stays bounded
    whatever the archive holds. The last piece of a file to finish sets its
    size, mode and mtime and closes it. The first error stops everything."""

    def __init__(self, threads: int):
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="restore-writer")
        self.cond = threading.Condition()
        self.bytes = 0
        self.tasks = 0
        self.error: BaseException | None = None
        self.open_jobs: set = set()
        self.group: list = []           # small files waiting to go to a writer together
        self.group_bytes = 0
        self.group_futures: list = []   # groups handed to the writers, not known to be done

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def _reserve(self, nbytes: int) -> None:
        with self.cond:
            while self.error is None and self.tasks and (
                    self.bytes + nbytes > WRITE_INFLIGHT or self.tasks >= MAX_TASKS):
                self.cond.wait()
            self.check()
            self.bytes += nbytes
            self.tasks += 1

    def _done(self, nbytes: int) -> None:
        with self.cond:
            self.bytes -= nbytes
            self.tasks -= 1
            self.cond.notify_all()

    def submit(self, job: _FileJob, pieces: list, nbytes: int) -> None:
        """A batch of pieces of a file opened by the caller (job.fd)."""
        self._reserve(nbytes)
        with job.lock:
            job.pending += 1
        self.pool.submit(self._run, job, pieces, nbytes)

    def add_small(self, job: _FileJob, pieces: list, nbytes: int) -> None:
        """A whole small file, not created yet: files go to a writer in groups
        (fewer hand-overs between threads: file creation is the costly part)."""
        self.group.append((job, pieces))
        self.group_bytes += nbytes
        if self.group_bytes >= GROUP_BYTES or len(self.group) >= GROUP_FILES:
            self.flush()

    def flush(self) -> None:
        if self.group:
            group, nbytes = self.group, self.group_bytes
            self.group, self.group_bytes = [], 0
            self._reserve(nbytes)
            self.group_futures = [f for f in self.group_futures if not f.done()]
            self.group_futures.append(self.pool.submit(self._run_group, group, nbytes))

    def wait_small(self) -> None:
        """Wait until every small file handed over so far exists (a hard link to
        one needs it), without waiting for the large files' writes."""
        self.flush()
        for f in self.group_futures:
            f.result()
        self.group_futures = []
        self.check()

    def _run_group(self, group: list, nbytes: int) -> None:
        try:
            for job, pieces in group:
                if self.error is not None:
                    break
                fd = -1
                try:
                    with naming(job.path):
                        fd = os.open(job.path, _O_NEW, job.mode)
                        end = 0
                        for off, mv in pieces:
                            end = max(end, write_sparse(fd, mv, off))
                        if end < job.size:
                            os.ftruncate(fd, job.size)      # trailing holes
                        _set_attrs(job.path, job.member, fd, job.chmod)
                finally:
                    if fd >= 0:
                        os.close(fd)
        except BaseException as e:
            self._fail(e)
        finally:
            group.clear()
            self._done(nbytes)

    def _run(self, job: _FileJob, pieces: list, nbytes: int) -> None:
        try:
            if self.error is None:
                with naming(job.path):
                    end = 0
                    for off, mv in pieces:
                        end = max(end, write_sparse(job.fd, mv, off))
                    with job.lock:
                        job.end = max(job.end, end)
        except BaseException as e:
            self._fail(e)
        finally:
            pieces.clear()
            self._done(nbytes)
            self._release(job)

    def _fail(self, e: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = e
            self.cond.notify_all()

    def open_job(self, job: _FileJob) -> None:
        with self.cond:
            self.open_jobs.add(job)

    def close_job(self, job: _FileJob) -> None:
        self._release(job)

    def _release(self, job: _FileJob) -> None:
        with job.lock:
            job.pending -= 1
            if job.pending:
                return
        try:
            if self.error is None and job.fd >= 0:
                with naming(job.path):
                    if job.end < job.size:
                        os.ftruncate(job.fd, job.size)      # trailing holes
                    _set_attrs(job.path, job.member, job.fd, job.chmod)
        except BaseException as e:
            self._fail(e)
        finally:
            if job.fd >= 0:
                os.close(job.fd)
            with self.cond:
                self.open_jobs.discard(job)

    def finish(self, abort: bool = False) -> None:
        """Wait for every write (abort: stop early), close every file; raise the first error."""
        if abort:
            self._fail(DatastoreError("restore aborted"))
            self.group.clear()
        else:
            self.flush()
        self.pool.shutdown(wait=True, cancel_futures=abort)
        with self.cond:
            left = list(self.open_jobs)     # tasks cancelled before they ran
            self.open_jobs.clear()
        for job in left:
            try:
                if job.fd >= 0:
                    os.close(job.fd)
            except OSError:
                pass
        if not abort:
            self.check()


def _link(path: str, src: str) -> None:
    os.link(src, path, follow_symlinks=False)


def _symlink(path: str, dest: str) -> None:
    os.symlink(dest, path)


def _mkparent(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)


def _create(path: str, fn, *args):
    """fn(path, *args), creating missing parent directories (a pattern selects
    members whose parents it does not select)."""
    try:
        return fn(path, *args)
    except FileNotFoundError:
        _mkparent(path)
        return fn(path, *args)


_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _extract_tar(reader: ArchiveReader, target: Path, reporter: Reporter, pattern: str | None = None,
                 writers: int = WRITERS) -> int:
    """Extract the tar stream of `reader` into `target` via a temporary sibling.

    The calling thread reads the tar headers (the reader decodes chunks ahead
    on its own threads) and creates each entry; file data goes to _Writer as
    memoryviews of the decoded chunks. Directory attributes are set last,
    deepest first, as tarfile does."""
    tmp = _prepare_target_dir(target, reporter)
    tmp.mkdir()
    lock_fd = _hold(tmp)
    if _IS_ROOT and os.stat(tmp).st_mode & stat.S_ISGID:
        global _ALWAYS_CHOWN
        _ALWAYS_CHOWN = True      # files would get the directory's group, not ours: chown each
    base_real = os.path.realpath(tmp)
    writer = _Writer(writers)
    count = 0
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    skipped_files: dict[str, tarfile.TarInfo] = {}   # with a pattern: files a hard link may need
    relinked: dict[str, str] = {}
    made_dirs = {base_real}
    symlinks = False
    ok = False
    try:
        try:
            tf = _TarFile(fileobj=reader, mode="r", copybufsize=COPY_BUF)
        except tarfile.TarError as e:
            raise CorruptionError(f"archive is not a valid tar stream: {e}", "archive") from None
        last = time.monotonic()
        while True:
            try:
                m = tf.next()
            except tarfile.TarError as e:
                raise CorruptionError(f"archive is not a valid tar stream: {e}", "archive") from None
            if m is None:
                break
            tf.members.clear()          # the headers are not kept: memory stays flat
            reporter.check_abort()
            writer.check()
            if not member_matches(m.name, pattern):
                if pattern and m.isreg():
                    skipped_files[m.name] = m
                continue
            if (m.ischr() or m.isblk()) and not _IS_ROOT:
                reporter.warn(f"skipping device node {m.name}: only root can create it")
                continue
            path = _check_member(m, base_real, symlinks)
            count += 1
            now = time.monotonic()
            if now - last > 2:
                last = now
                reporter.progress(reader.tell() / max(reader.size, 1), f"{reader.tell() / MiB:.0f} MiB")
            if m.isreg() or (m.islnk() and m.linkname in skipped_files):
                data_m = m
                if m.islnk():
                    # A hard link to a file the pattern left out: restore its data once,
                    # later links to the same file link to this copy.
                    data_m = skipped_files.pop(m.linkname)
                    relinked[m.linkname] = m.name
                if data_m.sparse is not None:
                    raise CorruptionError(f"archive member {m.name!r}: GNU sparse members are not "
                                          f"supported", "archive")
                _restore_file(reader, writer, path, m, data_m, made_dirs)
            elif m.isdir():
                if path not in made_dirs:
                    try:
                        _create(path, os.mkdir, 0o700)
                    except FileExistsError:
                        if not os.path.isdir(path) or os.path.islink(path):
                            raise
                made_dirs.add(path)
                dirs.append((path, m))
            elif m.islnk():
                src = os.path.join(base_real, relinked.get(m.linkname, m.linkname))
                with naming(path):
                    try:
                        _create(path, _link, src)
                    except FileNotFoundError:   # its first name may still wait for a writer
                        writer.wait_small()
                        _create(path, _link, src)
            elif m.issym():
                with naming(path):
                    _create(path, _symlink, m.linkname)
                    _set_attrs(path, m)
                symlinks = True
            elif m.isfifo() or m.ischr() or m.isblk():
                kind = stat.S_IFIFO if m.isfifo() else stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                with naming(path):
                    _create(path, os.mknod, 0o600 | kind, os.makedev(m.devmajor, m.devminor))
                    _set_attrs(path, m)
            else:
                reporter.warn(f"skipping archive member {m.name!r} of unknown type {m.type!r}")
        writer.finish()
        for path, m in sorted(dirs, key=lambda d: d[0], reverse=True):
            with naming(path):
                _set_attrs(path, m)
        os.rename(tmp, target)
        ok = True
    finally:
        if not ok:
            writer.finish(abort=True)
            shutil.rmtree(tmp, ignore_errors=True)
        os.close(lock_fd)
    return count


def _pieces(reader, start: int, end: int):
    """reader.pieces() of an ArchiveReader; plain file objects are read in COPY_BUF blocks."""
    if isinstance(reader, ArchiveReader):
        yield from reader.pieces(start, end)
        return
    reader.seek(start)
    while start < end:
        data = reader.read(min(COPY_BUF, end - start))
        if not data:
            raise CorruptionError("archive is not a valid tar stream: unexpected end of data", "archive")
        start += len(data)
        yield memoryview(data)


def _restore_file(reader: ArchiveReader, writer: _Writer, path: str, m: tarfile.TarInfo,
                  data_m: tarfile.TarInfo, made_dirs: set) -> None:
    """Hand the file's data to the writers in batches of BATCH bytes.

    A file of one batch in a directory this restore made is created by its
    writer (file creation is the costly part of small files); others here,
    so that their parents are checked and made right after _check_member (a
    directory this restore made cannot turn into a symlink later)."""
    start = data_m.offset_data
    if data_m.size <= SMALL and os.path.dirname(path) in made_dirs:
        # A copy: a group must not keep whole chunks alive for a few small files.
        data = b"".join(_pieces(reader, start, start + data_m.size)) if data_m.size else b""
        writer.add_small(_FileJob(-1, path, data_m.size, m), [(0, memoryview(data))] if data else [],
                         data_m.size)
        return
    with naming(path):
        fd = _create(path, os.open, _O_NEW, _create_mode(m)[0])
    job = _FileJob(fd, path, data_m.size, m)
    writer.open_job(job)
    batch, nb, off = [], 0, 0
    try:
        for mv in _pieces(reader, start, start + data_m.size):
            batch.append((off, mv))
            nb += len(mv)
            off += len(mv)
            if nb >= BATCH:
                writer.submit(job, batch, nb)
                batch, nb = [], 0
        if batch:
            writer.submit(job, batch, nb)
    finally:
        writer.close_job(job)


def _write_image(reader: ArchiveReader, target: Path, reporter: Reporter) -> None:
    is_dev = target.exists() and stat.S_ISBLK(os.stat(target).st_mode)
    path = target if is_dev else _partial_name(target)
    if not is_dev:
        if target.is_dir():
            raise DatastoreError(f"target {target} is a directory; an image restores to a file")
        if target.exists() or target.is_symlink():
            raise DatastoreError(f"target {target} already exists; refusing to overwrite it")
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(target, reporter)
    fd = os.open(path, os.O_WRONLY | (0 if is_dev else os.O_CREAT | os.O_EXCL), 0o600)
    if not is_dev:
        fcntl.flock(fd, fcntl.LOCK_EX)     # a running restore's partial file (see _remove_stale_partials)
    zero = bytes(4 * MiB)
    try:
        last = time.monotonic()
        for off, data in reader.iter_chunks():
            reporter.check_abort()
            # Leave holes for all-zero chunks in regular files (sparse restore).
            if not is_dev and len(data) == len(zero) and data == zero:
                continue
            mv = memoryview(data)
            pos = off
            while mv:
                n = os.pwrite(fd, mv, pos)
                mv, pos = mv[n:], pos + n
            now = time.monotonic()
            if now - last > 2:
                last = now
                reporter.progress(off / max(reader.size, 1), f"{off / MiB:.0f} MiB")
        if not is_dev:
            os.ftruncate(fd, reader.size)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        if not is_dev:
            os.replace(path, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if not is_dev:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        raise


def restore_file(store: Datastore, ref: SnapshotRef, archive_name: str, member_path: str, out,
                 crypt=None) -> int:
    """Write one regular file of a .tar archive to `out` (a path or a binary file object).

    Uses the catalog's data offset when there is a catalog, else scans the tar.
    Returns the number of bytes written.
    """
    if not archive_name.endswith(".tar"):
        raise DatastoreError(f"archive name: {archive_name!r}: single files restore from .tar archives")
    member = member_path.strip("/")
    offset = size = None
    snapshot = store.snapshot_reader(ref)
    try:
        catalog = read_catalog(store, ref, snapshot.check_key(crypt))
        entry = catalog.find(archive_name, member)
        if entry is not None and entry.type == "h":     # a hard link: its data is the first name's
            entry = catalog.find(archive_name, entry.link)
    except DatastoreError:
        entry = None
    with snapshot.open_archive(archive_name, crypt, readahead=2) as reader:
        if entry is not None:
            if entry.type != "f":
                raise DatastoreError(f"archive {archive_name}: {member_path!r} is not a regular file")
            offset, size = entry.offset, entry.size
        else:
            with tarfile.open(fileobj=reader, mode="r:") as tf:
                files = {}
                for m in tf:
                    if m.isreg():
                        files[m.name] = m
                    if m.name == member:
                        if m.islnk() and m.linkname in files:
                            m = files[m.linkname]
                        if not m.isreg():
                            raise DatastoreError(f"archive {archive_name}: {member_path!r} is not a regular file")
                        offset, size = m.offset_data, m.size
                        break
        if offset is None:
            raise DatastoreError(f"archive {archive_name} of {ref} has no file {member_path!r}")
        reader.seek(offset)
        own = not hasattr(out, "write")
        f = open(out, "wb") if own else out
        try:
            left = size
            while left:
                data = reader.read(min(left, COPY_BUF))
                if not data:
                    raise CorruptionError(f"archive {archive_name}: unexpected end of data in {member_path!r}",
                                          member_path)
                f.write(data)
                left -= len(data)
        finally:
            if own:
                f.close()
    return size
