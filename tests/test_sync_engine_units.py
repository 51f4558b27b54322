"""Units of the sync engine: the bucket wrapper and the counting proxy against a
real moto server, the inventory, the token bucket and time frames, scopes."""
import os
import threading
import time
from datetime import datetime

import pytest

from syncjobs.engine.bucket import Bucket, SyncError
from syncjobs.engine.inventory import Inventory, chunk_rel, parse_chunk_rel
from syncjobs.engine.ratelimit import (RateLimiter, TimeFrame, TimeFrameRule, TokenBucket,
                                       effective_rate, parse_rate)
from syncjobs.engine.scope import Scope, parse_group_filter, group_selected, parse_snapshot_dir
from tests.conftest import make_test_client
from tests.s3proxy import s3proxy  # noqa: F401  (fixture)

D1 = "ab" * 32
D2 = "cd" * 32
D3 = "ef" * 32


@pytest.fixture
def bucket(s3proxy, s3_bucket):
    return Bucket(make_test_client(s3proxy.url), s3_bucket, "store1")


# -- proxy ------------------------------------------------------------------------------

def test_proxy_counts_each_kind_and_bytes(s3proxy, bucket):
    bucket.put("a/x", b"12345")
    assert bucket.get("a/x") == b"12345"
    assert bucket.head("a/x").size == 5
    assert [r[0] for r in bucket.list("a/")] == ["a/x"]
    assert bucket.delete_many(["a/x"]) == []
    c = s3proxy.counts
    assert (c["PUT"], c["GET"], c["HEAD"], c["LIST"], c["DELETE"]) == (1, 1, 1, 1, 1)
    assert s3proxy.keys("PUT") == ["store1/a/x"]
    assert s3proxy.bytes_up >= 5 and s3proxy.bytes_down >= 5


@pytest.mark.parametrize("fault,code", [("503", "SlowDown"), ("500", "InternalError"), ("429", "SlowDown")])
def test_proxy_status_faults_surface_as_sync_error_naming_key(s3proxy, bucket, fault, code):
    s3proxy.set_faults(rate=1.0, kinds=(fault,), after=1)
    bucket.put("ok", b"1")
    with pytest.raises(SyncError) as ei:
        bucket.put("dir/obj", b"2")
    assert ei.value.key == "store1/dir/obj"
    assert ei.value.code == code
    assert "store1/dir/obj" in str(ei.value) and code in str(ei.value)


def test_proxy_reset_and_truncate(s3proxy, bucket):
    bucket.put("obj", b"x" * 1000)
    s3proxy.set_faults(rate=1.0, kinds=("reset",))
    with pytest.raises(SyncError) as ei:
        bucket.get("obj")
    assert ei.value.key == "store1/obj"
    s3proxy.set_faults(rate=1.0, kinds=("truncate",))
    with pytest.raises(SyncError):
        bucket.get("obj")
    s3proxy.clear_faults()
    assert bucket.get("obj") == b"x" * 1000


def test_proxy_seeded_rate_and_delay(s3proxy, bucket):
    bucket.put("obj", b"x")
    s3proxy.set_faults(rate=0.5, kinds=("500",), seed=42)
    outcomes = []
    for _ in range(20):
        try:
            bucket.head("obj")
            outcomes.append(True)
        except SyncError:
            outcomes.append(False)
    s3proxy.set_faults(rate=0.5, kinds=("500",), seed=42)
    again = []
    for _ in range(20):
        try:
            bucket.head("obj")
            again.append(True)
        except SyncError:
            again.append(False)
    assert outcomes == again and 3 < outcomes.count(False) < 17
    s3proxy.set_faults(rate=1.0, kinds=("delay",), delay=0.3)
    t = time.monotonic()
    assert bucket.get("obj") == b"x"
    assert time.monotonic() - t >= 0.3


# -- bucket -------------------------------------------------------------------------------

