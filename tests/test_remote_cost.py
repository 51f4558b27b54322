"""remotes.engine.cost: monthly cost, projections, early deletion, the
per-TB table. Expected figures are computed by hand in the comments."""
import pytest

from remotes.engine.client import RequestCounters
from remotes.engine.cost import (TB, CostBreakdown, cost_per_tb_table, early_deletion_charge, format_usd,
                                 load_pricing, monthly_cost, projected_monthly_cost)

approx = pytest.approx


def test_pricing_file():
    pricing = load_pricing()
    assert pricing["date"] and pricing["notes"]
    prices = {k: p["storage_per_tb_month"] for k, p in pricing["providers"].items()}
    assert prices == {"b2": 6.00, "wasabi": 6.99, "r2": 15.00, "aws": 23.00, "minio": 0.0, "other": None}
    assert pricing["providers"]["wasabi"]["min_storage_days"] == 90
    pricing["providers"]["b2"]["storage_per_tb_month"] = 1.0  # a copy: the cached list is untouched
    assert load_pricing()["providers"]["b2"]["storage_per_tb_month"] == 6.00


def test_b2_month():
    requests = {"PUT": 100_000, "GET": 100_000, "HEAD": 50_000, "LIST": 80_000, "DELETE": 5_000}
    cost = monthly_cost("b2", 2 * TB, requests, 7 * TB)
    # storage: (2 TB - 10 GB free) x $6 = 11.94
    assert cost.storage == approx(11.94)
    # class B: 150,000 GET+HEAD - 2,500 x 30 free = 75,000 -> 75 x $0.0004 = 0.03
    # class C: 80,000 LIST - 75,000 free = 5,000 -> 5 x $0.004 = 0.02; class A free
    assert cost.request_classes["B"] == {"count": 150_000, "chargeable": 75_000, "cost": approx(0.03)}
    assert cost.request_classes["C"]["cost"] == approx(0.02)
    assert cost.request_classes["A"] == {"count": 105_000, "chargeable": 105_000, "cost": 0.0}
    assert cost.requests == approx(0.05)
    # egress: 7 TB - 3 x 2 TB free = 1 TB x $10
    assert cost.egress == approx(10.0)
    assert cost.total == approx(21.99)


def test_wasabi_month_minimum_and_fair_use():
    cost = monthly_cost("wasabi", TB // 2, {"PUT": 10**6, "GET": 10**6}, TB)
    # billed as 1 TB: $6.99; no request or egress fees
    assert (cost.storage, cost.requests, cost.egress, cost.total) == (approx(6.99), 0.0, 0.0, approx(6.99))
    assert cost.notes == [
        "Wasabi bills at least 1 TB per account: 0.5 TB is billed as 1 TB.",
        "Wasabi's free egress is fair use: downloading more than you store each month may lead the provider "
        "to ask you to change plans.",
    ]
    assert monthly_cost("wasabi", 3 * TB, {}, 0).total == approx(20.97)


def test_r2_month():
    requests = {"PUT": 1_500_000, "LIST": 500_000, "GET": 12_000_000, "DELETE": 40_000}
    cost = monthly_cost("r2", TB, requests, 5 * TB)
    assert cost.storage == approx(14.85)            # (1 TB - 10 GB) x $15
    assert cost.request_classes["A"]["cost"] == approx(4.50)   # 2M - 1M free = 1M x $4.50/M
    assert cost.request_classes["B"]["cost"] == approx(0.72)   # 12M - 10M free = 2M x $0.36/M
    assert cost.egress == 0.0
    assert cost.total == approx(20.07)


def test_aws_month():
    cost = monthly_cost("aws", 1.5 * TB, {"PUT": 10_000, "LIST": 2_000, "GET": 50_000, "DELETE": 9_999}, TB / 2)
    # 1.5 x 23 = 34.5; 12,000 x $0.005/1000 = 0.06; 50,000 x $0.0004/1000 = 0.02; 0.5 TB x $90 = 45
    assert (cost.storage, cost.requests, cost.egress) == (approx(34.5), approx(0.08), approx(45.0))
    assert cost.total == approx(79.58)


def test_minio_and_unknown_provider():
    assert monthly_cost("minio", 50 * TB, {"PUT": 10**9}, 10 * TB).total == 0.0
    other = monthly_cost("other", TB, {"PUT": 1}, TB)
    assert other == CostBreakdown(None, None, None, None, [
        "No price list for Other S3-compatible: enter your provider's prices to estimate the cost."], {})
    assert monthly_cost("hetzner", TB, {}, 0).total is None


def test_counters_snapshot_as_requests():
    counters = RequestCounters()
    counters.merge({"PUT": 2_000_000, "LIST": 10, "bytes_up": 5 * TB})
    cost = monthly_cost("r2", 0, counters.snapshot(), 0)
    # (2,000,010 - 1,000,000 free) PUT+LIST x $4.50/M; bytes_up and other extra keys are ignored
    assert cost.requests == approx(4.500045)
    assert cost.total == approx(4.500045)


def test_projected_month():
    # B2, 1 TB, per day 3,000 GET (500 over the free 2,500), 2,000 LIST (free), 10,000 PUT (free)
    cost = projected_monthly_cost("b2", TB, {"GET": 3_000, "LIST": 2_000, "PUT": 10_000}, 0)
    assert cost.requests == approx(500 * 30 / 1000 * 0.0004)   # 0.006
    assert cost.total == approx(5.94 + 0.006)
    # AWS: 20 GB egress a day = 0.6 TB a month x $90 = 54
    assert projected_monthly_cost("aws", 0, {}, 20 * 10**9).egress == approx(54.0)


def test_early_deletion_charge():
    deletions = [(TB, 30), (TB // 2, 89), (TB, 120), (TB, 90)]
    # 1 TB x 60/30 months x 6.99 = 13.98; 0.5 TB x 1/30 x 6.99 = 0.1165; older than 90 days: 0
    assert early_deletion_charge("wasabi", deletions) == approx(14.0965)
    assert early_deletion_charge("b2", deletions) == 0.0
    assert early_deletion_charge("other", deletions) == 0.0


def test_cost_per_tb_table():
    rows = {r["provider"]: r for r in cost_per_tb_table()}
    assert {k: r["one_tb_month"] for k, r in rows.items()} == {
        "b2": approx(5.94), "wasabi": approx(6.99), "r2": approx(14.85), "aws": approx(23.0), "minio": 0.0,
        "other": None}
    assert rows["b2"]["egress"] == "free up to 3x stored, then $10/TB"
    assert rows["b2"]["requests"] == ("GET/HEAD $0.0004 per 1,000 (2,500/day free); "
                                      "LIST $0.004 per 1,000 (2,500/day free)")
    assert rows["wasabi"]["egress"] == "free (fair use)"
    assert rows["wasabi"]["requests"] == "no request fees"
    assert rows["wasabi"]["min_storage_days"] == 90
    assert rows["r2"]["requests"] == ("PUT/LIST $0.0045 per 1,000 (1,000,000/month free); "
                                      "GET/HEAD $0.00036 per 1,000 (10,000,000/month free)")
    assert rows["aws"]["egress"] == "$90/TB"
    assert rows["other"]["egress"] == rows["other"]["requests"] == "unknown"


def test_format_usd():
    assert [format_usd(v) for v in (None, 0, 0.006, 11.94, 1234.5)] == [
        "unknown", "$0.00", "$0.0060", "$11.94", "$1,234.50"]
