"""Push to a bucket with Object Lock (issue 12, docs/DESIGN.md §3): every object locked,
locks extended before they end, locked deletions deferred -- against moto, which enforces
Object Lock (deleting a locked version answers AccessDenied). The clock is injected; moto
keeps real time, so a test that needs locks to have ended on the server starts in the past."""
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from datastores.engine.report import ListReporter
from syncjobs.engine.consistency import check_bucket_consistency
from tests.test_sync_push import (DAY, PREFIX, T0, Env, backup_img, chunk_key, env, expected_keys,  # noqa: F401
                                  two_snapshots)
from tests.s3proxy import s3proxy  # noqa: F401  (fixture)


@pytest.fixture
def lock_env(tmp_path, s3proxy, s3_client):  # noqa: F811
    name = f"lock-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return Env(tmp_path, s3proxy, s3_client, name)


def retention(env, key) -> tuple[str, float]:
    head = env.s3.head_object(Bucket=env.bucket_name, Key=key)
    return head["ObjectLockMode"], head["ObjectLockRetainUntilDate"].timestamp()


def versions(env, prefix=PREFIX) -> dict[str, list]:
    out: dict[str, list] = {}
    for page in env.s3.get_paginator("list_object_versions").paginate(Bucket=env.bucket_name, Prefix=prefix + "/"):
        for v in page.get("Versions", []):
            out.setdefault(v["Key"], []).append(v["VersionId"])
    return out


def test_push_locks_every_object_and_a_zero_change_run_stays_one_request(lock_env):
    env = lock_env
    two_snapshots(env)
    now = time.time()
    res = env.push(lock_days=30, lock_mode="compliance", now=lambda: now)
    assert res.ok and len(res.snapshots_synced) == 2
    keys = expected_keys(env.store)
    assert env.keys() == keys
    for key in keys:
        mode, until = retention(env, key)
        assert mode == "COMPLIANCE" and abs(until - (now + 30 * DAY)) <= 1, key
    # someone holding the key cannot remove a locked version
    some_chunk = next(k for k in keys if "/.chunks/" in k)
    version = versions(env)[some_chunk][0]
    with pytest.raises(ClientError) as info:
        env.s3.delete_object(Bucket=env.bucket_name, Key=some_chunk, VersionId=version)
    assert info.value.response["Error"]["Code"] == "AccessDenied"
    # nothing changed, no lock due: the marker GET, as without Object Lock
    res = env.push(lock_days=30, lock_mode="compliance", now=lambda: now + 5 * DAY)
    assert env.proxy.total() == 1 and res.locks_extended == 0


def test_locks_of_referenced_objects_are_extended_before_they_end(lock_env):
    env = lock_env
    a, b = two_snapshots(env)
    now = time.time()
    env.push(lock_days=30, now=lambda: now)
    # day 15: no lock ends within the margin (10 days): no request beyond the marker
    res = env.push(lock_days=30, now=lambda: now + 15 * DAY)
    assert env.proxy.total() == 1 and res.locks_extended == 0
    # day 21: a new snapshot shares chunks with a; every lock ends within 10 days -> extended
    old = env.keys()
    c = backup_img(env.store, env.tmp, "web01", T0 + 3600, [1, 2, 3, 4, 5, 6, 7, 8, 90])
    rep = ListReporter()
    res = env.push(rep, lock_days=30, now=lambda: now + 21 * DAY)
    new_puts = len(env.store.chunk_digests(c) - env.store.chunk_digests(a)) + 2  # new chunk, fidx, manifest
    assert res.locks_extended == len(old) == env.proxy.counts["PUT"] - new_puts
    assert env.proxy.total() == 1 + env.proxy.counts["PUT"]  # marker GET; no HEAD, no LIST
    shared = chunk_key(sorted(env.store.chunk_digests(a) & env.store.chunk_digests(c))[0])
    assert abs(retention(env, shared)[1] - (now + 51 * DAY)) <= 1
    assert any(line.startswith(f"extended the Object Lock of {len(old)} objects") for line in rep.lines)
    assert f"extended {len(old)} locks" in res.summary
    # day 22: nothing due any more
    res = env.push(lock_days=30, now=lambda: now + 22 * DAY)
    assert env.proxy.total() == 1 and res.locks_extended == 0


