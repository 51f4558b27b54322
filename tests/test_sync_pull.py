"""Pull sync, the bucket browser's listing and restore-from-bucket against a
real moto server behind the counting proxy (invariant 5 of docs/DESIGN.md §3)."""
import os
from pathlib import Path

import pytest

from datastores.engine.crypto import CryptConfig
from datastores.engine.datastore import Datastore
from datastores.engine.errors import DatastoreError
from datastores.engine.report import ListReporter
from datastores.engine.restore import restore_archive
from syncjobs.engine.consistency import check_bucket_consistency
from syncjobs.engine.pull import PullOptions, list_remote_snapshots, pull_sync, restore_from_bucket
from tests.s3proxy import s3proxy  # noqa: F401  (fixture)
from tests.test_sync_push import MiB, PREFIX, T0, backup_dir, backup_img, chunk_key, env, rand  # noqa: F401


def tree_files(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


TREE = {"etc/hosts": b"127.0.0.1 localhost\n", "var/data.bin": rand(7, 3 * MiB), "empty": b""}


@pytest.fixture
def pushed(env):
    """Two snapshots (a tree and an image) pushed to the bucket."""
    a = backup_dir(env.store, env.tmp, "files", T0, TREE)
    b = backup_img(env.store, env.tmp, "vm1", T0 + 60, [1, 2, 3, 4, 5, 6])
    assert env.push().ok
    return env, a, b


def new_store(env, name="pulled"):
    return Datastore.create(env.tmp / name)


def pull(env, store, **kw):
    env.proxy.reset_counts()
    rep = ListReporter()
    res = pull_sync(env.bucket, store, None, PullOptions(counters=env.counters, **kw), rep)
    return res, rep


def test_pull_into_empty_datastore_then_restore_identical(pushed):
    env, a, b = pushed
    store = new_store(env)
    res, rep = pull(env, store, owner="sync@pbs")
    assert res.ok and sorted(res.snapshots_synced) == sorted([a.rel_dir, b.rel_dir])
    assert store.get_owner("", "host", "vm1") == "sync@pbs"
    assert any(line.startswith(f"sync snapshot {a.rel_dir}") for line in rep.lines)
    assert rep.last_progress == (1.0, "done")
    # every chunk downloaded once
    gets = env.proxy.keys("GET")
    chunk_gets = [k for k in gets if "/.chunks/" in k]
    assert len(chunk_gets) == len(set(chunk_gets))
    assert set(chunk_gets) == {chunk_key(d) for r in (a, b) for d in env.store.chunk_digests(r)}
    restore_archive(store, store.find_snapshot(a.rel_dir), "root.tar", env.tmp / "out-tree")
    assert tree_files(env.tmp / "out-tree") == TREE
    restore_archive(store, store.find_snapshot(b.rel_dir), "disk.img", env.tmp / "out.img")
    assert (env.tmp / "out.img").read_bytes() == b"".join(rand(s, MiB) for s in [1, 2, 3, 4, 5, 6])
    # a second pull finds nothing new: listing + manifests only
    res, _ = pull(env, store)
    assert res.objects_transferred == 0 and res.snapshots_unchanged == 2
    assert env.proxy.counts["PUT"] == 0
    assert set(env.proxy.keys("GET")) == {f"{PREFIX}/{r.rel_dir}/index.json.blob" for r in (a, b)}
    assert "nothing new" in res.summary


def test_corrupt_chunk_in_bucket_fails_that_snapshot_and_writes_nothing_bad(pushed):
    env, a, b = pushed
    victim = sorted(env.store.chunk_digests(b))[0]
    obj = env.s3.get_object(Bucket=env.bucket_name, Key=chunk_key(victim))["Body"].read()
    bad = bytearray(obj)
    bad[len(bad) // 2] ^= 0x01
    env.s3.put_object(Bucket=env.bucket_name, Key=chunk_key(victim), Body=bytes(bad))
    store = new_store(env)
    res, rep = pull(env, store)
    assert [n for n, _ in res.snapshots_failed] == [b.rel_dir]
    assert chunk_key(victim) in res.snapshots_failed[0][1]
    assert any(chunk_key(victim) in w for w in rep.warnings)
    assert not (store.path / b.rel_dir / "index.json.blob").exists()
    assert not store.chunks.exists(victim)
    assert res.snapshots_synced == [a.rel_dir]
    assert [r.rel_dir for r in store.list_snapshots() if r.finished] == [a.rel_dir]
    assert not res.ok


def test_missing_or_corrupt_index_names_the_key(pushed):
    env, a, b = pushed
    env.s3.delete_object(Bucket=env.bucket_name, Key=f"{PREFIX}/{a.rel_dir}/root.tar.didx")
    key_b = f"{PREFIX}/{b.rel_dir}/disk.img.fidx"
    data = bytearray(env.s3.get_object(Bucket=env.bucket_name, Key=key_b)["Body"].read())
    data[-3] ^= 0xFF
    env.s3.put_object(Bucket=env.bucket_name, Key=key_b, Body=bytes(data))
    assert not check_bucket_consistency(env.bucket).ok
    store = new_store(env)
    res, _ = pull(env, store)
    failed = dict(res.snapshots_failed)
    assert f"{PREFIX}/{a.rel_dir}/root.tar.didx" in failed[a.rel_dir]
    assert key_b in failed[b.rel_dir]
    assert store.list_snapshots() == [] or not any(r.finished for r in store.list_snapshots())


def test_pull_remove_vanished_and_changed_manifest(pushed):
    env, a, b = pushed
    store = new_store(env)
    pull(env, store)
    # the source drops a snapshot and adds notes to another (manifest changes)
    env.store.remove_snapshot(a)
    env.store.set_notes(env.store.find_snapshot(b.rel_dir), "kept for audit")
    env.push(remove_vanished=True)
    res, rep = pull(env, store, remove_vanished=True)
    assert res.snapshots_removed == [a.rel_dir] and res.snapshots_synced == [b.rel_dir]
    assert [r.rel_dir for r in store.list_snapshots()] == [b.rel_dir]
    assert store.load_manifest(store.find_snapshot(b.rel_dir)).notes == "kept for audit"
    assert res.chunks_transferred == 0  # chunks were all local already
    # protected local snapshots stay
    c = backup_img(store, env.tmp, "local-only", T0 + 999, [99])
    store.set_protected(c, True)
    res, rep = pull(env, store, remove_vanished=True)
    assert store.find_snapshot(c.rel_dir) and any("protected" in w for w in rep.warnings)


def test_list_remote_snapshots_reads_only_manifests(pushed):
    env, a, b = pushed
    crypt = CryptConfig.generate()
    e = backup_img(env.store, env.tmp, "secret", T0 + 120, [11, 12], ns="prod", crypt=crypt)
    env.push()
    env.proxy.reset_counts()
    snaps = list_remote_snapshots(env.bucket)
    assert [s.rel_dir for s in snaps] == [a.rel_dir, b.rel_dir, e.rel_dir]
    assert env.proxy.counts["PUT"] == 0
    assert all("/.chunks/" not in k for k in env.proxy.keys("GET"))
    assert env.proxy.counts["GET"] == 3
    sa, sb, se = snaps
    assert (sb.backup_type, sb.backup_id, sb.time, sb.ns) == ("host", "vm1", T0 + 60, "")
    assert [f.filename for f in sb.files] == ["disk.img.fidx"] and sb.files[0].size == 6 * MiB
    assert sb.size >= 6 * MiB and not sb.encrypted
    assert se.ns == "prod" and se.encrypted and se.key_fingerprint == crypt.fingerprint
    assert [s.rel_dir for s in list_remote_snapshots(env.bucket, ns="prod")] == [e.rel_dir]
    assert [s.rel_dir for s in list_remote_snapshots(env.bucket, group_filter=["type:ct"])] == []


def test_restore_from_bucket_fetches_only_that_archives_chunks(pushed, tmp_path):
    env, a, b = pushed
    env.proxy.reset_counts()
    work = tmp_path / "work"
    work.mkdir()
    res = restore_from_bucket(env.bucket, a.rel_dir, "root.tar", tmp_path / "restored", work_dir=work)
    assert tree_files(tmp_path / "restored") == TREE
    gets = env.proxy.keys("GET")
    expected = ({f"{PREFIX}/{a.rel_dir}/index.json.blob", f"{PREFIX}/{a.rel_dir}/root.tar.didx"}
                | {chunk_key(d) for d in env.store.chunk_digests(a)})
    assert sorted(gets) == sorted(expected)  # each once, nothing of the other snapshot
    assert env.proxy.counts["PUT"] == env.proxy.counts["LIST"] == 0
    assert res.bytes > sum(len(v) for v in TREE.values())  # the tar stream
    assert list(work.iterdir()) == []  # the temporary store is gone


def test_encrypted_pull_and_restore_from_bucket_need_the_key(env, tmp_path):
    crypt = CryptConfig.generate()
    s = backup_dir(env.store, env.tmp, "fin", T0, TREE, crypt=crypt)
    env.push()
    store = new_store(env)
    res, _ = pull(env, store)
    assert res.ok
    restore_archive(store, store.find_snapshot(s.rel_dir), "root.tar", tmp_path / "o1", crypt)
    assert tree_files(tmp_path / "o1") == TREE
    with pytest.raises(DatastoreError):
        restore_from_bucket(env.bucket, s.rel_dir, "root.tar", tmp_path / "o2")
    restore_from_bucket(env.bucket, s.rel_dir, "root.tar", tmp_path / "o3", crypt)
    assert tree_files(tmp_path / "o3") == TREE


def test_pull_skips_snapshots_older_than_the_newest_local_one(pushed):
    """As PBS: a snapshot pruned locally is not fetched again by the next pull."""
    env, a, b = pushed
    b2 = backup_img(env.store, env.tmp, "vm1", T0 + 3600, [1, 2, 3, 4, 5, 7])
    env.push()
    store = new_store(env)
    pull(env, store)
    store.remove_snapshot(store.find_snapshot(b.rel_dir))  # local prune
    res, rep = pull(env, store)
    assert res.snapshots_synced == [] and env.proxy.keys("GET") == [
        f"{PREFIX}/{r.rel_dir}/index.json.blob" for r in (a, b2)]
    assert any("older than the newest local one" in x for x in rep.lines)
