"""The Dashboard: Estimated Full as PBS computes it, usage samples from the scheduler tick,
warnings (failed sync, overdue remote, missed schedule, never drill-tested, Wasabi retention),
the task summary with click-through links, longest and running tasks, empty states."""
import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from datastores.models import Datastore, DatastoreUsage, PruneJob
from datastores import dashboard as store_board
from pbsweb import dashboard
from pbsweb.models import Task
from pbsweb.upid import new_upid
from remotes.models import Remote
from syncjobs import dashboard as sync_board
from syncjobs.drills import drill_status
from syncjobs.models import SyncJob

pytestmark = pytest.mark.django_db
T0 = 1_790_000_000
DAY = 86400


def make_task(worker_type="syncjob", worker_id="r1:store1:store1::job1", state=Task.OK, start=None,
              seconds=60, status=None, result=None):
    start = start or timezone.now() - timedelta(minutes=10)
    upid = new_upid("testnode", worker_type, worker_id, "root@pam", int(start.timestamp()))
    end = None if state in (Task.RUNNING, Task.QUEUED) else start + timedelta(seconds=seconds)
    return Task.objects.create(upid=str(upid), node="testnode", worker_type=worker_type, worker_id=worker_id,
                               user="root@pam", starttime=start, endtime=end, state=state,
                               store="store1", job=worker_id.rsplit(":", 1)[-1], result=result or {},
                               status=status if status is not None else {"ok": "OK", "warning": "WARNINGS: 1",
                                                                         "error": "boom"}.get(state, ""))


def make_store(tmp_path, name="store1"):
    path = tmp_path / name
    path.mkdir()
    return Datastore.objects.create(name=name, path=str(path))


def make_remote(remote_id="r1", **extra):
    from pbsweb.secretbox import ensure_key
    ensure_key()
    remote = Remote(remote_id=remote_id, endpoint="http://127.0.0.1:9", bucket="b", region="us-east-1",
                    access_key="AK", **extra)
    remote.secret_key = "very-secret-key"
    remote.save()
    return remote


def make_job(store, remote, job_id="job1", **extra):
    return SyncJob.objects.create(job_id=job_id, store=store, remote=remote, remote_store=store.name, **extra)


# -- Estimated Full ----------------------------------------------------------------

def test_estimate_full_exact_line():
    # usage 0.50, 0.51, ... 0.59 one day apart: full when 0.5 + 0.01·i = 1, i.e. day 50
    samples = [(T0 + i * DAY, 500 + 10 * i, 500 - 10 * i) for i in range(10)]
    assert store_board.estimate_full(samples) == pytest.approx(T0 + 50 * DAY, abs=1)


def test_estimate_full_hand_computed_fit():
    # days 0..6, usage .2 .3 .3 .5 .4 .6 .6: mean t 3, mean u 2.9/7, Sxy 1.9, Sxx 28,
    # b = 1.9/28 per day, a = 5.9/28 (at t=0), full at (1 - a)/b = 22.1/1.9 = 11.63 days
    usage = [0.2, 0.3, 0.3, 0.5, 0.4, 0.6, 0.6]
    samples = [(T0 + i * DAY, round(u * 1000), round((1 - u) * 1000)) for i, u in enumerate(usage)]
    assert store_board.estimate_full(samples) == pytest.approx(T0 + 22.1 / 1.9 * DAY, abs=1)
    assert store_board.linear_regression([0, 1, 2, 3, 4, 5, 6], usage) == pytest.approx((5.9 / 28, 1.9 / 28))


def test_estimate_full_needs_seven_points_and_growth():
    six = [(T0 + i * DAY, 500 + i, 500 - i) for i in range(6)]
    assert store_board.estimate_full(six) is None
    assert store_board.estimated_full_text(None) == "not enough data"
    flat = [(T0 + i * DAY, 500, 500) for i in range(8)]
    shrinking = [(T0 + i * DAY, 500 - 10 * i, 500 + 10 * i) for i in range(8)]
    assert store_board.estimate_full(flat) == 0
    assert store_board.estimate_full(shrinking) == 0
    assert store_board.estimated_full_text(0) == "never"


def test_usage_is_used_over_used_plus_avail():
    # total includes reserved blocks: used 300 + avail 300 of total 1000 is 50 % full, not 30 %
    samples = [(T0 + i * DAY, 300 + 6 * i, 300 - 6 * i) for i in range(8)]
    # usage = 0.5 + 0.01·i  -> full at day 50
    assert store_board.estimate_full(samples) == pytest.approx(T0 + 50 * DAY, abs=1)


# -- usage samples -------------------------------------------------------------------

