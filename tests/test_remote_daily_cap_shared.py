"""Daily caps are the remote's, not a run's (docs/DESIGN.md §9): every run and drill on a
remote reserves its requests from one per-day count, so runs going at the same time
together never cross a cap, and the one that meets it stops at once with the reason."""
import threading
from datetime import datetime

import pytest
from django.core.management.base import CommandError

from pbsweb.models import Task
from remotes.engine.limits import CapGuard, CapLedger, CapReached
from remotes.usage import cap_guard, used_today
from syncjobs.dashboard import warnings
from syncjobs.models import SyncJob
from tests.test_syncjob_run import bucket_keys, make_remote, make_store, run_cli


def test_two_guards_on_one_ledger_never_cross_the_cap(tmp_path):
    day = datetime(2026, 12, 1, 9, 0)
    ledger_path = tmp_path / "caps.sqlite"
    granted, refused = [0, 0], [[], []]

    def run(i):
        guard = CapGuard(daily_caps={"B": 50}, remote="b2", now=lambda: day, ledger=CapLedger(ledger_path))
        for _ in range(80):
            try:
                guard.before_send("GET")
                granted[i] += 1
            except CapReached as e:
                refused[i].append(str(e))
                break
        guard.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 50 and all(refused)
    assert refused[0][0].startswith("daily cap of class B requests (GET/HEAD) reached on remote 'b2': 50 of 50 "
                                    "used today; stopping (on-cap stop)")
    assert CapLedger(ledger_path).used(day.date()) == {"B": 50}


def test_unused_reservations_go_back(tmp_path):
    day = datetime(2026, 12, 1, 9, 0)
    guard = CapGuard(daily_caps={"B": 2500}, remote="b2", now=lambda: day, ledger=CapLedger(tmp_path / "c.sqlite"))
    guard.before_send("GET")
    assert CapLedger(tmp_path / "c.sqlite").used(day.date()) == {"B": CapGuard.block(2500)}   # a block reserved
    guard.close()
    assert CapLedger(tmp_path / "c.sqlite").used(day.date()) == {"B": 1}


@pytest.mark.django_db
def test_a_second_run_on_the_same_day_stops_at_once(tmp_path, s3_server, s3_client, s3_bucket):
    store = make_store(tmp_path)
    remote = make_remote(s3_server, s3_bucket, daily_cap_class_a=10)
    SyncJob.objects.create(job_id="job1", store=store, remote=remote, remote_store="store1")
    # A drill or another job on the remote is still going: it used 8 class A requests, not recorded yet.
    other = cap_guard(remote)
    for _ in range(8):
        other.before_send("PUT")
    assert used_today(remote)["A"] == 8
    with pytest.raises(CommandError) as info:
        run_cli("sync-job", "run", "job1")
    assert info.value.returncode == 1
    task = Task.objects.get(job="job1")
    assert task.state == Task.ERROR
    assert ("daily cap of class A requests (PUT/DELETE) reached on remote 's3-test': 10 of 10 used today; "
            "stopping (on-cap stop)") in task.status
    assert "class A cap 10/day (8 used today)" in task.log_path.read_text()
    assert len(bucket_keys(s3_client, s3_bucket)) == 2     # the run's share: 2 PUTs, then it stopped
    other.close()
    assert used_today(remote)["A"] == 10
    assert ("Remote 's3-test' reached its daily cap of class A requests (PUT/DELETE): 10 of 10 today; "
            "runs stop until tomorrow.") in [w["text"] for w in warnings()]


def test_the_monthly_budget_is_shared_too(tmp_path):
    now = datetime(2026, 12, 31, 12, 0)
    path = tmp_path / "caps.sqlite"
    made, errors = [0, 0], []

    def run(i):
        try:  # both open the new ledger file at once (it once failed: "database is locked")
            guard = CapGuard(monthly_budget=0.20, prices={"PUT": 0.004}, remote="aws1", now=lambda: now,
                             ledger=CapLedger(path))
            try:
                for _ in range(40):
                    guard.before_send("PUT")
                    made[i] += 1
            except CapReached as e:
                assert str(e).startswith("monthly budget of $0.20 reached on remote 'aws1': $")
            guard.close()
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(made) == 50                        # $0.20 at $0.004 a request, not 2 x 40
    assert CapLedger(path).used(now.date().replace(day=1)) == {"$": 2 * 10**8}
