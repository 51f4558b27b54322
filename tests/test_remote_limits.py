"""A remote's request limits (issue 13, docs/DESIGN.md §3: one client factory):
a request rate covering every method and shared by every client of the
remote, measured at the proxy; SlowDown answers lowering a run's rate; daily
caps per request class that stop or pause a run, with an injected clock.
Against the real moto server behind tests/s3proxy.py."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest

from datastores.engine.datastore import Datastore
from remotes.engine.client import RequestCounters, make_s3_client
from remotes.engine.config import RemoteConfig
from remotes.engine.limits import CapGuard, CapReached
from syncjobs.engine.bucket import Bucket
from syncjobs.engine.inventory import Inventory
from syncjobs.engine.pull import PullOptions, pull_sync
from syncjobs.engine.push import push_sync
from tests.conftest import make_test_client
from tests.s3proxy import s3proxy  # noqa: F401  (fixture)
from tests.test_sync_push import backup_img

T0 = 1_790_000_000


def config(url: str, bucket: str, remote_id: str, **extra) -> RemoteConfig:
    return RemoteConfig(id=remote_id, endpoint=url, bucket=bucket, region="us-east-1", access_key="testing",
                        secret_key="testing", **extra)


def test_request_rate_covers_every_method_and_every_client(s3proxy, s3_bucket):
    rate = 25
    cfg = config(s3proxy.url, s3_bucket, "rate-remote", request_rate=rate)
    job, drill = (Bucket(make_s3_client(cfg), s3_bucket, name) for name in ("job", "drill"))
    payload = {f"obj{i:03d}": f"data {i}".encode() * 50 for i in range(100)}

    def work(bucket: Bucket):
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: bucket.put(k, payload[k]), payload))
            list(pool.map(lambda k: bucket.head(k), list(payload)[:15]))
            got = list(pool.map(lambda k: bucket.get(k), list(payload)[:15]))
        assert got == [payload[k] for k in list(payload)[:15]]
        assert len(list(bucket.list(""))) == 100
        assert bucket.delete_many(list(payload)[90:]) == []

    t0 = time.monotonic()
    threads = [threading.Thread(target=work, args=(b,)) for b in (job, drill)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert s3proxy.counts["PUT"] == 200 and s3proxy.counts["HEAD"] == 30 and s3proxy.counts["LIST"] == 2
    assert s3proxy.counts["DELETE"] == 2 and s3proxy.counts["GET"] == 30
    assert s3proxy.max_per_second() <= rate
    assert elapsed >= s3proxy.total() / rate - 1
    left = make_test_client(s3proxy.url).list_objects_v2(Bucket=s3_bucket)["KeyCount"]
    assert left == 180


def test_slowdown_lowers_the_rate_and_the_run_finishes(s3proxy, s3_bucket):
    s3proxy.set_slowdown_rate(20)
    said = []
    bucket = Bucket(make_s3_client(config(s3proxy.url, s3_bucket, "slow-remote"), log=said.append),
                    s3_bucket, "p")
    payload = {f"obj{i:03d}": f"object {i} ".encode() * 100 for i in range(120)}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: bucket.put(k, payload[k]), payload))
    assert any(r.status == 503 for r in s3proxy.requests)
    assert said and said[0].startswith("the provider answered 503 SlowDown: lowering this run's request rate "
                                       "from unlimited (")
    assert " requests/s for the rest of the run" in said[0]
    plain = make_test_client(s3proxy.url)
    s3proxy.set_slowdown_rate(None)
    stored = {o["Key"]: plain.get_object(Bucket=s3_bucket, Key=o["Key"])["Body"].read()
              for page in plain.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket, Prefix="p/")
              for o in page.get("Contents", [])}
    assert stored == {f"p/{k}": v for k, v in payload.items()}


class FakeClock:
    """Wall clock for the caps: sleeping moves it on."""

    def __init__(self, start: datetime):
        self.t = start
        self.lock = threading.Lock()
        self.slept = 0.0

    def now(self) -> datetime:
        with self.lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.t += timedelta(seconds=seconds)
            self.slept += seconds


@pytest.fixture
def pushed(tmp_path, s3_server, s3_bucket):
    """A datastore of 12 chunks in 3 snapshots pushed to the bucket."""
    store = Datastore.create(tmp_path / "src")
    for i in range(3):
        backup_img(store, tmp_path, f"vm{i}", T0, list(range(16 * i, 16 * i + 16)))
    push_sync(store, Bucket(make_test_client(s3_server.url), s3_bucket, "store1"), Inventory(tmp_path / "i.sqlite"))
    return store


def _pull(s3proxy, s3_bucket, target, guard):
    client = make_s3_client(config(s3proxy.url, s3_bucket, "capped"), RequestCounters(), guard=guard)
    return pull_sync(Bucket(client, s3_bucket, "store1"), target, None, PullOptions(workers=4))


def test_daily_class_b_cap_stops_and_the_next_day_continues(tmp_path, pushed, s3proxy, s3_bucket):
    target = Datastore.create(tmp_path / "dst")
    clock = FakeClock(datetime(2026, 12, 1, 22, 0))
    guard = CapGuard(daily_caps={"B": 10}, on_cap="stop", remote="capped", now=clock.now, sleep=clock.sleep)
    days, chunk_gets = 0, []
    while True:
        s3proxy.reset_counts()
        try:
            result = _pull(s3proxy, s3_bucket, target, guard)
            break
        except CapReached as e:
            assert str(e) == ("daily cap of class B requests (GET/HEAD) reached on remote 'capped': 10 of 10 "
                              "used today; stopping (on-cap stop). The next run continues where this one stopped.")
        finally:
            assert s3proxy.counts["GET"] + s3proxy.counts["HEAD"] <= 10
            chunk_gets += [k for k in s3proxy.keys("GET", 200) if "/.chunks/" in k]
        days += 1
        clock.t += timedelta(days=1)     # the next day's run
        assert days < 10
    # 3 manifests + 3 indexes + 12 chunks at 10 a day: the third day finishes. Chunks stored
    # before a stop are not fetched again; those in flight at the stop (at most 2 x 4 workers) may be
    assert 2 <= days <= 3 and result.snapshots_synced
    assert len(set(chunk_gets)) == 12 and len(chunk_gets) <= 12 + 8 * days
    assert {r.rel_dir for r in target.list_snapshots("", recursive=True)} == \
        {r.rel_dir for r in pushed.list_snapshots("", recursive=True)}
    for ref in pushed.list_snapshots("", recursive=True):
        assert target.chunk_digests(ref) == pushed.chunk_digests(ref)


def test_daily_cap_pause_waits_for_the_next_day(tmp_path, pushed, s3proxy, s3_bucket):
    target = Datastore.create(tmp_path / "dst")
    clock = FakeClock(datetime(2026, 12, 1, 22, 0))
    said = []
    guard = CapGuard(daily_caps={"B": 10}, on_cap="pause", remote="capped", log=said.append,
                     now=clock.now, sleep=clock.sleep)
    result = _pull(s3proxy, s3_bucket, target, guard)
    assert len(result.snapshots_synced) == 3 and not result.snapshots_failed
    assert said[0] == ("daily cap of class B requests (GET/HEAD) reached on remote 'capped': 10 of 10 used today; "
                       "pausing until 2026-12-02 00:00 (on-cap pause)")
    assert said[1] == "resuming: 2026-12-02 00:00 reached, the cap's window is new"
    assert len(said) == 2 and clock.now().date() == datetime(2026, 12, 2).date()
    assert s3proxy.counts["GET"] == 18   # 3 manifests, 3 indexes, 12 chunks: 10 on the first day, 8 the next


def test_monthly_budget_stops_before_crossing_it():
    clock = FakeClock(datetime(2026, 12, 31, 12, 0))
    guard = CapGuard(monthly_budget=1.00, spent_this_month=0.99, prices={"PUT": 0.004}, on_cap="stop",
                     remote="aws1", now=clock.now, sleep=clock.sleep)
    guard.before_send("PUT")
    guard.before_send("PUT")   # 0.998
    with pytest.raises(CapReached, match=r"monthly budget of \$1.00 reached on remote 'aws1': \$0.9980 spent"):
        guard.before_send("PUT")
    guard.on_cap = "pause"
    guard.before_send("PUT")   # waits for January: a new month's budget
    assert clock.now() == datetime(2027, 1, 1) and guard.spent == pytest.approx(0.004)