def test_locked_deletions_are_deferred_then_done_after_the_lock_ends(lock_env):
    env = lock_env
    a, b = two_snapshots(env)
    start = time.time() - 60 * DAY  # the locks set "then" have ended for the server by now
    env.push(lock_days=30, now=lambda: start)
    only_a = env.store.chunk_digests(a) - env.store.chunk_digests(b)
    env.store.remove_snapshot(a)
    before = env.keys()
    # day 10: a vanished, but its objects are locked until day 30: deferred, listed, no error
    rep = ListReporter()
    res = env.push(rep, lock_days=30, remove_vanished=True, now=lambda: start + 10 * DAY)
    assert res.ok and not res.errors
    assert res.deferred_snapshots == [a.rel_dir] and res.snapshots_removed == []
    assert env.proxy.counts["DELETE"] == 0 and env.keys() == before
    assert any(line.startswith(f"deferred removal of vanished snapshot {a.rel_dir} until ") for line in rep.lines)
    assert "deferred removing 1 snapshots" in res.summary
    # day 20: still locked; nothing but the marker GET
    res = env.push(lock_days=30, remove_vanished=True, now=lambda: start + 20 * DAY,
                   reconcile_interval_days=None)
    assert env.proxy.total() == 1 and res.deferred_snapshots == [a.rel_dir]
    # day 31: the snapshot goes, then its chunks; b's locks (ended) are extended
    rep = ListReporter()
    res = env.push(rep, lock_days=30, remove_vanished=True, now=lambda: start + 31 * DAY)
    assert res.ok, res.errors
    assert res.snapshots_removed == [a.rel_dir] and not res.deferred_snapshots and res.deferred_chunks == 0
    assert env.keys() == expected_keys(env.store)
    # deleted by version id: the bytes are gone, not hidden behind a delete marker
    left = versions(env)
    assert not any(k.startswith(f"{PREFIX}/{a.rel_dir}/") for k in left)
    assert not any(chunk_key(d) in left for d in only_a)
    assert res.locks_extended == len(expected_keys(env.store))
    report = check_bucket_consistency(env.bucket)
    assert report.ok and not report.unreferenced_chunks


# -- own remote retention (keep-… for the bucket instead of remove-vanished) ---------------------

def test_own_remote_retention_keeps_what_pbs_prune_names(env):
    from datastores.engine.prune import KeepOptions, PruneItem, compute_prune, prune_mark_kept
    bucket_policy = KeepOptions(keep_daily=7, keep_monthly=3)
    local_policy = KeepOptions(keep_daily=7)
    times = [T0 + day * DAY for day in range(40)]
    for day, t in enumerate(times):
        backup_img(env.store, env.tmp, "web01", t, [1000 + day])
        # the local server prunes to keep-daily 7
        refs = [r for r in env.store.list_snapshots("", recursive=True)]
        marks = compute_prune([PruneItem(r, r.time) for r in refs], local_policy)
        for item, mark in marks:
            if not prune_mark_kept(mark):
                env.store.remove_snapshot(item.key)
        res = env.push(keep=bucket_policy)
        assert res.ok, res.errors
    names = {time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(item.key))
             for item, mark in compute_prune([PruneItem(t, t) for t in times], bucket_policy) if prune_mark_kept(mark)}
    assert len(names) == 8  # 7 days of October and the last of September
    in_bucket = {k.split("/")[3] for k in env.keys() if k.endswith("/index.json.blob")}
    assert in_bucket == names
    report = check_bucket_consistency(env.bucket)
    assert report.ok and not report.unreferenced_chunks and report.snapshots == 8


def test_own_remote_retention_never_uploads_what_it_would_remove_at_once(env):
    from datastores.engine.prune import KeepOptions
    for day in range(5):
        backup_img(env.store, env.tmp, "web01", T0 + day * DAY, [2000 + day])
    rep = ListReporter()
    res = env.push(rep, keep=KeepOptions(keep_last=2))
    assert len(res.snapshots_synced) == 2 and env.proxy.counts["DELETE"] == 0
    assert "own remote retention: 3 local snapshots are not uploaded (the bucket's policy would remove them at once)" \
        in rep.lines


def test_lock_period_on_a_bucket_without_object_lock_fails_clearly(env):
    from syncjobs.engine.bucket import SyncError
    two_snapshots(env)
    with pytest.raises(SyncError) as info:
        env.push(lock_days=30)
    assert str(info.value) == (
        f"PUT s3://{env.bucket_name}/{PREFIX}/.pbsweb-datastore.json failed: InvalidRequest: Bucket is missing "
        f"ObjectLockConfiguration. The remote locks objects (Object Lock days) but bucket '{env.bucket_name}' has "
        "no Object Lock: use a bucket created with Object Lock, or set the remote's Object Lock days to 0")
    assert env.keys() == set()  # nothing written
