"""`sync-job plan` of a pull job (issue 13): what the next pull downloads (objects, bytes,
GETs), the egress and request cost at the remote's prices and the time at the job's rate
limit, from one listing of the bucket prefix; against moto, checked against the real pull."""
import json

import pytest
from pytest import approx

from pbsweb.models import Task
from remotes.models import RemoteUsage
from syncjobs.models import SyncJob
from tests.test_syncjob_run import make_remote, make_store, run_cli

pytestmark = pytest.mark.django_db
KINDS = ("GET", "PUT", "HEAD", "LIST", "DELETE")


def usage_of(job_id: str) -> dict:
    task = Task.objects.filter(job=job_id).latest("starttime")
    row = RemoteUsage.objects.get(task_upid=task.upid)
    return {"GET": row.get, "PUT": row.put, "HEAD": row.head, "LIST": row.list, "DELETE": row.delete,
            "bytes_down": row.bytes_down}


def test_pull_plan_matches_the_pull(tmp_path, s3_server, s3_bucket):
    source = make_store(tmp_path, "src", backups=2)
    target = make_store(tmp_path, "dst", backups=0)
    remote = make_remote(s3_server, s3_bucket)
    SyncJob.objects.create(job_id="push1", store=source, remote=remote, remote_store="store1")
    SyncJob.objects.create(job_id="pull1", store=target, remote=remote, remote_store="store1", direction="pull",
                           rate_out=1024 * 1024)
    # before anything is in the bucket: nothing to download, said so
    empty = json.loads(run_cli("sync-job", "plan", "pull1", "--output-format", "json"))
    assert (empty["snapshots"], empty["objects"], empty["bytes"], empty["seconds"]) == (0, 0, 0, 0)
    assert "nothing to download" in run_cli("sync-job", "plan", "pull1")
    run_cli("sync-job", "run", "push1")

    plan = json.loads(run_cli("sync-job", "plan", "pull1", "--output-format", "json"))
    assert plan["direction"] == "pull" and plan["plan-requests"]["LIST"] == 1      # one LIST page, no GET
    assert sum(plan["plan-requests"].values()) == 1
    # "other" without prices: the cost is unknown, and the plan says how to fix that
    assert plan["egress-cost"] is None and plan["request-cost"] is None
    assert any("enter your own prices on the remote" in n for n in plan["notes"])
    assert plan["seconds"] == approx(plan["bytes"] / (1024 * 1024), rel=0.05) and plan["rate-limited"]

    run_cli("sync-job", "run", "pull1")
    done = usage_of("pull1")
    assert plan["snapshots"] == 2 and plan["snapshots-unchanged"] == 0
    # a first pull of a whole prefix uses every chunk: the upper bound is the figure
    job = SyncJob.objects.get(job_id="pull1")
    assert (plan["objects"], plan["chunks"], plan["bytes"]) == (job.last_objects, job.last_chunks, job.last_bytes)
    assert plan["requests"] == {k: done[k] for k in KINDS}
    assert 0 < done["bytes_down"] - plan["bytes"] < 2000 * plan["requests"]["LIST"]   # + the listings' XML

    # the next plan: nothing new, the manifests are still compared (one GET each)
    again = json.loads(run_cli("sync-job", "plan", "pull1", "--output-format", "json"))
    assert (again["snapshots"], again["snapshots-unchanged"], again["bytes"], again["exact"]) == (0, 2, 0, True)
    run_cli("sync-job", "run", "pull1")
    assert usage_of("pull1")["GET"] == again["requests"]["GET"] == 2


def test_pull_plan_prices_its_egress_with_the_remotes_own_prices(tmp_path, s3_server, s3_bucket, admin_client):
    source = make_store(tmp_path, "src", backups=1)
    target = make_store(tmp_path, "dst", backups=0)
    remote = make_remote(s3_server, s3_bucket, price_egress_gb=0.5, price_class_a=0, price_class_b=4,
                         price_class_c=5)
    SyncJob.objects.create(job_id="push1", store=source, remote=remote, remote_store="store1")
    SyncJob.objects.create(job_id="pull1", store=target, remote=remote, remote_store="store1", direction="pull")
    run_cli("sync-job", "run", "push1")
    plan = json.loads(run_cli("sync-job", "plan", "pull1", "--output-format", "json"))
    assert plan["egress-cost"] == approx(plan["bytes"] / 10**9 * 0.5)
    assert plan["request-cost"] == approx(plan["requests"]["GET"] / 1000 * 4 + plan["requests"]["LIST"] / 1000 * 5)
    text = run_cli("sync-job", "plan", "pull1")
    assert "egress cost" in text and "to download" in text and "no rate limit" in text
    dialog = admin_client.get("/sync-jobs/pull1/plan/", HTTP_HX_REQUEST="true").content.decode()
    assert "Plan: Sync Job pull1" in dialog and "egress cost" in dialog and "to download" in dialog