def test_put_if_absent_and_quirk(s3proxy, s3_bucket):
    client = make_test_client(s3proxy.url)
    b = Bucket(client, s3_bucket, "p")
    assert b.put("c", b"one", if_absent=True)[0] is True
    assert b.put("c", b"two", if_absent=True) == (False, "")  # 412: already there, fine
    assert b.get("c") == b"one"
    quirk = Bucket(client, s3_bucket, "p", skip_if_none_match=True)
    s3proxy.reset_counts()
    assert quirk.put("c", b"two", if_absent=True)[0] is True
    assert quirk.get("c") == b"two"
    put = [r for r in s3proxy.requests if r.kind == "PUT"]
    assert len(put) == 1 and put[0].status == 200


def test_list_pages_with_continuation_tokens(s3proxy, bucket):
    bucket.page_size = 10
    for i in range(25):
        bucket.put(f"d/{i:03d}", b"x" * i)
    bucket.put("other", b"")
    s3proxy.reset_counts()
    items = list(bucket.list("d/"))
    assert [r for r, _, _ in items] == [f"d/{i:03d}" for i in range(25)]
    assert [s for _, s, _ in items] == list(range(25))
    assert isinstance(items[0][2], datetime)
    assert s3proxy.counts["LIST"] == 3
    dirs, objs = bucket.list_dirs("")
    assert dirs == ["d/"] and [o.rel for o in objs] == ["other"]


def test_delete_many_batches_and_quirk(s3proxy, s3_client, s3_bucket):
    client = make_test_client(s3proxy.url)
    b = Bucket(client, s3_bucket, "")
    b.page_size = 10
    for i in range(23):
        b.put(f"k{i}", b"x")
    s3proxy.reset_counts()
    assert b.delete_many([f"k{i}" for i in range(20)] + ["never-existed"]) == []
    assert s3proxy.counts["DELETE"] == 3  # 21 keys in batches of 10
    q = Bucket(client, s3_bucket, "", delete_via_delete_object=True)
    s3proxy.reset_counts()
    assert q.delete_many(["k20", "k21", "k22"]) == []
    assert s3proxy.counts["DELETE"] == 3 and all(r.method == "DELETE" for r in s3proxy.requests)
    assert "Contents" not in s3_client.list_objects_v2(Bucket=s3_bucket)


def test_delete_many_reports_failures(s3proxy, bucket):
    bucket.put("a", b"1")
    s3proxy.set_faults(rate=1.0, kinds=("500",))
    failures = bucket.delete_many(["a", "b"])
    assert [f[0] for f in failures] == ["a", "b"] and failures[0][1] == "InternalError"
    assert "store1/a" in bucket.describe_failures(failures)


def test_get_missing_names_key(bucket):
    with pytest.raises(SyncError) as ei:
        bucket.get("nope/obj")
    assert ei.value.code == "NoSuchKey" and "store1/nope/obj" in str(ei.value)
    assert bucket.get_if_exists("nope/obj") is None
    assert bucket.head("nope/obj") is None


# -- inventory ----------------------------------------------------------------------------------

def test_chunk_paths():
    assert chunk_rel(D1) == f".chunks/abab/{D1}"
    assert parse_chunk_rel(chunk_rel(D1)) == D1
    assert parse_chunk_rel(f".chunks/abab/{D1}.0.bad") is None
    assert parse_chunk_rel(f".chunks/0000/{D1}") is None


def test_inventory_basics_and_persistence(tmp_path):
    inv = Inventory(tmp_path / "inv.sqlite")
    assert inv.reconciled_at is None and inv.chunk_count() == 0
    inv.add_chunks([(D1, 100.0, 10), (D2, 200.0, 20)])
    inv.add_file("host/a/2026-01-01T00:00:00Z/index.json.blob", 5, "0" * 32, 1.0)
    inv.add_file("host/a/2026-01-01T00:00:00Z/root.tar.didx", 5, None, 1.0)
    assert inv.missing_chunks([D3, D1, D2]) == [D3]
    assert sorted(inv.iter_chunks()) == [(D1, 100.0, 10), (D2, 200.0, 20)]
    inv.close()
    inv = Inventory(tmp_path / "inv.sqlite")
    assert inv.has_chunk(D2) and not inv.has_chunk(D3)
    assert inv.manifests() == ["host/a/2026-01-01T00:00:00Z/index.json.blob"]
    assert set(inv.files("host/a/")) == {"host/a/2026-01-01T00:00:00Z/index.json.blob",
                                         "host/a/2026-01-01T00:00:00Z/root.tar.didx"}
    inv.remove_chunks([D1])
    inv.remove_files(["host/a/2026-01-01T00:00:00Z/root.tar.didx"])
    assert inv.chunk_count() == 1 and len(inv.files()) == 1
    a = Inventory.for_remote(tmp_path, "b", "p", "http://x")
    b = Inventory.for_remote(tmp_path, "b", "q", "http://x")
    assert a.path != b.path


