"""Restore archives from a snapshot: read chunks (verifying every digest),
extract tar archives into a directory, write images to a file or device."""
from __future__ import annotations

import fnmatch
import io
import os
import secrets
import shutil
import stat
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ._fsutil import tune_malloc
from .blob import decode_blob
from .catalog import read_catalog
from .crypto import chunk_digest
from .datastore import Datastore, SnapshotRef
from .errors import CorruptionError, DatastoreError
from .index import Index
from .report import Reporter

MiB = 1024 * 1024
COPY_BUF = 4 * MiB


def archive_filename(archive_name: str) -> str:
    """'root.tar' -> 'root.tar.didx', 'disk.img' -> 'disk.img.fidx' (full names pass through)."""
    if archive_name.endswith((".didx", ".fidx")):
        return archive_name
    if archive_name.endswith(".tar"):
        return archive_name + ".didx"
    if archive_name.endswith(".img"):
        return archive_name + ".fidx"
    raise DatastoreError(f"archive name: {archive_name!r} must end in .tar or .img")


def check_snapshot_key(store: Datastore, ref: SnapshotRef, crypt, manifest=None):
    """Return the key to use for the snapshot (None if it is not encrypted).

    DatastoreError if it is encrypted and no key, or a different key, is given.
    """
    manifest = manifest or store.load_manifest(ref)
    if not manifest.encrypted:
        return None
    fp = manifest.key_fingerprint or "?"
    if crypt is None:
        raise DatastoreError(f"snapshot {ref} is encrypted with key {fp}; no key was given")
    if manifest.key_fingerprint and crypt.fingerprint != manifest.key_fingerprint:
        raise DatastoreError(f"snapshot {ref} is encrypted with key {fp}; "
                             f"the key given has fingerprint {crypt.fingerprint}")
    manifest.check_signature(crypt, f"{ref}/index.json.blob")
    return crypt


def read_chunk(store: Datastore, digest: bytes, crypt, expected_len: int | None = None) -> bytes:
    """Read, decode and verify one chunk. CorruptionError names the digest."""
    hx = digest.hex()
    try:
        with open(store.chunks.path(hx), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise CorruptionError(f"chunk {hx} is missing from datastore {store.path}", hx) from None
    try:
        data = decode_blob(raw, crypt, f"chunk {hx}")
    except CorruptionError as e:
        e.object = hx
        raise
    if expected_len is not None and len(data) != expected_len:
        raise CorruptionError(f"chunk {hx}: length {len(data)} does not match the index ({expected_len})", hx)
    if chunk_digest(data, crypt) != digest:
        raise CorruptionError(f"chunk {hx}: content does not match its digest", hx)
    return data


class ArchiveReader(io.RawIOBase):
    """A seekable reader over an archive's chunks; reads ahead sequentially in threads."""

    def __init__(self, store: Datastore, index: Index, crypt=None, readahead: int = 4):
        super().__init__()
        tune_malloc()
        self.store, self.index, self.crypt = store, index, crypt
        self.size = index.size
        self.pos = 0
        self.readahead = readahead
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="reader") if readahead else None
        self._futures: dict[int, object] = {}
        self._cur = -1
        self._cur_data = b""
        self._cur_start = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1:
            offset += self.pos
        elif whence == 2:
            offset += self.size
        if offset < 0:
            raise ValueError("negative seek position")
        self.pos = offset
        return self.pos

    def _load(self, i: int) -> bytes:
        start, end = self.index.chunk_range(i)
        return read_chunk(self.store, self.index.digests[i], self.crypt, end - start)

    def _chunk(self, i: int):
        if i != self._cur:
            if self._pool is None:
                data = self._load(i)
            else:
                for k in [k for k in self._futures if k < i or k > i + self.readahead]:
                    self._futures.pop(k).cancel()
                for k in range(i, min(i + self.readahead + 1, len(self.index))):
                    if k not in self._futures:
                        self._futures[k] = self._pool.submit(self._load, k)
                data = self._futures.pop(i).result()
            self._cur, self._cur_data = i, data
            self._cur_start = self.index.chunk_range(i)[0]
        return self._cur_data, self._cur_start

    def readinto(self, b) -> int:
        if self.pos >= self.size:
            return 0
        data, start = self._chunk(self.index.chunk_index(self.pos))
        off = self.pos - start
        n = min(len(b), len(data) - off)
        b[:n] = memoryview(data)[off:off + n]
        self.pos += n
        return n

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.size - self.pos
        parts, want = [], n
        while want > 0 and self.pos < self.size:
            data, start = self._chunk(self.index.chunk_index(self.pos))
            off = self.pos - start
            k = min(want, len(data) - off)
            parts.append(data[off:off + k] if (off or k != len(data)) else data)
            self.pos += k
            want -= k
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def iter_chunks(self):
        """Yield (offset, data) of every chunk in order (for whole-archive copies)."""
        for i in range(len(self.index)):
            data, start = self._chunk(i)
            yield start, data

    def close(self) -> None:
        if self._pool is not None:
            for f in self._futures.values():
                f.cancel()
            self._futures.clear()
            self._pool.shutdown(wait=True)
            self._pool = None
        super().close()


def open_archive_stream(store: Datastore, ref: SnapshotRef, archive_name: str, crypt=None,
                        readahead: int = 4) -> ArchiveReader:
    """A file-like reader over an archive ('root.tar' or 'disk.img') of a snapshot."""
    manifest = store.load_manifest(ref)
    filename = archive_filename(archive_name)
    if manifest.file(filename) is None:
        raise DatastoreError(f"snapshot {ref} has no archive {archive_name} "
                             f"(has: {', '.join(manifest.filenames)})")
    crypt = check_snapshot_key(store, ref, crypt, manifest)
    index = store.load_index(ref, filename)
    entry = manifest.file(filename)
    if entry["csum"] != index.csum or entry["size"] != index.size:
        raise CorruptionError(f"{ref}/{filename}: index does not match the manifest (size/csum)",
                              f"{ref}/{filename}")
    return ArchiveReader(store, index, crypt, readahead)


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
    """Restore a .tar archive into the directory `target` (must not exist or be
    empty) or an .img archive into the file or block device `target`.

    Directory restores happen in a temporary sibling renamed into place at the
    end, so a failure leaves no half-restored tree behind.
    """
    reporter = reporter or Reporter()
    target = Path(target)
    t0 = time.monotonic()
    filename = archive_filename(archive_name)
    with open_archive_stream(store, ref, archive_name, crypt) as reader:
        reporter.log(f"restoring {ref}/{archive_name} ({reader.size / MiB:.1f} MiB) to {target}")
        if filename.endswith(".didx"):
            files = _extract_tar(reader, target, reporter)
        else:
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
    try:
        entry = read_catalog(store, ref, check_snapshot_key(store, ref, crypt)).find(archive_name, member)
    except DatastoreError:
        entry = None
    with open_archive_stream(store, ref, archive_name, crypt, readahead=2) as reader:
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
