"""Push and pull through injected S3 faults (issue "Trustworthy under faults").

Real moto server, the counting/fault-injecting proxy (tests/s3proxy.py) in
between, and the real client factory (remotes.engine.client.make_s3_client,
adaptive retries). With a seeded 5 % of the requests failing (503 SlowDown,
500, 429, connection resets, truncated bodies) a push and a pull must end
exactly as a fault-free run does: the same keys and bytes in the bucket, the
same files in the pulled datastore, the same restored data. Faults also strike
after the server executed a request ("lost-reply": a PUT stored or a
DeleteObjects done whose answer never arrives; the retried chunk PUT then meets
If-None-Match -> 412, which is success), with the same identical-bucket outcome. With every
request failing, a push must give up within its retry budget with an error
that names the S3 code and the object key, and leave the bucket consistent
(and a later fault-free run must complete it).
"""
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

from datastores.engine.datastore import Datastore
from remotes.engine.client import RequestCounters, make_s3_client
from remotes.engine.config import RemoteConfig
from syncjobs.engine.bucket import Bucket, SyncError
from syncjobs.engine.consistency import check_bucket_consistency
from syncjobs.engine.inventory import Inventory
from syncjobs.engine.pull import PullOptions, pull_sync
from syncjobs.engine.push import PushOptions, push_sync
from tests.s3proxy import s3proxy  # noqa: F401  (fixture)
from tests.soak.crashpoints import (BASE, PREFIX, bucket_contents, check_store, expected_bucket,
                                    make_snapshot)

ALL_FAULTS = ("503", "500", "429", "reset", "lost-reply", "truncate")
STATUS_AND_RESET = ("503", "500", "429", "reset", "lost-reply")


def client_for(url, bucket, counters=None, max_attempts=8):
    cfg = RemoteConfig(id="faults", endpoint=url, bucket=bucket, region="us-east-1",
                       access_key="testing", secret_key="testing", max_attempts=max_attempts,
                       read_timeout=10, connect_timeout=5)
    return Bucket(make_s3_client(cfg, counters), bucket, PREFIX)


def new_bucket(s3_client) -> str:
    name = f"faults-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A datastore with ten snapshots (39 distinct chunks, a tree and images)."""
    root = tmp_path_factory.mktemp("faults-src")
    store = Datastore.create(root / "store")
    for s in BASE:
        make_snapshot(store, s, root / "scratch")
    return store, {s.rel_dir: s.expected() for s in BASE}


def faults_injected(proxy) -> dict:
    out = {}
    for r in proxy.requests:
        if r.fault:
            out[r.fault] = out.get(r.fault, 0) + 1
    return out


def push(store, bucket, inv_path, counters=None, **kw):
    with Inventory(inv_path) as inv:
        return push_sync(store, bucket, inv, PushOptions(counters=counters, workers=4, **kw))


def local_files(store_path) -> dict[str, bytes]:
    """Every snapshot file and chunk of a datastore (not locks, writers, GC status)."""
    root = Path(store_path)
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = [d for d in dirnames if d == ".chunks" or not d.startswith(".")]
        for f in files:
            if f.startswith(".") or f.endswith(".tmp"):
                continue
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


# -- 5 % faults -------------------------------------------------------------------------------

def test_push_under_5pct_faults_gives_the_same_bucket_as_a_fault_free_push(
        source, s3proxy, s3_client, tmp_path):
    store, _ = source
    clean, faulty = new_bucket(s3_client), new_bucket(s3_client)
    res = push(store, client_for(s3proxy.url, clean), tmp_path / "inv-clean.sqlite")
    assert res.ok, res.summary

    counters = RequestCounters()
    s3proxy.reset_counts()
    s3proxy.set_faults(rate=0.05, kinds=ALL_FAULTS, seed=11)
    t = time.monotonic()
    res = push(store, client_for(s3proxy.url, faulty, counters), tmp_path / "inv-faulty.sqlite", counters)
    elapsed = time.monotonic() - t
    injected = faults_injected(s3proxy)
    s3proxy.clear_faults()
    assert res.ok, res.summary
    assert sum(injected.values()) >= 2, injected  # the faults did happen ...
    assert counters.snapshot()["retries"] >= sum(injected.values()) - injected.get("truncate", 0)
    assert elapsed < 60

    # ... and changed nothing: same keys, same bytes, all of it what the store holds
    want = bucket_contents(s3_client, clean)
    got = bucket_contents(s3_client, faulty)
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []
    assert got == expected_bucket(store)
    assert check_bucket_consistency(client_for(s3proxy.url, faulty)).ok

    # the inventory written under faults is truthful: a second run has nothing to do
    res = push(store, client_for(s3proxy.url, faulty), tmp_path / "inv-faulty.sqlite")
    assert res.ok and res.objects_transferred == 0, res.summary