def test_inventory_reconcile_replaces_and_counts_lost(tmp_path, bucket):
    bucket.put(chunk_rel(D1), b"1")
    bucket.put(chunk_rel(D3), b"333")
    bucket.put("host/a/2026-01-01T00:00:00Z/index.json.blob", b"m")
    bucket.put(".pbsweb-datastore.json", b"{}")
    inv = Inventory(tmp_path / "i.sqlite")
    inv.add_chunks([(D1, 1.0, 1), (D2, 1.0, 2)])  # D2 is believed there but is not
    stats = inv.reconcile(bucket, now=1234.0)
    assert (stats.chunks, stats.files, stats.lost, stats.found) == (2, 2, 1, 1)
    assert sorted(d for d, _, _ in inv.iter_chunks()) == [D1, D3]
    assert inv.missing_chunks([D2]) == [D2]
    assert inv.reconciled_at == 1234.0
    entry = inv.file("host/a/2026-01-01T00:00:00Z/index.json.blob")
    assert entry.size == 1 and entry.md5 == "6f8f57715090da2632453988d9a1501b"  # moto ETag = MD5
    assert abs(dict((d, t) for d, t, _ in inv.iter_chunks())[D3] - time.time()) < 60


def test_inventory_reconcile_failure_keeps_old(tmp_path, s3proxy, bucket):
    inv = Inventory(tmp_path / "i.sqlite")
    inv.add_chunks([(D1, 1.0, 1)])
    bucket.page_size = 1
    bucket.put(chunk_rel(D2), b"1")
    bucket.put(chunk_rel(D3), b"1")
    s3proxy.set_faults(rate=1.0, kinds=("500",), after=1, only=("LIST",))
    with pytest.raises(SyncError):
        inv.reconcile(bucket)
    assert [d for d, _, _ in inv.iter_chunks()] == [D1] and inv.reconciled_at is None


def test_inventory_scales(tmp_path):
    """200k chunks: insert, look up, iterate -- a million is 5x this."""
    inv = Inventory(tmp_path / "big.sqlite")
    digests = [os.urandom(32).hex() for _ in range(200_000)]
    t = time.monotonic()
    inv.add_chunks((d, 1.0, 4 << 20) for d in digests)
    probe = digests[::100] + [os.urandom(32).hex() for _ in range(2000)]
    assert len(inv.missing_chunks(probe)) == 2000
    assert sum(1 for _ in inv.iter_chunks()) == 200_000
    assert time.monotonic() - t < 10
    assert os.path.getsize(inv.path) < 200_000 * 100


# -- rate limiting --------------------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def test_token_bucket_fake_clock_rate():
    clk = FakeClock()
    tb = TokenBucket(1_000_000, burst=100_000, clock=clk, sleep=clk.sleep)
    sent = 0
    for _ in range(500):
        tb.consume(64 * 1024)
        sent += 64 * 1024
    measured = sent / clk.t
    assert abs(measured - 1_000_000) / 1_000_000 < 0.10
    # bigger than the burst: goes in debt, long-run rate still exact
    clk2 = FakeClock()
    tb2 = TokenBucket(1000, burst=10, clock=clk2, sleep=clk2.sleep)
    tb2.consume(5000)
    tb2.consume(5000)
    assert 9.9 <= clk2.t <= 10.01


def test_token_bucket_real_time_shared_by_threads():
    rate = 4 * 1024 * 1024
    tb = TokenBucket(rate, burst=64 * 1024)
    sent = [0] * 4
    stop = time.monotonic() + 2.0

    def worker(i):
        while time.monotonic() < stop:
            tb.consume(32 * 1024)
            sent[i] += 32 * 1024

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    measured = sum(sent) / (time.monotonic() - t0)
    assert abs(measured - rate) / rate < 0.10, measured


