"""Produce a PAX tar stream of a directory tree, pulled by readinto().

The stream is generated on demand straight into the caller's buffer (file
contents are read with readinto, no intermediate copies), and records a
catalog entry for every member with the offset of its data in the stream.
"""
from __future__ import annotations

import fnmatch
import os
import stat
import tarfile

from .report import Reporter

BLOCK = 512
# Catalog entry types
T_FILE, T_DIR, T_SYMLINK, T_CHR, T_BLK, T_FIFO, T_HARDLINK = "f", "d", "l", "c", "b", "p", "h"


def _pax_mtime(st) -> tuple[float, str | None]:
    ns = st.st_mtime_ns
    sec, frac = divmod(ns, 1_000_000_000)
    if frac == 0:
        return sec, None
    return ns / 1e9, f"{sec}.{frac:09d}".rstrip("0")


class TarStream:
    """A readable stream of a PAX tar archive of `root` (paths relative, root is '.')."""

    def __init__(self, root, reporter: Reporter | None = None, one_file_system: bool = True,
                 exclude: list[str] | tuple = ()):
        self.root = os.fspath(root)
        self.exclude = list(exclude)      # globs matched against relative paths and base names
        self.reporter = reporter or Reporter()
        self.one_file_system = one_file_system
        self.catalog: list[list] = []     # [path, type, size, mtime, mode, offset, link]
        self.warnings = 0
        self.files = 0
        self._links: dict[tuple[int, int], str] = {}   # (dev, inode) -> first path, files with nlink > 1
        self._members = self._walk()
        self._pending = memoryview(b"")
        self._fd = -1
        self._remaining = 0
        self._pad = 0
        self._eof = False
        self._pos = 0                       # stream position of generated headers/data

    # -- member generation ------------------------------------------------------

    def _warn(self, msg: str) -> None:
        self.warnings += 1
        self.reporter.warn(msg)

    def _header(self, name: str, st, kind: str, size: int = 0, link: str = "") -> bytes:
        ti = tarfile.TarInfo(name)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.mtime, pax_mtime = _pax_mtime(st)
        if pax_mtime:
            ti.pax_headers = {"mtime": pax_mtime}
        ti.size = size
        ti.type = {T_FILE: tarfile.REGTYPE, T_DIR: tarfile.DIRTYPE, T_SYMLINK: tarfile.SYMTYPE,
                   T_CHR: tarfile.CHRTYPE, T_BLK: tarfile.BLKTYPE, T_FIFO: tarfile.FIFOTYPE,
                   T_HARDLINK: tarfile.LNKTYPE}[kind]
        ti.linkname = link
        if kind in (T_CHR, T_BLK):
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def _entry(self, name, st, kind, size, header, link=""):
        self._pos += len(header)
        self.catalog.append([name, kind, size, st.st_mtime_ns // 1000 / 1e6, stat.S_IMODE(st.st_mode),
                             self._pos, link])
        self._pos += size + (-size % BLOCK)

    def _walk(self):
        """Yield (header bytes, fd or -1, size) for every member, depth first, sorted."""
        try:
            root_st = os.lstat(self.root)
        except OSError as e:
            raise FileNotFoundError(f"cannot read {self.root}: {e.strerror}") from None
        stack = [(".", self.root, root_st)]
        while stack:
            rel, path, st = stack.pop()
            hdr = self._header(rel, st, T_DIR)
            self._entry(rel, st, T_DIR, 0, hdr)
            yield hdr, -1, 0
            if self.one_file_system and st.st_dev != root_st.st_dev:
                continue
            try:
                entries = sorted(os.scandir(path), key=lambda e: e.name)
            except OSError as e:
                self._warn(f"cannot list directory {path}: {e.strerror}; skipped")
                continue
            subdirs = []
            for e in entries:
                crel = e.name if rel == "." else f"{rel}/{e.name}"
                if self._excluded(crel):
                    continue
                try:
                    cst = e.stat(follow_symlinks=False)
                except OSError as err:
                    self._warn(f"cannot stat {e.path}: {err.strerror}; skipped")
                    continue
                mode = cst.st_mode
                if stat.S_ISDIR(mode):
                    subdirs.append((crel, e.path, cst))
                elif stat.S_ISREG(mode) and cst.st_nlink > 1 and (cst.st_dev, cst.st_ino) in self._links:
                    # Another name of a file already in the archive: a hard link
                    # member (FORMAT.md §8), no data.
                    first = self._links[(cst.st_dev, cst.st_ino)]
                    hdr = self._header(crel, cst, T_HARDLINK, 0, first)
                    self._entry(crel, cst, T_HARDLINK, 0, hdr, first)
                    self.files += 1
                    yield hdr, -1, 0
                elif stat.S_ISREG(mode):
                    try:
                        fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW)
                    except OSError as err:
                        self._warn(f"cannot open {e.path}: {err.strerror}; skipped")
                        continue
                    fst = os.fstat(fd)
                    if not stat.S_ISREG(fst.st_mode):
                        os.close(fd)
                        continue
                    if fst.st_nlink > 1:
                        self._links.setdefault((fst.st_dev, fst.st_ino), crel)
                    hdr = self._header(crel, fst, T_FILE, fst.st_size)
                    self._entry(crel, fst, T_FILE, fst.st_size, hdr)
                    self.files += 1
                    yield hdr, fd, fst.st_size
                elif stat.S_ISLNK(mode):
                    link = os.readlink(e.path)
                    hdr = self._header(crel, cst, T_SYMLINK, 0, link)
                    self._entry(crel, cst, T_SYMLINK, 0, hdr, link)
                    yield hdr, -1, 0
                elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                    kind = T_FIFO if stat.S_ISFIFO(mode) else T_CHR if stat.S_ISCHR(mode) else T_BLK
                    hdr = self._header(crel, cst, kind)
                    self._entry(crel, cst, kind, 0, hdr)
                    yield hdr, -1, 0
                else:
                    self._warn(f"skipping socket or unknown file type: {e.path}")
            # Push in reverse so the stack pops them in name order.
            stack.extend(reversed(subdirs))

    def _excluded(self, rel: str) -> bool:
        name = rel.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(rel, g) or fnmatch.fnmatchcase(name, g) for g in self.exclude)

    # -- readinto -----------------------------------------------------------------

    def readinto(self, buf) -> int:
        """Fill buf completely unless the archive ends; returns the number of bytes."""
        mv = memoryview(buf)
        n, total = 0, len(mv)
        while n < total:
            if self._pending:
                k = min(len(self._pending), total - n)
                mv[n:n + k] = self._pending[:k]
                self._pending = self._pending[k:]
                n += k
            elif self._remaining:
                want = min(self._remaining, total - n)
                k = os.readv(self._fd, [mv[n:n + want]])
                if k == 0:  # file shrank while we read it: pad with zeros
                    self._warn(f"file shrank during backup; padded with {self._remaining} zero bytes")
                    k = want
                    mv[n:n + k] = bytes(k)
                self._remaining -= k
                n += k
            elif self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
                self._pending = memoryview(bytes(self._pad))
            elif not self._eof:
                nxt = next(self._members, None)
                if nxt is None:
                    self._eof = True
                    self._pending = memoryview(bytes(2 * BLOCK))  # end-of-archive marker
                    continue
                hdr, fd, size = nxt
                self._pending = memoryview(hdr)
                self._fd, self._remaining, self._pad = fd, size, -size % BLOCK
                if fd >= 0 and size == 0:
                    os.close(fd)
                    self._fd = -1
            else:
                break
        return n

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._members.close()
