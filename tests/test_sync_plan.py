"""`sync-job plan`: the forecast of a push's next run (docs/DESIGN.md §3, issue 13).

The plan must agree with the run it forecasts: objects, bytes and requests
are compared with what a real push to moto then does, counted at the
client. Costs are checked against figures computed by hand from
remotes/engine/pricing.json; durations against the job's rate limit and
traffic-control time frames.
"""
import json
from datetime import datetime

import pytest

from datastores.engine.datastore import Datastore
from remotes.engine.client import RequestCounters
from remotes.engine.cost import TB, run_cost
from syncjobs.engine.bucket import Bucket
from syncjobs.engine.inventory import Inventory
from syncjobs.engine.plan import plan_push
from syncjobs.engine.push import PushOptions, push_sync
from syncjobs.engine.ratelimit import TimeFrameRule, transfer_seconds
from syncjobs.models import SyncJob, TrafficControlRule
from tests.conftest import make_test_client
from tests.test_sync_push import backup_img
from tests.test_syncjob_run import make_remote, make_store, run_cli

approx = pytest.approx
MiB = 1024 * 1024
T0 = 1_790_000_000


# -- cost of a run, by provider, computed by hand ------------------------------------------

REQUESTS = {"PUT": 100_000, "GET": 5_000, "HEAD": 0, "LIST": 2_000, "DELETE": 10}


@pytest.mark.parametrize("provider, classes, request_cost, storage_added", [
    # B2: class A (PUT, DELETE) free; B 5,000 GET x $0.0004/1000 = 0.002; C 2,000 LIST x $0.004/1000 = 0.008
    # storage: (1.5 TB - 10 GB free) x 6 - (1 TB - 10 GB) x 6 = 3.00
    ("b2", {"A": (100_010, 0.0), "B": (5_000, 0.002), "C": (2_000, 0.008)}, 0.010, 3.00),
    # Wasabi: no request fees; 1.5 TB x 6.99 - 1 TB x 6.99 = 3.495
    ("wasabi", {}, 0.0, 3.495),
    # R2: A (PUT, LIST) 102,000 x $0.0045/1000 = 0.459; B 5,000 x $0.00036/1000 = 0.0018; DELETE free
    # storage: 0.5 TB x $15 = 7.50
    ("r2", {"A": (102_000, 0.459), "B": (5_000, 0.0018), "free": (10, 0.0)}, 0.4608, 7.50),
    # AWS: A 102,000 x $0.005/1000 = 0.51; B 5,000 x $0.0004/1000 = 0.002; storage 0.5 TB x $23 = 11.50
    ("aws", {"A": (102_000, 0.51), "B": (5_000, 0.002), "free": (10, 0.0)}, 0.512, 11.50),
])
def test_run_cost_by_provider(provider, classes, request_cost, storage_added):
    cost = run_cost(provider, REQUESTS, TB / 2, TB)
    assert {k: (c["count"], approx(c["cost"])) for k, c in cost.request_classes.items()} == \
        {k: (n, approx(v)) for k, (n, v) in classes.items()}
    assert cost.requests == approx(request_cost)
    assert cost.storage_added_per_month == approx(storage_added)


def test_run_cost_notes_free_allowance_and_minimums():
    b2 = run_cost("b2", REQUESTS, 0, TB)
    assert b2.notes == ["Class B (GET/HEAD): 5,000 requests, more than Backblaze B2's free 2,500 a day.",
                        "Class C (LIST): 2,000 requests, within Backblaze B2's free 2,500 a day."]
    # Wasabi bills 1 TB at least: 200 GB + 500 GB added costs nothing more
    wasabi = run_cost("wasabi", {}, TB / 2, TB / 5)
    assert wasabi.storage_added_per_month == 0.0
    assert "Wasabi bills at least 1 TB: the added bytes fit in it." in wasabi.notes
    assert "Wasabi bills every object for at least 90 days, even when deleted earlier." in wasabi.notes
    unknown = run_cost("other", REQUESTS, TB, 0)
    assert (unknown.requests, unknown.storage_added_per_month) == (None, None)