def test_unlimited_never_sleeps():
    tb = TokenBucket(None, sleep=lambda s: pytest.fail("slept"))
    assert tb.consume(10**9) == 0.0


def test_parse_rate():
    assert parse_rate("10MiB") == 10 * 1024**2
    assert parse_rate("500 KB") == 500_000
    assert parse_rate("1.5G") == 1.5e9
    assert parse_rate("") is None and parse_rate(None) is None and parse_rate(0) is None
    with pytest.raises(ValueError):
        parse_rate("fast")


def _at(weekday_date: str, hhmm: str) -> datetime:
    return datetime.fromisoformat(f"{weekday_date}T{hhmm}:00")


def test_timeframes_and_effective_rate():
    # 2026-11-23 is a Monday
    rules = [("mon..fri 08:00-18:00", "2MiB"), ("sat,sun", "20MiB"), ("22:00-06:00", None)]
    assert effective_rate(rules, _at("2026-11-23", "09:30"), default=100) == 2 * 1024**2
    assert effective_rate(rules, _at("2026-11-27", "17:59"), default=100) == 2 * 1024**2  # fri
    assert effective_rate(rules, _at("2026-11-27", "18:00"), default=100) == 100
    assert effective_rate(rules, _at("2026-11-28", "12:00"), default=100) == 20 * 1024**2  # sat
    assert effective_rate(rules, _at("2026-11-24", "23:00"), default=100) is None  # night: unlimited
    assert effective_rate(rules, _at("2026-11-25", "05:59"), default=100) is None
    assert effective_rate([], _at("2026-11-25", "05:59"), default=7) == 7
    tf = TimeFrame("fri..mon")
    assert tf.days == {4, 5, 6, 0}
    wrap = TimeFrame("fri 22:00-02:00")
    assert wrap.contains(_at("2026-11-27", "23:00")) and wrap.contains(_at("2026-11-28", "01:00"))
    assert not wrap.contains(_at("2026-11-28", "23:00"))
    for bad in ("someday", "mon 25:00-26:00", ""):
        with pytest.raises(ValueError):
            TimeFrame(bad)


def test_rate_limiter_follows_time_frames():
    clk = FakeClock()
    wall = [_at("2026-11-23", "17:59")]
    lim = RateLimiter("100MiB", rules=[TimeFrameRule("mon..fri 08:00-18:00", "1MiB")],
                      wallclock=lambda: wall[0], clock=clk, sleep=clk.sleep, recheck=1)
    assert lim.rate == 1024**2
    wall[0] = _at("2026-11-23", "18:01")
    clk.t += 2
    lim.consume(1)
    assert lim.rate == 100 * 1024**2


# -- scope ---------------------------------------------------------------------------------------------

def test_group_filter_pbs_semantics():
    f = parse_group_filter(["type:host", "exclude:group:host/db", "regex:^vm/1\\d\\d$"])
    assert group_selected(f, "host", "web")
    assert not group_selected(f, "host", "db")
    assert group_selected(f, "vm", "100") and not group_selected(f, "vm", "200")
    assert not group_selected(f, "ct", "5")
    only_ex = parse_group_filter(["exclude:type:ct"])
    assert group_selected(only_ex, "vm", "1") and not group_selected(only_ex, "ct", "1")
    for bad in ("type:pc", "group", "regex:(", "foo:bar"):
        with pytest.raises(ValueError):
            parse_group_filter([bad])


def test_scope_namespaces_and_paths():
    s = Scope("a", max_depth=1)
    assert s.contains("a", "host", "x") and s.contains("a/b", "host", "x")
    assert not s.contains("a/b/c", "host", "x") and not s.contains("", "host", "x")
    assert not s.contains("ab", "host", "x")
    p = parse_snapshot_dir("ns/a/ns/b/host/web01/2026-11-26T03:00:00Z")
    assert (p.ns, p.backup_type, p.backup_id, p.time) == ("a/b", "host", "web01", "2026-11-26T03:00:00Z")
    assert p.rel_dir == "ns/a/ns/b/host/web01/2026-11-26T03:00:00Z"
    assert parse_snapshot_dir("host/web01") is None
    assert parse_snapshot_dir("pc/web01/2026-11-26T03:00:00Z") is None
