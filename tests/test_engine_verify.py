"""Verify: detects flipped bytes, missing chunks and bad indexes, naming them; records state."""
import os
import random

import pytest

from datastores.engine.backup import run_backup
from datastores.engine.crypto import CryptConfig
from datastores.engine.datastore import Datastore
from datastores.engine.report import ListReporter, Reporter
from datastores.engine.verify import needs_verify, verify_datastore, verify_snapshot
from tests.test_engine_backup_restore import MiB


@pytest.fixture
def store(tmp_path):
    return Datastore.create(tmp_path / "store")


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    rng = random.Random(2)
    (d / "a").write_bytes(rng.randbytes(9 * MiB))
    (d / "b.txt").write_bytes(b"some text\n" * 300_000)
    for p in (d / "a", d / "b.txt", d):   # fixed mtimes: identical tar stream, same chunks every run
        os.utime(p, (1_700_000_000, 1_700_000_000))
    return d


def _flip(path, pos=-5):
    data = bytearray(path.read_bytes())
    data[pos] ^= 0x40
    path.write_bytes(data)


def test_verify_ok_and_recorded(store, src):
    res = run_backup(store, "host", "v", [("root.tar", src)], backup_time=1000)
    rep = ListReporter()
    r = verify_snapshot(store, res.ref, rep, upid="UPID:x", now=5000)
    assert r.ok and r.errors == [] and r.chunks_checked == res.chunks_new
    assert r.bytes_checked == res.bytes_read
    assert store.load_manifest(res.ref).verify_state == {"state": "ok", "time": 5000, "upid": "UPID:x"}
    assert any("ok" in l for l in rep.lines)


def test_verify_detects_flipped_byte_and_missing_chunk(store, src):
    res = run_backup(store, "host", "v", [("root.tar", src)], backup_time=1000)
    digests = sorted(store.chunk_digests(res.ref))
    assert len(digests) >= 2
    flipped, missing = digests[0], digests[1]
    _flip(store.chunks.path(flipped))
    os.unlink(store.chunks.path(missing))
    rep = ListReporter()
    r = verify_snapshot(store, res.ref, rep)
    assert not r.ok
    assert r.corrupt_chunks == [flipped] and r.missing_chunks == [missing]
    assert f"chunk {flipped} (in root.tar.didx) is corrupt: CRC mismatch (the stored bytes are corrupt); renamed to {flipped}.0.bad" in r.errors
    assert f"chunk {missing} (in root.tar.didx) is missing" in r.errors
    assert any(flipped in w for w in rep.warnings) and any(missing in w for w in rep.warnings)
    assert not store.chunks.exists(flipped)
    assert store.chunks.path(flipped).with_name(flipped + ".0.bad").exists()
    assert store.load_manifest(res.ref).verify_state["state"] == "failed"


def test_verify_detects_wrong_content_with_valid_crc(store, src):
    """A chunk file replaced by another valid blob: the digest check catches it."""
    res = run_backup(store, "host", "v", [("root.tar", src)], backup_time=1000)
    a, b = sorted(store.chunk_digests(res.ref))[:2]
    store.chunks.path(a).write_bytes(store.chunks.path(b).read_bytes())
    r = verify_snapshot(store, res.ref, Reporter(), record=False)
    assert not r.ok and r.corrupt_chunks == [a]
    assert "content does not match its digest" in r.errors[0] or "length" in r.errors[0]


def test_verify_detects_bad_index_and_manifest_mismatch(store, src):
    res = run_backup(store, "host", "v", [("root.tar", src)], backup_time=1000)
    p = store.snapshot_path(res.ref) / "root.tar.didx"
    _flip(p)
    r = verify_snapshot(store, res.ref, Reporter())
    assert not r.ok and r.errors == [f"index {res.ref}/root.tar.didx: checksum mismatch"]
    os.unlink(p)
    r = verify_snapshot(store, res.ref, Reporter())
    assert r.errors == [f"{res.ref}/root.tar.didx: file is missing"]


def test_verify_encrypted_with_and_without_key(store, src):
    key = CryptConfig.generate()
    res = run_backup(store, "host", "e", [("root.tar", src)], crypt=key, backup_time=1000)
    assert verify_snapshot(store, res.ref, Reporter()).ok            # CRC only
    assert verify_snapshot(store, res.ref, Reporter(), crypt=key).ok  # full check
    hx = sorted(store.chunk_digests(res.ref))[0]
    _flip(store.chunks.path(hx), 100)
    r = verify_snapshot(store, res.ref, Reporter())
    assert not r.ok and r.corrupt_chunks == [hx]


def test_verify_datastore_selection_and_shared_chunks(store, src):
    run_backup(store, "host", "v", [("root.tar", src)], backup_time=1000)
    run_backup(store, "host", "v", [("root.tar", src)], backup_time=2000)
    job = verify_datastore(store, Reporter(), now=10_000)
    assert job.ok and len(job.results) == 2 and job.skipped == []
    # the second snapshot shares every chunk: each chunk is read only once per job
    assert job.results[1].chunks_checked == 0
    job = verify_datastore(store, Reporter(), now=20_000)
    assert job.results == [] and len(job.skipped) == 2
    job = verify_datastore(store, Reporter(), outdated_after_days=1, now=10_000 + 2 * 86400)
    assert len(job.results) == 2
    job = verify_datastore(store, Reporter(), ignore_verified=False, now=30_000)
    assert len(job.results) == 2
    # a corrupt shared chunk fails every snapshot that uses it
    hx = sorted(store.chunk_digests(store.list_snapshots()[0]))[0]
    _flip(store.chunks.path(hx))
    job = verify_datastore(store, Reporter(), ignore_verified=False)
    assert [r.ok for r in job.results] == [False, False]
    assert all(any(hx in e for e in r.errors) for r in job.results)


def test_needs_verify():
    assert needs_verify(None, True, None, 0)
    assert not needs_verify({"state": "ok", "time": 0}, True, None, 10 ** 9)
    assert needs_verify({"state": "ok", "time": 0}, True, 1, 2 * 86400)
    assert not needs_verify({"state": "ok", "time": 0}, True, 3, 2 * 86400)
    assert needs_verify({"state": "ok", "time": 0}, False, None, 0)