def test_samples_recorded_at_most_once_an_hour(tmp_path):
    store = make_store(tmp_path)
    now = timezone.now()
    assert store_board.record_usage_samples(now) == 1
    assert store_board.record_usage_samples(now + timedelta(minutes=1)) == 0
    assert store_board.record_usage_samples(now + timedelta(minutes=30)) == 0
    assert store_board.record_usage_samples(now + timedelta(minutes=61)) == 1
    samples = list(DatastoreUsage.objects.filter(store=store))
    assert len(samples) == 2
    assert all(s.total_bytes > 0 and 0 <= s.used_bytes <= s.total_bytes for s in samples)


def test_scheduler_tick_records_samples(tmp_path, monkeypatch):
    from pbsweb import tasks
    monkeypatch.setattr(tasks, "close_old_connections", lambda: None)  # keep the test's connection
    scheduler_tick = tasks.scheduler_tick
    store = make_store(tmp_path)
    scheduler_tick()
    scheduler_tick()
    assert DatastoreUsage.objects.filter(store=store).count() == 1


def test_dashboard_shows_usage_and_estimated_full(admin_client, tmp_path):
    store = make_store(tmp_path)
    now = timezone.now()
    total = 1000 * 2 ** 30
    # usage 0.5 + 0.01·i per day over the last 10 days: full 40 days after now-ish
    for i in range(10):
        used = int(total * (0.5 + 0.01 * i))
        DatastoreUsage.objects.create(store=store, time=now - timedelta(days=9 - i), used_bytes=used,
                                      total_bytes=total, avail_bytes=total - used)
    rows = store_board.datastore_rows(now)
    expected = (now + timedelta(days=41)).timestamp()
    assert rows[0]["estimate"] == pytest.approx(expected, abs=60)
    html = admin_client.get("/").content.decode()
    day = timezone.localtime(now + timedelta(days=41)).strftime("%Y-%m-%d")
    row = re.search(r'<tr data-store="store1">.*?</tr>', html, re.S).group(0)
    assert day in row and "usage-bar" in row
    assert 'data-chart="usage"' in html
    data = json.loads(re.search(r'<script id="usage-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert data["series"][0]["label"] == "store1" and len(data["x"]) == 10
    assert data["series"][0]["values"][0] == pytest.approx(50.0)


def test_store_with_few_samples_says_not_enough_data(admin_client, tmp_path):
    make_store(tmp_path)
    store_board.record_usage_samples()
    html = admin_client.get("/").content.decode()
    row = re.search(r'<tr data-store="store1">.*?</tr>', html, re.S).group(0)
    assert "Not enough data" in row


# -- warnings -------------------------------------------------------------------------

def kinds(html_or_list):
    if isinstance(html_or_list, list):
        return [w["kind"] for w in html_or_list]
    return re.findall(r'data-kind="([a-z-]+)"', html_or_list)


def test_warning_failed_sync(admin_client, tmp_path):
    store, remote = make_store(tmp_path), make_remote()
    job = make_job(store, remote)
    task = make_task(state=Task.ERROR, status="remote 'r1': Access Denied", worker_id=job.worker_id)
    SyncJob.objects.filter(pk=job.pk).update(last_task=task)
    html = admin_client.get("/").content.decode()
    assert "sync-failed" in kinds(html)
    assert "Sync job &#x27;job1&#x27; failed on its last run: remote &#x27;r1&#x27;: Access Denied" in html
    assert "very-secret-key" not in html


def test_warning_remote_overdue_and_missed_schedule(admin_client, tmp_path):
    store, remote = make_store(tmp_path), make_remote()
    job = make_job(store, remote, schedule="daily", next_run=timezone.now() - timedelta(hours=3))
    task = make_task(state=Task.OK, worker_id=job.worker_id, start=timezone.now() - timedelta(hours=40))
    SyncJob.objects.filter(pk=job.pk).update(last_task=task)
    warnings = sync_board.warnings()
    assert "remote-overdue" in kinds(warnings) and "schedule-missed" in kinds(warnings)
    text = next(w["text"] for w in warnings if w["kind"] == "remote-overdue")
    assert "Remote 'r1' has no successful sync for 39 h (more than 36 h)" in text
    html = admin_client.get("/").content.decode()
    assert "remote-overdue" in kinds(html) and "schedule-missed" in kinds(html)
    # the off-site grid shows that last sync, with its job
    row = re.search(r'<tr data-remote="r1">.*?</tr>', html, re.S).group(0)
    assert "job job1" in row


def test_no_overdue_warning_for_recent_sync(tmp_path):
    store, remote = make_store(tmp_path), make_remote()
    job = make_job(store, remote, schedule="daily", next_run=timezone.now() + timedelta(hours=3))
    task = make_task(state=Task.OK, worker_id=job.worker_id, start=timezone.now() - timedelta(hours=2))
    SyncJob.objects.filter(pk=job.pk).update(last_task=task)
    assert not {"remote-overdue", "schedule-missed", "sync-failed"} & set(kinds(sync_board.warnings()))


def test_warning_never_drilled(admin_client, tmp_path):
    make_store(tmp_path)
    make_remote()
    html = admin_client.get("/").content.decode()
    assert "never-drilled" in kinds(html)
    row = re.search(r'<tr data-remote="r1">.*?</tr>', html, re.S).group(0)
    assert "never drill-tested" in row


@pytest.mark.parametrize("keep,warn", [
    ({"keep_daily": 30}, True),
    ({"keep_last": 10}, True),
    ({"keep_daily": 7, "keep_weekly": 4}, True),
    ({"keep_daily": 7, "keep_monthly": 6}, False),
    ({"keep_daily": 120}, False),
    ({"keep_weekly": 13}, False),
])
def test_warning_wasabi_short_retention(tmp_path, keep, warn):
    store = make_store(tmp_path)
    remote = make_remote(provider="wasabi", min_storage_days=90)
    make_job(store, remote, remove_vanished=True)
    PruneJob.objects.create(job_id="keep", store=store, schedule="daily", **keep)
    found = [w for w in sync_board.warnings() if w["kind"] == "short-retention"]
    assert bool(found) == warn
    if warn:
        assert "Remote 'r1' bills 90 days minimum" in found[0]["text"]
        assert "prune job 'keep' on datastore 'store1'" in found[0]["text"]


def test_no_retention_warning_for_other_providers(tmp_path):
    store = make_store(tmp_path)
    make_job(store, make_remote(provider="b2"), remove_vanished=True)
    PruneJob.objects.create(job_id="keep", store=store, keep_daily=7)
    assert "short-retention" not in kinds(sync_board.warnings())


def test_retention_days_estimate():
    assert sync_board.retention_days({}) is None
    assert sync_board.retention_days({"keep_last": 5}) == 0
    assert sync_board.retention_days({"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6}) == 180
    assert sync_board.retention_days({"keep_hourly": 48}) == 2


# -- task summary ---------------------------------------------------------------------

def test_task_summary_counts_periods_and_links(admin_client):
    now = timezone.now()
    for state in (Task.OK, Task.OK, Task.WARNING, Task.ERROR):
        make_task("syncjob", "r1:s:s::job1", state, start=now - timedelta(hours=2))
    make_task("syncjob", "r1:s:s::job1", Task.ERROR, start=now - timedelta(days=3))
    make_task("garbage_collection", "store1", Task.OK, start=now - timedelta(days=20), seconds=7200)
    make_task("prune", "store1", Task.RUNNING, start=now - timedelta(minutes=1))

    day = dashboard.task_summary("1", now)
    rows = {r["type"]: r for r in day["rows"]}
    assert (rows["syncjob"]["ok"], rows["syncjob"]["warning"], rows["syncjob"]["error"]) == (2, 1, 1)
    assert "garbage_collection" not in rows and rows["prune"]["running"] == 1
    week = {r["type"]: r for r in dashboard.task_summary("7", now)["rows"]}
    assert week["syncjob"]["error"] == 2 and "garbage_collection" not in week
    month = {r["type"]: r for r in dashboard.task_summary("30", now)["rows"]}
    assert month["garbage_collection"]["ok"] == 1

    html = admin_client.get("/", {"period": "1"}).content.decode()
    summary = re.search(r'<table class="grid" id="dash-task-summary">.*?</table>', html, re.S).group(0)
    assert 'href="/tasks/?type=syncjob&amp;state=errors">1</a>' in summary
    assert 'href="/tasks/?type=syncjob&amp;state=ok">2</a>' in summary
    assert 'href="/tasks/?type=syncjob&amp;state=warning">1</a>' in summary
    assert "Last 24 hours" in html and "garbage" not in summary
    html30 = admin_client.get("/", {"period": "30"}).content.decode()
    assert "Datastore store1 Garbage Collect" in html30 or "garbage_collection" in html30
    # the click-through lands on the filtered task list
    listing = admin_client.get("/tasks/", {"type": "syncjob", "state": "errors"}).content.decode()
    assert listing.count("Error: boom") == 2 and "WARNINGS" not in listing
    # longest tasks: the 2 h garbage collection tops the 30-day list
    longest = dashboard.longest_tasks("30", now)
    assert longest[0].worker_type == "garbage_collection"
    assert "2h 00m" in re.search(r'id="dash-longest-grid".*?</table>', html30, re.S).group(0)


def test_running_tasks_fragment_refreshes(admin_client):
    task = make_task("prune", "store1", Task.RUNNING)
    Task.objects.filter(pk=task.pk).update(progress=0.42, progress_text="group host/web01")
    html = admin_client.get("/").content.decode()
    assert 'hx-get="/dashboard/running/"' in html and 'hx-trigger="every 3s"' in html
    fragment = admin_client.get("/dashboard/running/").content.decode()
    assert "42%" in fragment and "group host/web01" in fragment and "<html" not in fragment


def test_every_dashboard_grid_sorts(admin_client, tmp_path):
    store, remote = make_store(tmp_path), make_remote()
    make_job(store, remote)
    make_task("syncjob", "r1:store1:store1::job1", Task.OK)
    make_task("prune", "store1", Task.RUNNING)
    html = admin_client.get("/").content.decode()
    tables = re.findall(r'<table class="grid"[^>]*>.*?</table>', html, re.S)
    assert len(tables) >= 5
    for table in tables:
        heads = re.findall(r"<th(?:\s[^>]*)?>", re.search(r"<thead>.*?</thead>", table, re.S).group(0))
        assert heads and all("data-sort" in h for h in heads[:-1]), table[:200]


# -- sync chart -------------------------------------------------------------------

def test_sync_chart_reads_task_results(admin_client, tmp_path):
    store, remote = make_store(tmp_path), make_remote()
    job = make_job(store, remote)
    make_task(worker_id=job.worker_id, start=timezone.now() - timedelta(hours=5), seconds=30,
              result={"bytes": 5 * 2 ** 20})
    make_task(worker_id=job.worker_id, start=timezone.now() - timedelta(hours=1), seconds=90, result={"bytes": 2048})
    chart = sync_board.sync_chart()
    assert chart["bytes"] == [5 * 2 ** 20, 2048] and chart["duration"] == [30, 90]
    assert chart["jobs"] == ["job1", "job1"]
    html = admin_client.get("/").content.decode()
    assert 'data-chart="sync"' in html and "vendor/uplot/uPlot.iife.min.js" in html


# -- empty states and access -----------------------------------------------------------

def test_empty_states_say_what_to_do_first(admin_client, tmp_path):
    html = admin_client.get("/").content.decode()
    assert '<a href="/datastore/add/">Add a datastore</a>' in html
    make_store(tmp_path)
    html = admin_client.get("/").content.decode()
    assert '<a href="/remotes/">Add a remote</a>' in html
    make_remote()
    html = admin_client.get("/").content.decode()
    assert '<a href="/datastore/store1/sync-jobs/">Create a sync job</a>' in html


def test_dashboard_access(audit_client, client):
    assert audit_client.get("/").status_code == 200
    assert audit_client.get("/dashboard/running/").status_code == 200
    assert audit_client.post("/").status_code == 405
    client.logout()
    assert client.get("/").status_code in (302, 401, 403)


# -- off-site state: lag and restore drills ---------------------------------------------

def test_lag_behind_local(admin_client, tmp_path):
    from datetime import datetime
    from datetime import timezone as dt_timezone

    from tests.test_syncjob_run import T0
    from tests.test_syncjob_run import make_store as make_store_with_backups
    store = make_store_with_backups(tmp_path, backups=3)  # snapshots at T0, T0+1h, T0+2h
    remote = make_remote()
    job = make_job(store, remote)
    assert sync_board.remote_states()[0].lag_text == "never synced"
    at = datetime.fromtimestamp(T0 + 3600 + 60, tz=dt_timezone.utc)
    make_task(worker_id=job.worker_id, start=at)  # took the first two snapshots
    state = sync_board.remote_states()[0]
    assert state.lag == timedelta(hours=1) and state.lag_text == ""
    row = re.search(r'<tr data-remote="r1">.*?</tr>', admin_client.get("/").content.decode(), re.S).group(0)
    assert "1h 00m" in row
    make_task(worker_id=job.worker_id, start=datetime.fromtimestamp(T0 + 7200 + 60, tz=dt_timezone.utc))
    assert sync_board.remote_states()[0].lag_text == "up to date"


def test_drill_status_shown_and_warned(admin_client, tmp_path):
    from syncjobs.models import DrillRun
    make_store(tmp_path)
    remote = make_remote()
    assert drill_status(remote) is None
    ok_time = timezone.now() - timedelta(days=2)
    DrillRun.objects.create(remote=remote, time=ok_time, snapshots=3, ok=True)
    html = admin_client.get("/").content.decode()
    assert "never-drilled" not in kinds(html)
    cell = re.search(r'<td class="drill".*?</td>', html, re.S).group(0)
    assert timezone.localtime(ok_time).strftime("%Y-%m-%d %H:%M") in cell and "OK" in cell
    DrillRun.objects.create(remote=remote, time=timezone.now(), ok=False, message="chunk abc missing")
    html = admin_client.get("/").content.decode()
    assert "drill-failed" in kinds(html)
    assert "The last restore drill of remote &#x27;r1&#x27; failed: chunk abc missing; last verified restore" in html
    cell = re.search(r'<td class="drill".*?</td>', html, re.S).group(0)
    assert "drill failed" in cell and "last OK" in cell
