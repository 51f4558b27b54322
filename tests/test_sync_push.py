"""Push sync against a real moto server, counted from the server side by the
proxy: exact object sets, request counts, invariants 1-4 and 6 of docs/DESIGN.md §3."""
import json
import os
import random
import time
from pathlib import Path

import pytest

from datastores.engine.backup import run_backup
from datastores.engine.crypto import CryptConfig
from datastores.engine.datastore import Datastore
from datastores.engine.report import ListReporter, Reporter, TaskAborted
from remotes.engine.client import RequestCounters
from syncjobs.engine.bucket import Bucket, SyncError
from syncjobs.engine.consistency import check_bucket_consistency
from syncjobs.engine.inventory import Inventory
from syncjobs.engine.push import PushOptions, push_sync
from tests.conftest import make_test_client
from tests.s3proxy import s3proxy  # noqa: F401  (fixture)

MiB = 1024 * 1024
T0 = 1_790_000_000  # 2026-09-21, backup times
PREFIX = "store1"
DAY = 86400


# -- helpers (also used by test_sync_pull) ------------------------------------------------

def rand(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def backup_img(store, tmp_path, backup_id, t, blocks, ns="", crypt=None):
    """Back up a disk image made of 1 MiB blocks given by seeds (4 blocks = one
    fixed 4 MiB chunk), so tests control exactly which chunks are shared."""
    src = tmp_path / f"src-{backup_id}-{t}.img"
    src.write_bytes(b"".join(rand(s, MiB) for s in blocks))
    if ns:
        store.create_namespace(ns)
    res = run_backup(store, "host", backup_id, [("disk.img", src)], ns=ns, crypt=crypt, backup_time=t)
    src.unlink()
    return res.ref


def backup_dir(store, tmp_path, backup_id, t, files: dict, ns="", crypt=None):
    """Back up a directory tree (a .tar archive: gets a catalog.blob)."""
    src = tmp_path / f"tree-{backup_id}-{t}"
    for name, data in files.items():
        p = src / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return run_backup(store, "host", backup_id, [("root.tar", src)], ns=ns, crypt=crypt, backup_time=t).ref


def expected_keys(store, prefix=PREFIX) -> set[str]:
    """What a bucket prefix must hold: the marker, the finished snapshots'
    files except local-only ones (catalog.blob; owner, notes, .protected,
    writer files are outside snapshots' synced files), and exactly the chunks
    those snapshots reference (not chunks left for local GC)."""
    out = {f"{prefix}/.pbsweb-datastore.json"}
    root = Path(store.path)
    for ref in store.list_snapshots("", recursive=True):
        if not ref.finished:
            continue
        for f in os.listdir(root / ref.rel_dir):
            if f.endswith((".blob", ".didx", ".fidx")) and f != "catalog.blob":
                out.add(f"{prefix}/{ref.rel_dir}/{f}")
        out |= {chunk_key(d, prefix) for d in store.chunk_digests(ref)}
    return out


def bucket_objects(s3_client, bucket, prefix=PREFIX) -> dict[str, bytes]:
    out = {}
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            out[o["Key"]] = s3_client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def bucket_keys(s3_client, bucket, prefix=PREFIX) -> set[str]:
    keys = set()
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


def chunk_key(digest, prefix=PREFIX):
    return f"{prefix}/.chunks/{digest[:4]}/{digest}"


def snapshot_keys(store, ref, prefix=PREFIX) -> set[str]:
    return {k for k in expected_keys(store, prefix) if k.startswith(f"{prefix}/{ref.rel_dir}/")}


class Env:
    """A datastore, a bucket behind the counting proxy, an inventory."""

    def __init__(self, tmp_path, proxy, s3_client, bucket_name, name="a"):
        self.tmp = tmp_path
        self.proxy = proxy
        self.s3 = s3_client
        self.bucket_name = bucket_name
        self.store = Datastore.create(tmp_path / f"store-{name}")
        self.counters = RequestCounters()
        client = make_test_client(proxy.url)
        self.counters.attach(client)
        self.bucket = Bucket(client, bucket_name, PREFIX)
        self.inventory = Inventory(tmp_path / f"inv-{name}" / "inv.sqlite")

    def push(self, reporter=None, **kw) -> object:
        self.proxy.reset_counts()
        kw.setdefault("counters", self.counters)
        return push_sync(self.store, self.bucket, self.inventory, PushOptions(**kw),
                         reporter or ListReporter())

    def keys(self) -> set[str]:
        return bucket_keys(self.s3, self.bucket_name)


@pytest.fixture
def env(tmp_path, s3proxy, s3_client, s3_bucket):
    return Env(tmp_path, s3proxy, s3_client, s3_bucket)


def two_snapshots(env):
    a = backup_img(env.store, env.tmp, "web01", T0, [1, 2, 3, 4, 5, 6, 7, 8, 9])
    b = backup_dir(env.store, env.tmp, "files", T0 + 60,
                   {"etc/hosts": b"127.0.0.1 localhost\n", "data.bin": rand(50, 2 * MiB)})
    return a, b


# -- tests ---------------------------------------------------------------------------------

class ProgressReporter(ListReporter):
    def __init__(self):
        super().__init__()
        self.progress_calls = []

    def progress(self, fraction, text=""):
        self.progress_calls.append((fraction, text))


def test_first_sync_uploads_every_object_once(env):
    two_snapshots(env)
    rep = ProgressReporter()
    res = env.push(rep)
    expected = expected_keys(env.store)
    puts = env.proxy.keys("PUT", 200)
    assert len(puts) == len(set(puts)), "an object was uploaded twice"
    assert set(puts) == expected
    assert env.keys() == expected
    assert not any(k.endswith("catalog.blob") for k in env.keys())
    assert res.ok and len(res.snapshots_synced) == 2
    assert res.objects_transferred == len(expected)
    assert env.proxy.counts["LIST"] == 1  # the first run reconciles with one listing
    assert res.requests["PUT"] == len(expected)
    # PBS-style log
    assert any(line.startswith("sync snapshot host/web01/") for line in rep.lines)
    fractions = [f for f, _ in rep.progress_calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("ETA" in t and "MiB/s" in t for _, t in rep.progress_calls)
    assert "uploaded" in res.summary and "MiB/s" in res.summary and "requests:" in res.summary
    # the marker in the bucket is the datastore's own
    marker = env.s3.get_object(Bucket=env.bucket_name, Key=f"{PREFIX}/.pbsweb-datastore.json")["Body"].read()
    assert json.loads(marker)["uuid"] == env.store.uuid
    assert check_bucket_consistency(env.bucket).ok


def test_zero_change_run_costs_one_request(env):
    two_snapshots(env)
    env.push()
    rep = ListReporter()
    res = env.push(rep)
    assert env.proxy.counts["PUT"] == 0
    assert env.proxy.total() == 1 and env.proxy.counts["GET"] == 1  # the ownership marker
    assert res.objects_transferred == 0 and res.snapshots_unchanged == 2
    assert "nothing new since the last run" in res.summary


def test_incremental_uploads_only_new_chunks_and_files(env):
    a, _ = two_snapshots(env)
    env.push()
    before = env.keys()
    # blocks 1-8 unchanged (chunks 1 and 2 shared), block 9 replaced, 10-12 added
    c = backup_img(env.store, env.tmp, "web01", T0 + 3600, [1, 2, 3, 4, 5, 6, 7, 8, 90, 10, 11, 12])
    res = env.push()
    new_chunks = env.store.chunk_digests(c) - env.store.chunk_digests(a)
    assert len(new_chunks) == 1
    expected_puts = {chunk_key(d) for d in new_chunks} | snapshot_keys(env.store, c)
    assert set(env.proxy.keys("PUT")) == expected_puts
    assert env.proxy.total() == 1 + len(expected_puts)  # marker GET + the PUTs
    assert env.keys() == before | expected_puts
    assert res.chunks_transferred == 1
    # the manifest went last
    assert env.proxy.keys("PUT")[-1].endswith("index.json.blob")


def test_remove_vanished_propagates_retention(env):
    a, b = two_snapshots(env)
    c = backup_img(env.store, env.tmp, "web01", T0 + 3600, [1, 2, 3, 4, 21, 22, 23, 24, 25])
    env.push()
    only_a = env.store.chunk_digests(a) - env.store.chunk_digests(b) - env.store.chunk_digests(c)
    assert len(only_a) == 2  # blocks 5-8 and 9; blocks 1-4 are shared with c
    env.store.remove_snapshot(a)
    rep = ListReporter()
    res = env.push(rep, remove_vanished=True)
    assert env.keys() == expected_keys(env.store)
    report = check_bucket_consistency(env.bucket)
    assert report.ok and not report.unreferenced_chunks and report.snapshots == 2
    assert res.snapshots_removed == [a.rel_dir]
    assert f"removed vanished snapshot {a.rel_dir}" in rep.lines
    # the manifest alone in the first delete request, then the rest
    first_delete = next(r for r in env.proxy.requests if r.kind == "DELETE")
    assert first_delete.deleted == (f"{PREFIX}/{a.rel_dir}/index.json.blob",)
    deleted = env.proxy.deleted_keys()
    assert sorted(deleted) == sorted({f"{PREFIX}/{a.rel_dir}/index.json.blob", f"{PREFIX}/{a.rel_dir}/disk.img.fidx"}
                                     | {chunk_key(d) for d in only_a})
    # a later run has nothing to do
    res = env.push(remove_vanished=True)
    assert env.proxy.total() == 1 and res.objects_deleted == 0


def test_min_storage_days_defers_young_chunk_deletions(env):
    a, b = two_snapshots(env)
    env.push()
    env.store.remove_snapshot(a)
    now = time.time()
    rep = ListReporter()
    res = env.push(rep, remove_vanished=True, min_storage_days=90, now=lambda: now + 10 * DAY)
    # the snapshot is gone from the remote at once; its chunks are deferred
    assert f"{PREFIX}/{a.rel_dir}/index.json.blob" not in env.keys()
    report = check_bucket_consistency(env.bucket)
    assert report.ok and len(report.unreferenced_chunks) == 3
    assert res.deferred_chunks == 3
    line = next(x for x in rep.lines if x.startswith("deferred 3 chunks"))
    assert "min storage 90 days" in line and "MiB" in line
    until = time.strftime("%Y-%m-%d", time.gmtime(now + 90 * DAY))
    assert until in line or time.strftime("%Y-%m-%d", time.gmtime(now + 90 * DAY - 60)) in line
    # before the deadline: nothing to do, no listing, no deletion
    res = env.push(remove_vanished=True, min_storage_days=90, now=lambda: now + 50 * DAY,
                   reconcile_interval_days=None)
    assert env.proxy.counts["DELETE"] == 0 and env.proxy.total() == 1
    # after it: a later run deletes them
    res = env.push(remove_vanished=True, min_storage_days=90, now=lambda: now + 91 * DAY)
    assert res.deferred_chunks == 0 and res.objects_deleted == 3
    report = check_bucket_consistency(env.bucket)
    assert report.ok and not report.unreferenced_chunks
    assert env.keys() == expected_keys(env.store)


def test_prefix_owned_by_other_datastore_is_refused_unless_forced(env, tmp_path, s3proxy, s3_client):
    two_snapshots(env)
    env.push()
    other = Env(tmp_path, s3proxy, s3_client, env.bucket_name, name="b")
    backup_img(other.store, tmp_path, "db01", T0, [70, 71, 72, 73])
    with pytest.raises(SyncError) as ei:
        other.push()
    msg = str(ei.value)
    assert env.store.uuid in msg and other.store.uuid in msg and "force" in msg
    assert ei.value.key == f"{PREFIX}/.pbsweb-datastore.json"
    assert s3proxy.counts["PUT"] == 0 and s3proxy.counts["DELETE"] == 0
    rep = ListReporter()
    res = other.push(rep, force=True, remove_vanished=True)
    assert res.ok and any("taking over" in w for w in rep.warnings)
    assert other.keys() == expected_keys(other.store)
    # and now the first datastore is the stranger
    with pytest.raises(SyncError):
        env.push()


def test_remote_failure_mid_run_keeps_bucket_consistent_and_resumes(env):
    two_snapshots(env)
    backup_img(env.store, env.tmp, "web01", T0 + 3600, [30, 31, 32, 33, 34, 35, 36, 37])
    env.proxy.set_faults(rate=1.0, kinds=("500",), after=6)
    env.proxy.reset_counts()
    with pytest.raises(SyncError) as ei:
        env.push()
    failed = [r for r in env.proxy.requests if r.fault]
    assert ei.value.key in {r.key for r in failed}
    assert ei.value.key in str(ei.value) and "InternalError" in str(ei.value)
    arrived = set(env.proxy.keys("PUT", 200))
    assert arrived
    env.proxy.clear_faults()
    assert check_bucket_consistency(env.bucket).ok
    res = env.push()
    assert res.ok
    assert not arrived & set(env.proxy.keys("PUT")), "re-uploaded what had arrived"
    assert env.keys() == expected_keys(env.store)
    assert check_bucket_consistency(env.bucket).ok


def test_remove_vanished_cleans_unfinished_uploads_of_removed_snapshots(env):
    a = backup_img(env.store, env.tmp, "web01", T0, [1, 2, 3, 4, 5])
    env.proxy.set_faults(rate=1.0, kinds=("500",), only=("PUT",), key_contains="index.json.blob")
    with pytest.raises(SyncError) as ei:
        env.push()
    assert ei.value.key == f"{PREFIX}/{a.rel_dir}/index.json.blob"
    env.proxy.clear_faults()
    assert f"{PREFIX}/{a.rel_dir}/disk.img.fidx" in env.keys()  # arrived, but no manifest
    a_chunks = env.store.chunk_digests(a)
    env.store.remove_snapshot(a)
    b = backup_img(env.store, env.tmp, "web01", T0 + 60, [1, 2, 3, 4, 6])
    env.push(remove_vanished=True)
    assert env.keys() == expected_keys(env.store)
    puts = env.proxy.keys("PUT")
    assert set(puts) == ({chunk_key(d) for d in env.store.chunk_digests(b) - a_chunks}
                         | snapshot_keys(env.store, b))
    assert puts[-1] == f"{PREFIX}/{b.rel_dir}/index.json.blob"


@pytest.mark.parametrize("after", [2, 5, 8, 11, 13])
def test_crash_at_any_point_leaves_no_incomplete_manifest(env, after):
    """Invariant 1: cut the remote off after N requests (any kind, including
    connection resets) -- every manifest in the bucket is complete."""
    two_snapshots(env)
    backup_img(env.store, env.tmp, "web01", T0 + 3600, [40, 41, 42, 43, 1, 2, 3, 4])
    env.proxy.set_faults(rate=1.0, kinds=("reset", "503"), after=after, seed=after)
    env.proxy.reset_counts()
    with pytest.raises(SyncError):
        env.push(workers=4)
    env.proxy.clear_faults()
    report = check_bucket_consistency(env.bucket)
    assert report.ok, report.problems
    env.push()
    assert env.keys() == expected_keys(env.store)


def test_corrupt_local_chunk_skips_that_snapshot_only(env):
    a = backup_img(env.store, env.tmp, "web01", T0, [1, 2, 3, 4])
    b = backup_img(env.store, env.tmp, "web02", T0 + 10, [50, 51, 52, 53, 54, 55, 56, 57])
    c = backup_img(env.store, env.tmp, "web03", T0 + 20, [60, 61, 62, 63])
    bad = sorted(env.store.chunk_digests(b))[0]
    p = env.store.chunks.path(bad)
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    rep = ListReporter()
    res = env.push(rep)
    assert [n for n, _ in res.snapshots_failed] == [b.rel_dir]
    assert bad in res.snapshots_failed[0][1]
    assert any(b.rel_dir in w and bad in w for w in rep.warnings)
    assert set(res.snapshots_synced) == {a.rel_dir, c.rel_dir}
    keys = env.keys()
    assert f"{PREFIX}/{b.rel_dir}/index.json.blob" not in keys
    assert chunk_key(bad) not in keys
    assert snapshot_keys(env.store, a) | snapshot_keys(env.store, c) <= keys
    assert check_bucket_consistency(env.bucket).ok
    assert not res.ok


def test_failed_snapshot_does_not_leave_a_later_one_without_shared_chunks(env):
    """Snapshot A fails on a corrupt chunk that sorts first, so its other
    chunks are never sent; B shares them and must upload them itself."""
    import blake3
    shared = [1 + i for i in range(16)]
    shared_digests = {blake3.blake3(b"".join(rand(s, MiB) for s in shared[i:i + 4])).hexdigest()
                      for i in range(0, 16, 4)}
    base = next(b for b in range(1000, 1100, 4)
                if blake3.blake3(b"".join(rand(b + j, MiB) for j in range(4))).hexdigest() < min(shared_digests))
    a = backup_img(env.store, env.tmp, "web01", T0, [base, base + 1, base + 2, base + 3] + shared)
    b = backup_img(env.store, env.tmp, "web02", T0 + 10, shared)
    bad = sorted(env.store.chunk_digests(a))[0]
    assert bad not in env.store.chunk_digests(b)
    p = env.store.chunks.path(bad)
    p.write_bytes(p.read_bytes()[:-1] + b"\0")
    res = env.push(workers=1)
    assert [n for n, _ in res.snapshots_failed] == [a.rel_dir] and res.snapshots_synced == [b.rel_dir]
    report = check_bucket_consistency(env.bucket)
    assert report.ok, report.problems


def test_reconcile_reuploads_chunk_deleted_behind_the_inventorys_back(env):
    a, _ = two_snapshots(env)
    env.push()
    victim = sorted(env.store.chunk_digests(a))[1]
    env.s3.delete_object(Bucket=env.bucket_name, Key=chunk_key(victim))
    env.push()  # trusts the inventory: one request, does not notice
    assert env.proxy.total() == 1
    rep = ListReporter()
    res = env.push(rep, reconcile=True)
    assert env.proxy.keys("PUT") == [chunk_key(victim)]
    assert res.reconciled and any("1 chunks expected on the remote are missing" in x for x in rep.lines)
    assert check_bucket_consistency(env.bucket).ok
    # a scheduled reconcile happens by itself once the interval has passed
    res = env.push(now=lambda: time.time() + 31 * DAY)
    assert res.reconciled and env.proxy.counts["LIST"] == 1 and env.proxy.counts["PUT"] == 0


def test_encrypted_datastore_uploads_no_plaintext(env):
    crypt = CryptConfig.generate()
    secret_text = b"TOP-SECRET-PAYROLL-" * 4096
    backup_dir(env.store, env.tmp, "fin", T0, {"payroll.txt": secret_text, "notes.md": b"hello plaintext world\n" * 500},
               crypt=crypt)
    backup_img(env.store, env.tmp, "vmimg", T0 + 5, [80, 81, 82, 83], crypt=crypt)
    res = env.push()
    assert res.ok
    objects = bucket_objects(env.s3, env.bucket_name)
    assert set(objects) == expected_keys(env.store)
    needles = [b"TOP-SECRET-PAYROLL", b"hello plaintext world", b"payroll.txt", rand(80, MiB)[:64]]
    for key, data in objects.items():
        for n in needles:
            assert n not in data, f"{key} contains plain test data"


def test_scope_group_filter_transfer_last_and_namespaces(env):
    backup_img(env.store, env.tmp, "web", T0, [1, 2, 3, 4])
    w2 = backup_img(env.store, env.tmp, "web", T0 + 10, [5, 6, 7, 8])
    backup_img(env.store, env.tmp, "db", T0, [9, 10, 11, 12])
    n1 = backup_img(env.store, env.tmp, "web", T0, [13, 14, 15, 16], ns="prod")
    n2 = backup_img(env.store, env.tmp, "web", T0, [17, 18, 19, 20], ns="prod/eu")
    res = env.push(group_filter=["exclude:group:host/db"], transfer_last=1)
    assert sorted(res.snapshots_synced) == sorted([w2.rel_dir, n1.rel_dir, n2.rel_dir])
    res = env.push(ns="prod", max_depth=0)
    assert res.snapshots_synced == [] and res.snapshots_unchanged == 1
    # remove-vanished only touches the job's scope
    env.store.remove_snapshot(n1)
    res = env.push(ns="prod", max_depth=0, remove_vanished=True)
    assert res.snapshots_removed == [n1.rel_dir]
    manifests = {k for k in env.keys() if k.endswith("index.json.blob")}
    assert manifests == {f"{PREFIX}/{r.rel_dir}/index.json.blob" for r in (w2, n2)}
    assert check_bucket_consistency(env.bucket).ok


def test_rate_limiter_sees_every_uploaded_byte(env):
    two_snapshots(env)

    class Counting:
        def __init__(self):
            self.total = 0

        def consume(self, n):
            self.total += n
            return 0.0

    lim = Counting()
    res = env.push(limiter=lim)
    assert lim.total == res.bytes_transferred == env.proxy.bytes_up


def test_abort_between_units_leaves_consistent_bucket(env):
    two_snapshots(env)
    backup_img(env.store, env.tmp, "web01", T0 + 3600, [90, 91, 92, 93, 94, 95, 96, 97])

    class AbortAfter(Reporter):
        def __init__(self, n):
            self.n = n

        def check_abort(self):
            self.n -= 1
            if self.n < 0:
                raise TaskAborted("stopped by user")

    with pytest.raises(TaskAborted):
        env.push(AbortAfter(4))
    assert check_bucket_consistency(env.bucket).ok
    arrived = set(env.proxy.keys("PUT", 200))
    env.push()
    assert not arrived & set(env.proxy.keys("PUT"))
    assert env.keys() == expected_keys(env.store)


def test_provider_quirks_no_if_none_match_and_single_deletes(env):
    """B2-style remote: no If-None-Match header, one DELETE per object."""
    a, _ = two_snapshots(env)
    env.push()
    chunk_puts = [r for r in env.proxy.requests if r.kind == "PUT" and "/.chunks/" in r.key]
    assert chunk_puts and all(r.if_none_match for r in chunk_puts)
    assert not any(r.if_none_match for r in env.proxy.requests if r.kind == "PUT" and "/.chunks/" not in r.key)
    env.bucket.skip_if_none_match = True
    env.bucket.delete_via_delete_object = True
    backup_img(env.store, env.tmp, "web01", T0 + 3600, [1, 2, 3, 4, 77])
    env.store.remove_snapshot(a)
    env.push(remove_vanished=True)
    assert not any(r.if_none_match for r in env.proxy.requests)
    deletes = [r for r in env.proxy.requests if r.kind == "DELETE"]
    assert deletes and all(r.method == "DELETE" for r in deletes)
    assert deletes[0].key == f"{PREFIX}/{a.rel_dir}/index.json.blob"
    assert env.keys() == expected_keys(env.store)
    assert check_bucket_consistency(env.bucket).ok


def test_real_client_retries_through_flaky_remote(env):
    """With the app's client factory (adaptive retries), 20% of requests
    failing with 503/500/resets still gives a complete, consistent sync."""
    from remotes.engine.client import make_s3_client
    from remotes.engine.config import RemoteConfig
    backup_img(env.store, env.tmp, "web01", T0, [1, 2, 3, 4, 5, 6, 7, 8, 9])
    cfg = RemoteConfig(id="flaky", endpoint=env.proxy.url, bucket=env.bucket_name, region="us-east-1",
                       access_key="testing", secret_key="testing", max_attempts=6)
    counters = RequestCounters()
    env.bucket = Bucket(make_s3_client(cfg, counters), env.bucket_name, PREFIX)
    env.proxy.set_faults(rate=0.2, kinds=("503", "500", "reset"), seed=3)
    res = env.push(counters=counters)
    env.proxy.clear_faults()
    assert res.ok and res.requests["retries"] > 0
    assert env.keys() == expected_keys(env.store)
    assert check_bucket_consistency(env.bucket).ok
