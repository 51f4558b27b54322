"""End-to-end engine tests: backup and restore of real trees, images, encryption, datastore API."""
import io
import json
import os
import random
import re
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from datastores.engine.backup import run_backup
from datastores.engine.blob import encode_blob
from datastores.engine.catalog import CATALOG_NAME, read_catalog, rebuild_catalog
from datastores.engine.crypto import CryptConfig, chunk_digest
from datastores.engine.datastore import (MARKER, Datastore, SnapshotRef, ns_to_rel, parse_snapshot_name,
                                         rel_to_ns)
from datastores.engine.errors import CorruptionError, DatastoreError
from datastores.engine.index import DynamicIndexWriter
from datastores.engine.manifest import MANIFEST_NAME, Manifest
from datastores.engine.report import ListReporter, Reporter, TaskAborted
from datastores.engine.restore import open_archive_stream, restore_archive, restore_file

MiB = 1024 * 1024


def make_tree(root: Path, seed: int = 7, big: int = 12 * MiB) -> Path:
    """A tree with files of many sizes, duplicates, empty files and dirs, symlinks,
    a sparse file, unicode names, odd modes and sub-second mtimes."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "empty-dir").mkdir()
    (root / "日本語 dir").mkdir()
    for size in (0, 1, 511, 512, 513, 4096, 100_000, MiB + 3):
        (root / "etc" / f"f{size}").write_bytes(rng.randbytes(size))
    text = b"".join(b"line %d of a fairly compressible log file\n" % i for i in range(200_000))
    (root / "var.log").write_bytes(text)
    blob = rng.randbytes(big)
    (root / "big.bin").write_bytes(blob)
    (root / "日本語 dir" / "copy of big.bin").write_bytes(blob)           # duplicate
    (root / "ünïcødé-名前.txt").write_text("grüße\n", encoding="utf-8")
    (root / "empty").write_bytes(b"")
    with open(root / "sparse.img", "wb") as f:                             # sparse file
        f.truncate(20 * MiB)
        f.seek(7 * MiB)
        f.write(b"data in the middle of a hole")
    os.symlink("etc/f1", root / "link-rel")
    os.symlink("/etc/hostname", root / "link-abs")
    os.symlink("does-not-exist", root / "link-dangling")
    os.mkfifo(root / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "control.sock"))   # sockets are skipped with a warning
    sock.close()
    os.chmod(root / "etc" / "f1", 0o600)
    os.chmod(root / "etc" / "f4096", 0o755)
    os.chmod(root / "var.log", 0o640)
    os.chmod(root / "empty-dir", 0o700)
    t = 1_700_000_000_123_456_789
    for i, p in enumerate(sorted(root.rglob("*"), reverse=True)):
        if not p.is_symlink():
            os.utime(p, ns=(t + i * 1_000_003_000, t + i * 1_000_003_000))
    os.utime(root, ns=(t, t))
    return root


def snapshot_tree(root: Path) -> dict:
    """Path -> (type, mode, mtime_ns, content or link target) for comparison."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames:
            if name == "" and Path(dirpath) != root:
                continue
            p = Path(dirpath) / name if name else Path(dirpath)
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            elif stat.S_ISSOCK(st.st_mode):
                continue
            elif stat.S_ISFIFO(st.st_mode):
                out[rel] = ("p", stat.S_IMODE(st.st_mode), st.st_mtime_ns // 1000)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode), st.st_mtime_ns // 1000)
            else:
                out[rel] = ("f", stat.S_IMODE(st.st_mode), st.st_mtime_ns // 1000, p.read_bytes())
    return out


def assert_same_tree(a: Path, b: Path) -> None:
    sa, sb = snapshot_tree(a), snapshot_tree(b)
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert sa[k] == sb[k], f"{k} differs: {sa[k][:3]} vs {sb[k][:3]}"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("src") / "tree")


@pytest.fixture
def store(tmp_path):
    return Datastore.create(tmp_path / "store")


def test_backup_restore_identical_tree(store, tree, tmp_path):
    rep = ListReporter()
    res = run_backup(store, "host", "web01", [("root.tar", tree)], reporter=rep, backup_time=1795000000)
    assert res.ref.rel_dir == "host/web01/2026-11-18T11:06:40Z"
    assert res.bytes_read > 50 * MiB and res.chunks_new > 0
    assert any("chunks new" in line for line in rep.lines)
    assert res.warnings == 1 and "skipping socket" in rep.warnings[0] and "control.sock" in rep.warnings[0]
    snaps = store.list_snapshots()
    assert [s.name for s in snaps] == ["host/web01/2026-11-18T11:06:40Z"] and snaps[0].finished
    m = store.load_manifest(snaps[0])
    assert m.filenames == ["root.tar.didx"] and m.file("root.tar.didx")["crypt-mode"] == "none"
    assert (store.snapshot_path(snaps[0]) / CATALOG_NAME).exists()
    out = tmp_path / "out"
    r = restore_archive(store, snaps[0], "root.tar", out)
    assert r.bytes == res.bytes_read
    assert_same_tree(tree, out)
    # the sparse file restores with correct content
    assert (out / "sparse.img").read_bytes()[7 * MiB:7 * MiB + 28] == b"data in the middle of a hole"
    # the same tree again: every chunk is reused, nothing new is stored
    again = run_backup(store, "host", "web01", [("root.tar", tree)], backup_time=1795000001)
    assert again.chunks_new == 0 and again.chunks_reused == res.chunks_new + res.chunks_reused


def test_sparse_files_and_hard_links(store, tmp_path):
    """Holes stay holes (allocated blocks compared), hard links come back as one
    inode, also when a pattern leaves the first name out."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    with open(src / "sparse.img", "wb") as f:          # data, hole, data, trailing hole
        f.truncate(40 * MiB)
        f.seek(5 * MiB)
        f.write(random.Random(1).randbytes(100_000))
        f.seek(20 * MiB + 123)
        f.write(b"x" * 5000)
    with open(src / "tail-hole.bin", "wb") as f:
        f.write(random.Random(2).randbytes(300_000))
        f.truncate(9 * MiB)
    (src / "a.txt").write_bytes(b"one inode, three names\n" * 1000)
    os.link(src / "a.txt", src / "b-link.txt")
    os.link(src / "a.txt", src / "sub" / "c-link.txt")
    os.link(src / "sparse.img", src / "sub" / "sparse-link.img")
    res = run_backup(store, "host", "links", [("root.tar", src)], backup_time=1000)
    out = tmp_path / "out"
    restore_archive(store, res.ref, "root.tar", out)
    assert_same_tree(src, out)
    for name in ("sparse.img", "tail-hole.bin"):
        s, r = os.stat(src / name), os.stat(out / name)
        assert r.st_size == s.st_size and r.st_blocks * 512 < 2 * MiB
        assert r.st_blocks * 512 <= s.st_blocks * 512 + 128 * 1024, (name, s.st_blocks, r.st_blocks)
    ino = {n: os.stat(out / n) for n in ("a.txt", "b-link.txt", "sub/c-link.txt")}
    assert len({st.st_ino for st in ino.values()}) == 1 and ino["a.txt"].st_nlink == 3
    assert os.stat(out / "sub/sparse-link.img").st_ino == os.stat(out / "sparse.img").st_ino
    # the archive stores the data once: later names are hard link members
    cat = read_catalog(store, res.ref)
    assert cat.find("root.tar", "b-link.txt").type == "h" and cat.find("root.tar", "b-link.txt").link == "a.txt"
    buf = io.BytesIO()
    restore_file(store, res.ref, "root.tar", "sub/c-link.txt", buf)
    assert buf.getvalue() == (src / "a.txt").read_bytes()
    # a pattern that leaves out the first name: the data is restored under the linked name
    part = tmp_path / "part"
    restore_archive(store, res.ref, "root.tar", part, pattern="sub")
    assert sorted(str(p.relative_to(part)) for p in part.rglob("*")) == [
        "sub", "sub/c-link.txt", "sub/sparse-link.img"]
    assert (part / "sub/c-link.txt").read_bytes() == (src / "a.txt").read_bytes()
    assert (part / "sub/sparse-link.img").read_bytes() == (src / "sparse.img").read_bytes()


def test_restore_removes_only_stale_partial_trees(store, tmp_path):
    """What a killed restore left (.NAME.partial-*) goes; a running restore's (flock held) stays."""
    import fcntl
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x" * 1000)
    res = run_backup(store, "host", "p", [("root.tar", src)], backup_time=1000)
    stale = tmp_path / ".out.partial-999999-dead"
    (stale / "half").mkdir(parents=True)
    live = tmp_path / ".out.partial-1-live"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        rep = ListReporter()
        restore_archive(store, res.ref, "root.tar", tmp_path / "out", reporter=rep)
    finally:
        os.close(fd)
    assert not stale.exists() and live.exists()
    assert any("left by an interrupted restore" in line for line in rep.lines)
    assert_same_tree(src, tmp_path / "out")


def test_incremental_only_changed_chunks_new(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(3)
    (src / "a.bin").write_bytes(rng.randbytes(40 * MiB))
    (src / "b.txt").write_bytes(b"hello\n" * 100_000)
    for p in (src / "a.bin", src / "b.txt", src):   # fixed mtimes: a deterministic stream
        os.utime(p, (1_700_000_000, 1_700_000_000))
    r1 = run_backup(store, "host", "h", [("root.tar", src)], backup_time=1000)
    # change ~1%: 400 KiB in the middle of a.bin (keep its mtime so its header is equal)
    st = os.stat(src / "a.bin")
    with open(src / "a.bin", "r+b") as f:
        f.seek(20 * MiB)
        f.write(rng.randbytes(400 * 1024))
    os.utime(src / "a.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    r2 = run_backup(store, "host", "h", [("root.tar", src)], backup_time=2000)
    total = r2.chunks_new + r2.chunks_reused
    assert total >= 6
    assert 1 <= r2.chunks_new <= 3, (r2.chunks_new, total)
    assert r2.bytes_new < 0.5 * r2.bytes_read
    refs = store.list_snapshots()
    assert len(store.chunk_digests(refs[0]) & store.chunk_digests(refs[1])) == r2.chunks_reused
    out = tmp_path / "out"
    restore_archive(store, refs[1], "root.tar", out)
    assert (out / "a.bin").read_bytes() == (src / "a.bin").read_bytes()


def test_image_backup_restore(store, tmp_path):
    img = tmp_path / "disk.raw"
    data = bytearray(random.Random(5).randbytes(10 * MiB + 3))
    data[4 * MiB:8 * MiB] = bytes(4 * MiB)  # an all-zero chunk: restored as a hole
    img.write_bytes(data)
    r1 = run_backup(store, "vm", "100", [("drive-scsi0.img", img)], backup_time=1000)
    assert r1.chunks_new == 3 and r1.bytes_read == len(data)
    ref = store.list_snapshots()[0]
    idx = store.load_index(ref, "drive-scsi0.img.fidx")
    assert idx.kind == "fidx" and idx.size == len(data) and idx.chunk_size == 4 * MiB
    out = tmp_path / "restored.raw"
    restore_archive(store, ref, "drive-scsi0.img", out)
    assert out.read_bytes() == bytes(data)
    assert os.stat(out).st_blocks * 512 < len(data) - 3 * MiB   # the zero chunk is a hole
    with pytest.raises(DatastoreError, match="already exists; refusing to overwrite it"):
        restore_archive(store, ref, "drive-scsi0.img", out)
    data[9 * MiB] ^= 0xFF
    img.write_bytes(data)
    r2 = run_backup(store, "vm", "100", [("drive-scsi0.img", img)], backup_time=2000)
    assert (r2.chunks_new, r2.chunks_reused) == (1, 2)
    with open_archive_stream(store, store.list_snapshots()[1], "drive-scsi0.img") as rd:
        rd.seek(9 * MiB - 2)
        assert rd.read(5) == bytes(data[9 * MiB - 2:9 * MiB + 3])


def test_encrypted_backup_hides_plaintext(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    marker = b"TOP-SECRET-PLAINTEXT-MARKER-0123456789"
    (src / "secret-name-of-file.txt").write_bytes(marker * 50_000)
    (src / "rand.bin").write_bytes(os.urandom(3 * MiB) + marker)
    key = CryptConfig.generate()
    res = run_backup(store, "host", "enc", [("root.tar", src)], crypt=key, backup_time=1000)
    ref = res.ref
    m = store.load_manifest(ref)
    assert m.encrypted and m.key_fingerprint == key.fingerprint and m.signature
    for hx in store.chunks.iter_digests():
        raw = store.chunks.path(hx).read_bytes()
        assert marker[:16] not in raw and b"secret-name" not in raw
    assert b"secret-name" not in (store.snapshot_path(ref) / CATALOG_NAME).read_bytes()
    # digests are keyed: the plain digest of the file data is not a chunk name
    plain = {chunk_digest(marker * 50_000).hex()}
    assert not plain & set(store.chunks.iter_digests())
    with pytest.raises(DatastoreError, match=f"is encrypted with key {key.fingerprint}; no key was given"):
        restore_archive(store, ref, "root.tar", tmp_path / "o1")
    other = CryptConfig.generate()
    with pytest.raises(DatastoreError, match=f"encrypted with key {key.fingerprint}; the key given has "
                                             f"fingerprint {other.fingerprint}"):
        restore_archive(store, ref, "root.tar", tmp_path / "o2", crypt=other)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    restore_archive(store, ref, "root.tar", tmp_path / "o3", crypt=key)
    assert_same_tree(src, tmp_path / "o3")
    buf = io.BytesIO()
    restore_file(store, ref, "root.tar", "secret-name-of-file.txt", buf, crypt=key)
    assert buf.getvalue() == marker * 50_000
    # a second encrypted backup under the same key deduplicates
    r2 = run_backup(store, "host", "enc", [("root.tar", src)], crypt=key, backup_time=2000)
    assert r2.chunks_new == 0


def test_restore_file_catalog_and_rebuild(store, tree, tmp_path):
    res = run_backup(store, "host", "cat", [("root.tar", tree)], backup_time=1000)
    ref = store.list_snapshots()[0]
    cat = read_catalog(store, ref)
    names = [e.name for e in cat.list_dir("root.tar", "")]
    assert "etc" in names and "ünïcødé-名前.txt" in names and "link-rel" in names
    assert [e.name for e in cat.list_dir("root.tar", "etc")][:3] == ["f0", "f1", "f100000"]
    e = cat.find("root.tar", "etc/f1")
    assert (e.type, e.size, e.mode) == ("f", 1, 0o600)
    assert cat.find("root.tar", "link-abs").link == "/etc/hostname"
    out = tmp_path / "one"
    n = restore_file(store, ref, "root.tar", "日本語 dir/copy of big.bin", out)
    assert out.read_bytes() == (tree / "big.bin").read_bytes() and n == 12 * MiB
    # without the catalog: scanned from the tar; then rebuilt identically
    before = cat.entries("root.tar")
    os.unlink(store.snapshot_path(ref) / CATALOG_NAME)
    buf = io.BytesIO()
    restore_file(store, ref, "root.tar", "etc/f513", buf)
    assert buf.getvalue() == (tree / "etc" / "f513").read_bytes()
    rebuilt = rebuild_catalog(store, ref)
    assert [(x.path, x.type, x.size, x.mode, x.offset, x.link) for x in rebuilt.entries("root.tar")] == \
        [(x.path, x.type, x.size, x.mode, x.offset, x.link) for x in before]
    with pytest.raises(DatastoreError, match="has no file 'nope'"):
        restore_file(store, ref, "root.tar", "nope", io.BytesIO())
    with pytest.raises(DatastoreError, match="is not a regular file"):
        restore_file(store, ref, "root.tar", "etc", io.BytesIO())


def test_corrupt_chunk_named_on_restore(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "x").write_bytes(os.urandom(900 * 1024))  # below the CDC minimum: one chunk
    res = run_backup(store, "host", "c", [("root.tar", src)], backup_time=1000)
    [hx] = list(store.chunks.iter_digests())
    p = store.chunks.path(hx)
    data = bytearray(p.read_bytes())
    data[1000] ^= 1
    p.write_bytes(data)
    with pytest.raises(CorruptionError, match=f"chunk {hx}: CRC mismatch") as e:
        restore_archive(store, res.ref, "root.tar", tmp_path / "out")
    assert e.value.object == hx
    assert not (tmp_path / "out").exists()
    assert [x for x in os.listdir(tmp_path) if "partial" in x] == []
    os.unlink(p)
    with pytest.raises(CorruptionError, match=f"chunk {hx} is missing"):
        restore_archive(store, res.ref, "root.tar", tmp_path / "out")


def _snapshot_from_tar_bytes(store, data: bytes, tm: int) -> SnapshotRef:
    ref = SnapshotRef.make("", "host", "evil", tm)
    sdir = store.snapshot_path(ref)
    sdir.mkdir(parents=True)
    w = DynamicIndexWriter(sdir / "root.tar.didx")
    d = chunk_digest(data)
    store.insert_chunk(d.hex(), encode_blob(data))
    w.add_chunk(d, len(data))
    idx = w.close()
    m = Manifest("host", "evil", tm)
    m.add_file("root.tar.didx", idx.size, idx.csum)
    (sdir / MANIFEST_NAME).write_bytes(m.to_blob())
    return store.snapshot_ref("", "host", "evil", tm)


@pytest.mark.parametrize("members", [
    [("../escape.txt", tarfile.REGTYPE, "")],
    [("/abs.txt", tarfile.REGTYPE, "")],
    [("lnk", tarfile.SYMTYPE, "/tmp"), ("lnk/through-link.txt", tarfile.REGTYPE, "")],
])
def test_restore_refuses_escaping_members(store, tmp_path, members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, typ, link in members:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = typ, link
            payload = b"pwned"
            ti.size = len(payload) if typ == tarfile.REGTYPE else 0
            tf.addfile(ti, io.BytesIO(payload) if typ == tarfile.REGTYPE else None)
    ref = _snapshot_from_tar_bytes(store, buf.getvalue(), 1000)
    with pytest.raises(DatastoreError, match="refused"):
        restore_archive(store, ref, "root.tar", tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out").exists()
    assert not os.path.exists("/tmp/through-link.txt")


def test_validation_before_writing(store, tmp_path, tree):
    cases = [
        (dict(backup_type="pc"), "backup-type: 'pc' is not one of vm, ct, host"),
        (dict(backup_id="../x"), "backup-id: '../x' is not valid"),
        (dict(backup_id=""), "backup-id: must not be empty"),
        (dict(backup_id="a/b"), "backup-id: 'a/b' is not valid"),
        (dict(ns="a/../b"), "namespace: 'a/../b' has an invalid component '..'"),
        (dict(ns="/".join("abcdefgh")), "nested deeper than 7"),
        (dict(archives=[("a/b.tar", tree)]), "archive name: 'a/b.tar'"),
        (dict(archives=[("root.zip", tree)]), "archive name: 'root.zip'"),
        (dict(archives=[("root.tar", tree / "var.log")]), "is not a directory"),
        (dict(archives=[("disk.img", tree)]), "is not a file or block device"),
        (dict(archives=[("root.tar", tmp_path / "missing")]), "cannot be read"),
        (dict(archives=[("r.tar", tree), ("r.tar", tree)]), "archive name: r.tar is given twice"),
        (dict(archives=[]), "archives: at least one"),
        (dict(ns="nope"), "namespace nope does not exist"),
    ]
    for override, msg in cases:
        kw = dict(backup_type="host", backup_id="ok", archives=[("root.tar", tree)], ns="")
        kw.update(override)
        with pytest.raises(DatastoreError, match=re.escape(msg)):
            run_backup(store, **kw)
    assert sorted(os.listdir(store.path)) == [".chunks", MARKER]
    run_backup(store, "host", "ok", [("root.tar", tree / "etc")], backup_time=1000)
    with pytest.raises(DatastoreError, match="snapshot host/ok/1970-01-01T00:16:40Z already exists"):
        run_backup(store, "host", "ok", [("root.tar", tree / "etc")], backup_time=1000)


def test_abort_removes_snapshot(store, tree):
    class AbortAfter(Reporter):
        n = 0

        def check_abort(self):
            self.n += 1
            if self.n == 2:
                raise TaskAborted("stopped by user")

    with pytest.raises(TaskAborted):
        run_backup(store, "host", "ab", [("root.tar", tree)], reporter=AbortAfter(), backup_time=1000)
    assert store.list_snapshots() == []
    assert store.running_writers() == []


# -- datastore API ------------------------------------------------------------------------------

def test_datastore_create_open_refuse(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("not ours")
    with pytest.raises(DatastoreError, match="is not empty and is not a datastore"):
        Datastore.create(tmp_path / "full")
    assert sorted(os.listdir(tmp_path / "full")) == ["x"]
    with pytest.raises(DatastoreError, match="is not a pbsweb datastore"):
        Datastore(tmp_path / "full")
    s = Datastore.create(tmp_path / "new")
    assert json.loads((tmp_path / "new" / MARKER).read_text()) == {"uuid": s.uuid, "format": 1}
    with pytest.raises(DatastoreError, match="already holds a datastore"):
        Datastore.create(tmp_path / "new")
    assert Datastore.create(tmp_path / "new", reuse=True).uuid == s.uuid
    assert Datastore(tmp_path / "new").uuid == s.uuid


def test_namespaces_listing_protect_notes(store, tmp_path):
    src = tmp_path / "s"
    src.mkdir()
    (src / "f").write_text("x")
    store.create_namespace("a")
    store.create_namespace("a/b")
    run_backup(store, "host", "h1", [("root.tar", src)], backup_time=3000)
    run_backup(store, "ct", "101", [("root.tar", src)], ns="a/b", backup_time=1000)
    run_backup(store, "host", "h1", [("root.tar", src)], ns="a", backup_time=2000)
    # an unfinished snapshot (no manifest)
    (store.path / "host" / "h1" / "2026-01-01T00:00:00Z").mkdir()
    assert store.list_namespaces() == ["", "a", "a/b"]
    snaps = store.list_snapshots()
    assert [(s.ns, s.name, s.finished) for s in snaps] == [
        ("", "host/h1/1970-01-01T00:50:00Z", True),
        ("", "host/h1/2026-01-01T00:00:00Z", False),
        ("a", "host/h1/1970-01-01T00:33:20Z", True),
        ("a/b", "ct/101/1970-01-01T00:16:40Z", True)]
    assert snaps[3].rel_dir == "ns/a/ns/b/ct/101/1970-01-01T00:16:40Z"
    assert snaps[3].group_rel_dir == "ns/a/ns/b/ct/101"
    assert [s.name for s in store.list_snapshots("a", recursive=False)] == ["host/h1/1970-01-01T00:33:20Z"]
    assert len(store.list_snapshots("a")) == 2
    assert ns_to_rel("a/b") == "ns/a/ns/b" and rel_to_ns("ns/a/ns/b") == "a/b" and ns_to_rel("") == ""
    assert parse_snapshot_name("host/web01/2026-11-26T03:00:00Z") == ("host", "web01", 1795662000)
    assert store.get_owner("a/b", "ct", "101") == "root@pam"
    ref = snaps[0]
    store.set_protected(ref, True)
    assert store.snapshot_ref("", "host", "h1", 3000).protected
    with pytest.raises(DatastoreError, match="is protected"):
        store.remove_snapshot(ref)
    store.set_protected(ref, False)
    store.set_notes(ref, "before the upgrade")
    assert store.load_manifest(ref).notes == "before the upgrade"
    store.remove_snapshot(ref)
    assert len(store.list_snapshots()) == 3
    with pytest.raises(DatastoreError, match="must not contain"):
        store.write_file_atomic("host/../../etc/x", b"")
    with pytest.raises(DatastoreError, match="must be relative"):
        store.write_file_atomic("/etc/x", b"")
    store.write_file_atomic("host/h9/owner", b"me\n")
    assert (store.path / "host/h9/owner").read_bytes() == b"me\n"


def test_insert_chunk_verifies(store):
    data = b"chunk data" * 1000
    hx = chunk_digest(data).hex()
    blob = encode_blob(data)
    assert store.insert_chunk(hx, blob) is True
    assert store.insert_chunk(hx, blob) is False
    other = chunk_digest(b"other").hex()
    with pytest.raises(CorruptionError, match=f"chunk {other}: content does not match its digest"):
        store.insert_chunk(other, blob)
    bad = bytearray(blob)
    bad[-1] ^= 1
    with pytest.raises(CorruptionError, match="CRC mismatch"):
        store.insert_chunk(other, bytes(bad))
    assert not store.chunks.exists(other)
    with pytest.raises(DatastoreError, match="not 64 lowercase hex"):
        store.insert_chunk("../../x", blob)
    assert store.chunks.read(hx) == blob
    # ChunkStore.insert also takes the blob as parts (written with writev)
    from datastores.engine.blob import encode_blob_parts
    data2 = os.urandom(3 * MiB)
    hx2 = chunk_digest(data2).hex()
    assert store.chunks.insert(hx2, encode_blob_parts(data2), fsync=False)
    assert store.chunks.read(hx2) == encode_blob(data2)
    assert store.insert_chunk(hx2, store.chunks.read(hx2)) is False   # valid blob, already there