# -- duration at the rate limit and the traffic-control windows ---------------------------

def test_transfer_seconds_follows_time_frames():
    monday_0750 = datetime(2026, 11, 30, 7, 50)
    rules = [TimeFrameRule("mon..fri 08:00-18:00", 1 * MiB)]
    # 10 min at 10 MiB/s (6000 MiB), then 1 MiB/s: 600 MiB more takes 600 s
    seconds, limited = transfer_seconds(6600 * MiB, rules, 10 * MiB, monday_0750)
    assert (seconds, limited) == (approx(1200), True)
    # no default rate: before 08:00 the bytes go at the network's pace
    assert transfer_seconds(6600 * MiB, rules, None, monday_0750) == (0, False)
    # inside the window from the start, leaving it at 18:00 for the unlimited rest
    seconds, limited = transfer_seconds(100 * 3600 * MiB, rules, None, datetime(2026, 11, 30, 8, 0))
    assert (seconds, limited) == (approx(10 * 3600), False)
    assert transfer_seconds(10 * MiB, [], 1 * MiB, monday_0750) == (approx(10), True)


# -- the plan agrees with the run ----------------------------------------------------------

def _bucket(s3_server, name, counters, prefix="store1"):
    client = make_test_client(s3_server.url)
    counters.attach(client)
    return Bucket(client, name, prefix)


def test_plan_matches_the_push(tmp_path, s3_server, s3_bucket):
    store = Datastore.create(tmp_path / "ds")
    backup_img(store, tmp_path, "vm1", T0, [1, 2, 3, 4, 5, 6, 7, 8])
    backup_img(store, tmp_path, "vm2", T0, [1, 2, 3, 4, 9, 9, 9, 9])   # shares the first chunk
    inv = Inventory(tmp_path / "inv.sqlite")
    plan_counters, run_counters = RequestCounters(), RequestCounters()
    plan = plan_push(store, inv, PushOptions(), _bucket(s3_server, s3_bucket, plan_counters))
    assert plan_counters.snapshot()["requests"] == 1 and plan_counters.snapshot()["LIST"] == 1
    assert plan.notes == ["first run: the bucket prefix is empty, everything is uploaded"]
    assert plan.exact and plan.reconcile == "first run"

    result = push_sync(store, _bucket(s3_server, s3_bucket, run_counters), inv,
                       PushOptions(counters=run_counters))
    done = run_counters.snapshot()
    assert (plan.snapshots, plan.chunks) == (2, 3)
    assert (plan.objects, plan.bytes) == (result.objects_transferred, done["bytes_up"])  # the marker too
    assert plan.requests == {k: done[k] for k in ("GET", "PUT", "HEAD", "LIST", "DELETE")}

    # the next plan: nothing to do, no request at all (the inventory is trusted)
    backup_img(store, tmp_path, "vm1", T0 + 3600, [1, 2, 3, 4, 10, 11, 12, 13])
    plan_counters.reset()
    plan = plan_push(store, inv, PushOptions(), _bucket(s3_server, s3_bucket, plan_counters))
    assert plan_counters.snapshot()["requests"] == 0
    run_counters.reset()
    result = push_sync(store, _bucket(s3_server, s3_bucket, run_counters), inv, PushOptions(counters=run_counters))
    done = run_counters.snapshot()
    assert (plan.snapshots, plan.snapshots_unchanged, plan.chunks) == (1, 2, 1)
    assert (plan.objects, plan.bytes) == (result.objects_transferred, done["bytes_up"])
    assert plan.requests == {k: done[k] for k in ("GET", "PUT", "HEAD", "LIST", "DELETE")}