def test_pull_under_5pct_faults_gives_the_same_datastore_as_a_fault_free_pull(
        source, s3proxy, s3_client, tmp_path):
    store, model = source
    name = new_bucket(s3_client)
    assert push(store, client_for(s3proxy.url, name), tmp_path / "inv.sqlite").ok

    clean = Datastore.create(tmp_path / "clean")
    res = pull_sync(client_for(s3proxy.url, name), clean, None, PullOptions(workers=4))
    assert res.ok, res.summary

    s3proxy.reset_counts()
    s3proxy.set_faults(rate=0.05, kinds=STATUS_AND_RESET, seed=5)
    faulty = Datastore.create(tmp_path / "faulty")
    counters = RequestCounters()
    res = pull_sync(client_for(s3proxy.url, name, counters), faulty, None,
                    PullOptions(workers=4, counters=counters))
    injected = faults_injected(s3proxy)
    s3proxy.clear_faults()
    assert res.ok, (res.summary, res.snapshots_failed)
    assert sum(injected.values()) >= 2, injected
    assert counters.snapshot()["retries"] >= sum(injected.values())

    want, got = local_files(clean.path), local_files(faulty.path)
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []
    chk = check_store(faulty.path, model, list(model), tmp_path / "scratch")  # restores: exact data
    assert chk.ok, chk


def test_pull_retries_truncated_response_bodies(source, s3proxy, s3_client, tmp_path):
    store, model = source
    name = new_bucket(s3_client)
    assert push(store, client_for(s3proxy.url, name), tmp_path / "inv.sqlite").ok
    s3proxy.set_faults(rate=0.05, kinds=("truncate",), only=("GET",), seed=3)
    target = Datastore.create(tmp_path / "pulled")
    try:
        res = pull_sync(client_for(s3proxy.url, name), target, None, PullOptions(workers=4))
    finally:
        s3proxy.clear_faults()
    assert res.ok, (res.summary, res.snapshots_failed)
    chk = check_store(target.path, model, list(model), tmp_path / "scratch")
    assert chk.ok, chk


# -- faults after the server executed the request --------------------------------------------

def test_push_whose_put_replies_are_lost_gives_the_same_bucket(source, s3proxy, s3_client, tmp_path):
    """A third of the PUTs are stored by the server but their answer is lost (the
    connection resets): each retry meets the stored object (If-None-Match -> 412
    for chunks, an overwrite with the same bytes for the rest); the push ends OK
    with exactly the bucket a fault-free push gives."""
    store, _ = source
    name = new_bucket(s3_client)
    s3proxy.set_faults(rate=0.33, kinds=("lost-reply",), only=("PUT",), once=True, seed=7)
    res = push(store, client_for(s3proxy.url, name), tmp_path / "inv.sqlite")
    lost = [r for r in s3proxy.requests if r.fault == "lost-reply"]
    s3proxy.clear_faults()
    assert res.ok, res.summary
    assert len(lost) >= 10 and all(r.status == 200 for r in lost), lost  # stored, reply lost
    lost_chunks = {r.key for r in lost if "/.chunks/" in r.key}
    met_412 = {r.key for r in s3proxy.requests if r.status == 412 and r.if_none_match}
    assert lost_chunks and lost_chunks <= met_412, (lost_chunks, met_412)
    assert bucket_contents(s3_client, name) == expected_bucket(store)
    assert check_bucket_consistency(client_for(s3proxy.url, name)).ok
    res = push(store, client_for(s3proxy.url, name), tmp_path / "inv.sqlite")
    assert res.ok and res.objects_transferred == 0, res.summary


def test_push_whose_delete_replies_are_lost_gives_the_same_bucket(source, s3proxy, s3_client, tmp_path):
    """remove-vanished: every DeleteObjects is executed by the server and its answer
    lost; the retry deletes keys already gone (S3 answers success) and the bucket
    ends exactly as the store says."""
    src, _ = source
    shutil.copytree(src.path, tmp_path / "store", symlinks=True)
    store = Datastore(tmp_path / "store")
    name = new_bucket(s3_client)
    assert push(store, client_for(s3proxy.url, name), tmp_path / "inv.sqlite").ok
    for ref in store.list_snapshots()[:3]:
        store.remove_snapshot(ref)
    s3proxy.reset_counts()
    s3proxy.set_faults(rate=1.0, kinds=("lost-reply",), only=("DELETE",), once=True, seed=1)
    res = push(store, client_for(s3proxy.url, name), tmp_path / "inv.sqlite", remove_vanished=True)
    lost = [r for r in s3proxy.requests if r.fault == "lost-reply"]
    s3proxy.clear_faults()
    assert res.ok, res.summary
    assert lost and all(r.kind == "DELETE" and r.status == 200 for r in lost), lost
    assert bucket_contents(s3_client, name) == expected_bucket(store)
    assert check_bucket_consistency(client_for(s3proxy.url, name)).ok


