"""Garbage collection: marks, sweeps with the PBS cutoff, respects running writers."""
import json
import os
import random
import threading
import time

import pytest

from datastores.engine.backup import run_backup
from datastores.engine.blob import encode_blob
from datastores.engine.crypto import chunk_digest
from datastores.engine.datastore import Datastore
from datastores.engine.errors import DatastoreError
from datastores.engine.gc import DEFAULT_CUTOFF, GC_STATUS, garbage_collection, read_gc_status
from datastores.engine.report import ListReporter, Reporter
from datastores.engine.restore import restore_archive
from tests.test_engine_backup_restore import MiB, assert_same_tree

LATER = 2 * 86400  # run GC "two days later": everything not marked is past the cutoff


@pytest.fixture
def store(tmp_path):
    return Datastore.create(tmp_path / "store")


def _src(tmp_path, name, files):
    d = tmp_path / name
    d.mkdir()
    for fname, data in files.items():
        (d / fname).write_bytes(data)
    return d


def _age(store, digests, seconds):
    for hx in digests:
        p = store.chunks.path(hx)
        t = time.time() - seconds
        os.utime(p, (t, t))


def test_gc_removes_only_unreferenced_chunks(store, tmp_path):
    rng = random.Random(1)
    shared, only_a = rng.randbytes(6 * MiB), rng.randbytes(6 * MiB)
    a = _src(tmp_path, "a", {"shared": shared, "only-a": only_a})
    b = _src(tmp_path, "b", {"shared": shared, "only-b": rng.randbytes(3 * MiB)})
    run_backup(store, "host", "h", [("root.tar", a)], backup_time=1000)
    run_backup(store, "host", "h", [("root.tar", b)], backup_time=2000)
    ref_a, ref_b = store.list_snapshots()
    chunks_a, chunks_b = store.chunk_digests(ref_a), store.chunk_digests(ref_b)
    unique_a = chunks_a - chunks_b
    assert unique_a and chunks_a & chunks_b

    # Nothing is garbage while both snapshots exist.
    st = garbage_collection(store, Reporter())
    assert (st.removed_chunks, st.pending_chunks) == (0, 0)
    assert st.disk_chunks == st.marked_chunks == len(chunks_a | chunks_b)

    store.remove_snapshot(ref_a)
    # Right after removal the chunks are young (not past 24h5m): pending, not removed.
    st = garbage_collection(store, Reporter())
    assert st.removed_chunks == 0
    assert st.pending_chunks == len(unique_a)

    rep = ListReporter()
    st = garbage_collection(store, rep, now=time.time() + LATER, upid="UPID:test")
    assert st.removed_chunks == len(unique_a)
    assert set(store.chunks.iter_digests()) == chunks_b
    assert st.disk_chunks == len(chunks_b)
    assert st.index_data_bytes == store.load_index(ref_b, "root.tar.didx").size
    assert st.dedup_factor == pytest.approx(st.index_data_bytes / st.disk_bytes)
    assert any(l.startswith("Removed chunks: ") for l in rep.lines)
    assert any(l.startswith("Deduplication factor: ") for l in rep.lines)
    status = json.loads((store.path / GC_STATUS).read_text())
    assert status["removed_chunks"] == len(unique_a) and status["upid"] == "UPID:test"
    assert read_gc_status(store)["disk_chunks"] == len(chunks_b)

    restore_archive(store, ref_b, "root.tar", tmp_path / "out")
    assert_same_tree(b, tmp_path / "out")


def test_gc_cutoff_and_bad_and_temp_files(store, tmp_path):
    data = [os.urandom(1000) for _ in range(3)]
    digests = [chunk_digest(d).hex() for d in data]
    for d, hx in zip(data, digests):
        store.insert_chunk(hx, encode_blob(d))
    _age(store, digests[:1], DEFAULT_CUTOFF + 60)     # older than the cutoff
    _age(store, digests[1:2], DEFAULT_CUTOFF - 600)   # within it
    bad = store.chunks.mark_bad(digests[2])
    os.utime(bad, (time.time() - 3 * 86400,) * 2)
    tmp = store.chunks.path(digests[1]).with_name("x" * 64 + ".1234.tmp")
    tmp.write_bytes(b"partial")
    os.utime(tmp, (time.time() - 3 * 86400,) * 2)
    st = garbage_collection(store, Reporter())
    assert (st.removed_chunks, st.pending_chunks, st.removed_bad, st.removed_temp) == (1, 1, 1, 1)
    assert set(store.chunks.iter_digests()) == {digests[1]}
    assert not bad.exists() and not tmp.exists()


def test_gc_keeps_chunks_of_a_registered_writer(store):
    old = os.urandom(5000)
    old_hx = chunk_digest(old).hex()
    store.insert_chunk(old_hx, encode_blob(old))
    _age(store, [old_hx], 3 * 86400)
    with store.writer("backup"):
        new = os.urandom(5000)
        new_hx = chunk_digest(new).hex()
        store.insert_chunk(new_hx, encode_blob(new))   # written by the running backup, no index yet
        assert len(store.running_writers()) == 1
        st = garbage_collection(store, Reporter(), now=time.time() + LATER)
        assert store.chunks.exists(new_hx) and not store.chunks.exists(old_hx)
        assert st.removed_chunks == 1
    assert store.running_writers() == []
    st = garbage_collection(store, Reporter(), now=time.time() + LATER)
    assert not store.chunks.exists(new_hx)


def test_gc_during_a_running_backup(store, tmp_path):
    """A real backup paused after writing chunks but before its index exists."""
    src = _src(tmp_path, "src", {"big": os.urandom(40 * MiB)})
    paused, resume = threading.Event(), threading.Event()

    class Pausing(Reporter):
        calls = 0

        def check_abort(self):
            self.calls += 1
            if self.calls == 2:   # after the first 32 MiB buffer was handed to the workers
                deadline = time.time() + 10
                while not any(True for _ in store.chunks.iter_digests()) and time.time() < deadline:
                    time.sleep(0.01)
                paused.set()
                assert resume.wait(30)

    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "r", run_backup(store, "host", "busy", [("root.tar", src)], reporter=Pausing(), backup_time=1000)))
    t.start()
    assert paused.wait(30)
    before = set(store.chunks.iter_digests())
    assert before and not store.list_snapshots()[0].finished
    st = garbage_collection(store, Reporter(), now=time.time() + LATER)
    assert st.removed_chunks == 0 and before <= set(store.chunks.iter_digests())
    resume.set()
    t.join(30)
    ref = store.list_snapshots()[0]
    assert ref.finished
    garbage_collection(store, Reporter(), now=time.time() + LATER)
    restore_archive(store, ref, "root.tar", tmp_path / "out")
    assert (tmp_path / "out" / "big").read_bytes() == (src / "big").read_bytes()


def test_gc_refuses_to_run_twice_and_fails_on_bad_index(store, tmp_path):
    import fcntl
    fd = os.open(store.path / ".gc.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(DatastoreError, match="already running"):
            garbage_collection(store)
    finally:
        os.close(fd)
    src = _src(tmp_path, "s", {"f": os.urandom(1000)})
    res = run_backup(store, "host", "h", [("root.tar", src)], backup_time=1000)
    p = store.snapshot_path(res.ref) / "root.tar.didx"
    data = bytearray(p.read_bytes())
    data[-1] ^= 1
    p.write_bytes(data)
    with pytest.raises(DatastoreError, match="root.tar.didx: checksum mismatch"):
        garbage_collection(store, now=time.time() + LATER)
    assert len(list(store.chunks.iter_digests())) == 1  # nothing swept