def test_plan_of_a_prefix_that_holds_objects_is_an_upper_bound(tmp_path, s3_server, s3_bucket):
    store = Datastore.create(tmp_path / "ds")
    backup_img(store, tmp_path, "vm1", T0, [1, 2, 3, 4])
    push_sync(store, _bucket(s3_server, s3_bucket, RequestCounters()), Inventory(tmp_path / "a.sqlite"))
    counters = RequestCounters()
    plan = plan_push(store, Inventory(tmp_path / "lost.sqlite"), PushOptions(),
                     _bucket(s3_server, s3_bucket, counters))
    assert counters.snapshot()["requests"] == 1
    assert not plan.exact
    assert plan.notes == [("first run: the bucket prefix already holds 4 objects; the run lists it fully "
                           "and uploads only what is missing, so the figures are an upper bound")]
    assert plan.objects == 3   # all but the marker the LIST page showed; the run finds them there too


# -- sync-job plan ID ----------------------------------------------------------------------

@pytest.mark.django_db
def test_cli_plan(tmp_path, s3_server, s3_client, s3_bucket):
    store = make_store(tmp_path)
    remote = make_remote(s3_server, s3_bucket)
    remote.provider = "b2"
    remote.save()
    SyncJob.objects.create(job_id="job1", store=store, remote=remote, remote_store="store1",
                           rate_out=64 * 1024)
    TrafficControlRule.objects.create(name="never", rate_out=1024, timeframes=["sun 00:00-00:01"])
    data = json.loads(run_cli("sync-job", "plan", "job1", "--output-format", "json"))
    assert (data["snapshots"], data["provider"], data["full-listing"], data["exact"]) == (1, "b2", "first run", True)
    assert data["requests"]["PUT"] == data["objects"] and data["requests"]["LIST"] == 1
    assert data["request-classes"]["A"]["count"] == data["objects"]
    # 64 KiB/s, unless the plan runs in the one-minute Sunday window
    assert data["seconds"] == approx(data["bytes"] / (64 * 1024), rel=0.05) and data["rate-limited"]
    assert data["prices-date"] == "2026-11-01"
    assert s3_client.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0   # nothing written
    text = run_cli("sync-job", "plan", "job1")
    assert f"{data['objects']:,} objects" in text and "per month" in text and "prices as of" in text



# -- the job page's Plan button and the API ------------------------------------------------

@pytest.mark.django_db
def test_plan_on_the_page_and_in_the_api(tmp_path, s3_server, s3_bucket, admin_client, django_user_model, client):
    from pbsweb.models import AclEntry
    store = make_store(tmp_path)
    remote = make_remote(s3_server, s3_bucket)
    SyncJob.objects.create(job_id="job1", store=store, remote=remote, remote_store="store1")
    page = admin_client.get("/sync-jobs/").content.decode()
    assert 'data-dialog-url="/sync-jobs/__ID__/plan/"' in page
    dialog = admin_client.get("/sync-jobs/job1/plan/", HTTP_HX_REQUEST="true").content.decode()
    assert "Plan: Sync Job job1" in dialog and "objects (" in dialog and "per month" in dialog
    assert "No price list for Other S3-compatible" in dialog
    edit = admin_client.get("/sync-jobs/job1/edit/", HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-get="/sync-jobs/job1/plan/?fragment=plan"' in edit
    fragment = admin_client.get("/sync-jobs/job1/plan/?fragment=plan", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="sync-plan"' in fragment and "<dialog" not in fragment
    full = admin_client.get("/sync-jobs/job1/plan/")
    assert full.status_code == 200 and "Plan: Sync Job job1" in full.content.decode()

    data = admin_client.get("/api2/json/admin/sync/job1/plan").json()["data"]
    assert data["snapshots"] == 1 and data["requests"]["PUT"] == data["objects"]
    assert admin_client.get("/api2/json/admin/sync/nope/plan").status_code == 404

    # the plan lists the bucket: it needs Remote.Audit as well as Datastore.Audit
    user = django_user_model.objects.create_user(username="storeonly@pbs", password="x-password-1")
    AclEntry.objects.create(user=user, path="/datastore/store1", role="DatastoreAudit")
    client.force_login(user)
    assert client.get("/sync-jobs/job1/plan/", HTTP_HX_REQUEST="true").status_code == 403
    denied = client.get("/api2/json/admin/sync/job1/plan")
    assert denied.status_code == 403
    assert denied.json()["errors"] == {"permission": "permission check failed: Remote.Audit on /remote/s3-test"}
