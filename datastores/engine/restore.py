"""Restore archives from a snapshot: extract tar archives into a directory,
write images to a file or device. The snapshot is read through a
SnapshotReader (source.py), so a local snapshot and one in a bucket restore
the same way, every chunk digest verified."""
from __future__ import annotations

import fnmatch
import os
import secrets
import shutil
import stat
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

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


def _safe_filter(base_real: str):
    """A tarfile extraction filter that keeps metadata but refuses escapes."""
    def check(member: tarfile.TarInfo, dest: str):
        name = member.name
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or "\0" in name:
            raise DatastoreError(f"archive member {name!r} would escape the target directory; refused")
        target = os.path.join(base_real, name)
        # Follow links already on disk: nothing may be written outside the target.
        where = os.path.realpath(os.path.dirname(target) if member.issym() else target)
        if not _inside(base_real, where):
            raise DatastoreError(f"archive member {name!r} would be written outside the target "
                                 f"directory (through a symlink); refused")
        if member.islnk():
            link = os.path.realpath(os.path.join(base_real, member.linkname))
            if member.linkname.startswith("/") or not _inside(base_real, link):
                raise DatastoreError(f"archive member {name!r} is a hard link outside the target; refused")
        return member
    return check


def _prepare_target_dir(target: Path) -> Path:
    if target.exists():
        if not target.is_dir():
            raise DatastoreError(f"target {target} exists and is not a directory")
        if any(target.iterdir()):
            raise DatastoreError(f"target directory {target} is not empty; refusing to restore into it")
        target.rmdir()
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.with_name(f".{target.name}.partial-{secrets.token_hex(4)}")


def restore_archive(store: Datastore, ref: SnapshotRef, archive_name: str, target, crypt=None,
                    reporter: Reporter | None = None) -> RestoreResult:
    """Restore an archive of a local snapshot (see restore_snapshot_archive)."""
    return restore_snapshot_archive(store.snapshot_reader(ref), archive_name, target, crypt, reporter)


def restore_snapshot_archive(snapshot: SnapshotReader, archive_name: str, target, crypt=None,
                             reporter: Reporter | None = None, *, readahead: int = 4,
                             workers: int = 2, pattern: str | None = None) -> RestoreResult:
    """Restore a .tar archive into the directory `target` (must not exist or be
    empty) or an .img archive into the file or block device `target`. With a
    glob `pattern`, only the .tar members it matches (and everything below them).

    Directory restores happen in a temporary sibling renamed into place at the
    end, so a failure leaves no half-restored tree behind.
    """
    reporter = reporter or Reporter()
    target = Path(target)
    t0 = time.monotonic()
    filename = archive_filename(archive_name)
    with snapshot.open_archive(archive_name, crypt, readahead, workers) as reader:
        reporter.log(f"restoring {snapshot.label}/{archive_name} ({reader.size / MiB:.1f} MiB) to {target}")
        if filename.endswith(".didx"):
            files = _extract_tar(reader, target, reporter, pattern)
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


def _extract_tar(reader: ArchiveReader, target: Path, reporter: Reporter, pattern: str | None = None) -> int:
    tmp = _prepare_target_dir(target)
    tmp.mkdir()
    count = 0
    try:
        base_real = os.path.realpath(tmp)
        with _TarFile.open(fileobj=reader, mode="r:", copybufsize=COPY_BUF) as tf:
            last = [time.monotonic()]

            def members():
                nonlocal count
                for m in tf:
                    reporter.check_abort()
                    if not member_matches(m.name, pattern):
                        continue
                    if (m.ischr() or m.isblk()) and os.geteuid() != 0:
                        reporter.warn(f"skipping device node {m.name}: only root can create it")
                        continue
                    count += 1
                    now = time.monotonic()
                    if now - last[0] > 2:
                        last[0] = now
                        reporter.progress(reader.tell() / max(reader.size, 1),
                                          f"{reader.tell() / MiB:.0f} MiB")
                    yield m

            tf.extractall(tmp, members=members(), filter=_safe_filter(base_real))
        os.rename(tmp, target)
    except tarfile.TarError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CorruptionError(f"archive is not a valid tar stream: {e}", "archive") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return count


def _write_image(reader: ArchiveReader, target: Path, reporter: Reporter) -> None:
    is_dev = target.exists() and stat.S_ISBLK(os.stat(target).st_mode)
    path = target if is_dev else target.with_name(f".{target.name}.partial-{secrets.token_hex(4)}")
    if not is_dev:
        if target.is_dir():
            raise DatastoreError(f"target {target} is a directory; an image restores to a file")
        if target.exists() or target.is_symlink():
            raise DatastoreError(f"target {target} already exists; refusing to overwrite it")
        target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | (0 if is_dev else os.O_CREAT | os.O_EXCL), 0o600)
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
        entry = read_catalog(store, ref, snapshot.check_key(crypt)).find(archive_name, member)
    except DatastoreError:
        entry = None
    with snapshot.open_archive(archive_name, crypt, readahead=2) as reader:
        if entry is not None:
            if entry.type != "f":
                raise DatastoreError(f"archive {archive_name}: {member_path!r} is not a regular file")
            offset, size = entry.offset, entry.size
        else:
            with tarfile.open(fileobj=reader, mode="r:") as tf:
                for m in tf:
                    if m.name == member:
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