def test_truncate_is_offered_only_for_answers_with_a_body(s3proxy, s3_client):
    """PUT and HEAD answers have no body to cut: truncate is not injected there (it
    would be a no-op counted as a fault); a GET's body really arrives cut short."""
    name = new_bucket(s3_client)
    client = client_for(s3proxy.url, name, max_attempts=1).client
    s3proxy.set_faults(rate=1.0, kinds=("truncate",), seed=1)
    try:
        client.put_object(Bucket=name, Key="k", Body=b"x" * 1000)
        client.head_object(Bucket=name, Key="k")
        with pytest.raises(Exception) as ei:
            client.get_object(Bucket=name, Key="k")["Body"].read()
    finally:
        s3proxy.clear_faults()
    assert [(r.kind, r.fault) for r in s3proxy.requests] == [("PUT", ""), ("HEAD", ""), ("GET", "truncate")]
    assert "IncompleteRead" in type(ei.value).__name__ + str(ei.value) or "Connection" in str(ei.value), ei.value


# -- 100 % faults -----------------------------------------------------------------------------

EXPECTED_CAUSE = {"503": "SlowDown", "500": "InternalError", "429": "SlowDown",
                  "reset": "Connection"}


@pytest.mark.parametrize("kind", ["503", "500", "429", "reset"])
def test_push_under_100pct_faults_fails_within_its_retry_budget_naming_cause_and_key(
        kind, source, s3proxy, s3_client, tmp_path):
    store, _ = source
    name = new_bucket(s3_client)
    s3proxy.set_faults(rate=1.0, kinds=(kind,), seed=1)
    t = time.monotonic()
    with pytest.raises(SyncError) as ei:
        push(store, client_for(s3proxy.url, name, max_attempts=3), tmp_path / "inv.sqlite")
    elapsed = time.monotonic() - t
    s3proxy.clear_faults()
    msg = str(ei.value)
    assert elapsed < 30, elapsed
    assert len(s3proxy.requests) == 3  # the first request, tried max_attempts times, then given up
    assert EXPECTED_CAUSE[kind] in msg, msg
    assert f"s3://{name}/{PREFIX}/.pbsweb-datastore.json" in msg, msg
    assert ei.value.key == f"{PREFIX}/.pbsweb-datastore.json"
    assert bucket_contents(s3_client, name) == {}


@pytest.mark.parametrize("kind", ["503", "500", "reset"])
def test_push_when_uploads_start_failing_midway_stays_consistent_and_a_later_run_completes(
        kind, source, s3proxy, s3_client, tmp_path):
    """Every PUT fails from the 15th request on: some snapshots made it, the one
    being uploaded did not; no manifest names anything that is missing."""
    store, _ = source
    name = new_bucket(s3_client)
    bucket = client_for(s3proxy.url, name, max_attempts=3)
    s3proxy.set_faults(rate=1.0, kinds=(kind,), after=15, only=("PUT",), seed=2)
    t = time.monotonic()
    with pytest.raises(SyncError) as ei:
        push(store, bucket, tmp_path / "inv.sqlite")
    elapsed = time.monotonic() - t
    s3proxy.clear_faults()
    msg = str(ei.value)
    assert elapsed < 30, elapsed
    assert EXPECTED_CAUSE[kind] in msg, msg
    assert ei.value.key and ei.value.key.startswith(f"{PREFIX}/") and f"s3://{name}/{ei.value.key}" in msg

    have = bucket_contents(s3_client, name)
    assert any("/.chunks/" in f"/{k}" for k in have)  # it got some way
    rep = check_bucket_consistency(bucket)
    assert rep.ok, rep.problems
    want = expected_bucket(store)
    assert rep.snapshots < len(BASE)
    assert all(have[k] == want[k] for k in have)  # nothing uploaded is wrong

    res = push(store, bucket, tmp_path / "inv.sqlite")
    assert res.ok, res.summary
    assert bucket_contents(s3_client, name) == want
