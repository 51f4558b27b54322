"""Parallel pull and restore straight from a bucket (issue 14, docs/READERS.md):
chunks are fetched, checked and written on worker threads, yet the result is
byte-identical, a corrupt chunk among many is still caught and named, each
chunk is fetched once, and the parallel GETs keep to the remote's request
rate. Against the real moto server behind tests/s3proxy.py."""
import os
import time

import pytest

from datastores.engine.datastore import Datastore
from datastores.engine.errors import CorruptionError
from remotes.engine.client import RequestCounters, make_s3_client
from remotes.engine.config import RemoteConfig
from syncjobs.engine.bucket import Bucket
from syncjobs.engine.pull import PullOptions, pull_sync, restore_from_bucket
from tests.s3proxy import s3proxy  # noqa: F401  (fixture)
from tests.test_sync_push import MiB, PREFIX, T0, backup_img, chunk_key, env, rand  # noqa: F401

# 1 MiB blocks, 4 to a chunk: 6 different chunks, and the first one again
# after four others (further back than the reader keeps decoded chunks)
BLOCKS = list(range(1, 21)) + [1, 2, 3, 4] + list(range(21, 25))
NCHUNKS = 6


def store_files(store: Datastore) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(store.path):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), store.path)
            if rel.startswith(".chunks/") or rel.endswith((".didx", ".fidx", ".blob")):
                out[rel] = open(os.path.join(dirpath, f), "rb").read()
    return out


@pytest.fixture
def many(env):
    ref = backup_img(env.store, env.tmp, "vm9", T0, BLOCKS)
    assert env.push().ok
    return env, ref


def test_parallel_pull_and_restore_are_byte_identical_and_fetch_each_chunk_once(many):
    env, ref = many
    digests = env.store.chunk_digests(ref)
    assert len(digests) == NCHUNKS
    target = Datastore.create(env.tmp / "pulled")
    env.proxy.reset_counts()
    res = pull_sync(env.bucket, target, None, PullOptions(workers=4, counters=env.counters))
    assert res.ok and res.snapshots_synced == [ref.rel_dir] and res.chunks_transferred == NCHUNKS
    source = store_files(env.store)
    pulled = store_files(target)
    assert pulled == {k: v for k, v in source.items() if not k.endswith("catalog.blob")}
    assert not [p for p in target.path.rglob("*.tmp")]
    chunk_gets = [k for k in env.proxy.keys("GET") if "/.chunks/" in k]
    assert sorted(chunk_gets) == sorted(chunk_key(d) for d in digests)
    assert "requests: " in res.summary and f"({NCHUNKS} chunks)" in res.summary

    # straight from the bucket: the repeated chunk is fetched once too
    env.proxy.reset_counts()
    restore_from_bucket(env.bucket, ref.rel_dir, "disk.img", env.tmp / "out.img", workers=4)
    assert (env.tmp / "out.img").read_bytes() == b"".join(rand(s, MiB) for s in BLOCKS)
    chunk_gets = [k for k in env.proxy.keys("GET") if "/.chunks/" in k]
    assert sorted(chunk_gets) == sorted(chunk_key(d) for d in digests)


def test_corrupt_chunk_among_many_is_named_and_nothing_of_the_snapshot_finished(many):
    env, ref = many
    idx = env.store.snapshot_reader(ref).index("disk.img.fidx")
    victim = idx.digests[3].hex()
    key = chunk_key(victim)
    bad = bytearray(env.s3.get_object(Bucket=env.bucket_name, Key=key)["Body"].read())
    bad[len(bad) // 3] ^= 0x10
    env.s3.put_object(Bucket=env.bucket_name, Key=key, Body=bytes(bad))

    target = Datastore.create(env.tmp / "pulled")
    res = pull_sync(env.bucket, target, None, PullOptions(workers=4))
    assert not res.ok and [n for n, _ in res.snapshots_failed] == [ref.rel_dir]
    assert key in res.snapshots_failed[0][1]
    assert not target.chunks.exists(victim)
    assert not (target.path / ref.rel_dir / "index.json.blob").exists()
    assert not [p for p in target.path.rglob("*.tmp")]
    source = store_files(env.store)
    for rel, data in store_files(target).items():  # whatever was written is a good chunk
        assert rel.startswith(".chunks/") and data == source[rel]

    with pytest.raises(CorruptionError) as e:
        restore_from_bucket(env.bucket, ref.rel_dir, "disk.img", env.tmp / "out.img", workers=4)
    assert victim in str(e.value)
    assert not (env.tmp / "out.img").exists()


def test_parallel_pull_keeps_to_the_remotes_request_rate(many, s3proxy):
    env, ref = many
    rate = 4
    cfg = RemoteConfig(id="pull-rate", endpoint=s3proxy.url, bucket=env.bucket_name, region="us-east-1",
                       access_key="testing", secret_key="testing", request_rate=rate)
    client = make_s3_client(cfg, RequestCounters(), parallelism=8)
    assert client.meta.config.max_pool_connections >= 10
    s3proxy.reset_counts()
    t0 = time.monotonic()
    res = pull_sync(Bucket(client, env.bucket_name, PREFIX), Datastore.create(env.tmp / "pulled"), None,
                    PullOptions(workers=8))
    elapsed = time.monotonic() - t0
    assert res.ok and res.chunks_transferred == NCHUNKS
    assert s3proxy.total() > 2 * rate
    assert s3proxy.max_per_second() <= rate
    assert elapsed >= (s3proxy.total() - 1) / rate * 0.9
