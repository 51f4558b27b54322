"""A remote's limits as the user sets and meets them (issue 13): `remote create|update
--request-rate … --on-cap`, the API, the dialog, and a sync-job run that meets them
(against moto, counted at tests/s3proxy.py), with its log and the dashboard warning."""
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from pbsweb import secretbox
from pbsweb.models import Task
from remotes.models import Remote
from syncjobs.dashboard import warnings
from syncjobs.models import SyncJob
from tests.s3proxy import s3proxy  # noqa: F401  (fixture)
from tests.test_syncjob_run import make_remote, make_store, run_cli

pytestmark = pytest.mark.django_db
CREATE = ["remote", "create", "b2-offsite", "--endpoint", "https://s3.us-west-004.backblazeb2.com",
          "--bucket", "pbs-offsite-2026", "--access-key", "key-id", "--secret-key", "s3cr3t-value"]


@pytest.fixture(autouse=True)
def secret_key_file():
    secretbox.ensure_key()


def cli_fails(*args) -> str:
    with pytest.raises(CommandError) as info:
        call_command(*args, stdout=io.StringIO())
    assert info.value.returncode == 2
    return str(info.value)


def test_cli_sets_limits_and_the_b2_preset_caps_free_calls():
    run_cli(*CREATE)
    r = Remote.objects.get()
    assert (r.daily_cap_class_a, r.daily_cap_class_b, r.daily_cap_class_c, r.on_cap) == (None, 2500, 2500, "stop")
    run_cli("remote", "update", "b2-offsite", "--request-rate", "20", "--daily-cap-class-a", "1000",
            "--daily-cap-class-b", "", "--monthly-budget", "12.50", "--on-cap", "pause")
    r.refresh_from_db()
    assert (r.request_rate, r.daily_cap_class_a, r.daily_cap_class_b, float(r.monthly_budget), r.on_cap) == \
        (20, 1000, None, 12.5, "pause")
    shown = json.loads(run_cli("remote", "show", "b2-offsite", "--output-format", "json"))
    assert {k: shown[k] for k in ("request-rate", "daily-cap-class-a", "daily-cap-class-b", "daily-cap-class-c",
                                  "monthly-budget", "on-cap")} == \
        {"request-rate": 20, "daily-cap-class-a": 1000, "daily-cap-class-b": None, "daily-cap-class-c": 2500,
         "monthly-budget": 12.5, "on-cap": "pause"}
    for flag, value, message in [
            ("--request-rate", "0", "--request-rate: Ensure this value is greater than or equal to 1."),
            ("--daily-cap-class-c", "many", "--daily-cap-class-c: Enter a whole number."),
            ("--monthly-budget", "-5", "--monthly-budget: Ensure this value is greater than or equal to 0."),
            ("--on-cap", "later", "--on-cap: Select a valid choice. later is not one of the available choices.")]:
        assert cli_fails("remote", "update", "b2-offsite", flag, value) == message
    r.refresh_from_db()
    assert (r.request_rate, r.daily_cap_class_c, r.on_cap) == (20, 2500, "pause")   # nothing written


def test_api_and_dialog(admin_client):
    run_cli(*CREATE)
    url = "/api2/json/config/remote/b2-offsite"
    ok = admin_client.put(url, json.dumps({"request-rate": 50, "monthly-budget": "3", "on-cap": "stop"}),
                          content_type="application/json")
    assert ok.status_code == 200, ok.content
    bad = admin_client.put(url, json.dumps({"daily-cap-class-b": -1}), content_type="application/json")
    assert bad.status_code == 400
    assert bad.json()["errors"] == {"daily-cap-class-b": "Ensure this value is greater than or equal to 0."}
    data = admin_client.get(url).json()["data"]
    assert (data["request-rate"], data["monthly-budget"], data["daily-cap-class-b"]) == (50, 3.0, 2500)

    dialog = admin_client.get("/remotes/b2-offsite/edit/", HTTP_HX_REQUEST="true").content.decode()
    assert "Limits and budget" in dialog and "free 2,500 class B and 2,500 class C calls a day" in dialog
    assert 'name="request_rate" value="50"' in dialog
    presets = admin_client.get("/remotes/add/", HTTP_HX_REQUEST="true").content.decode()
    assert '"daily_cap_class_b": 2500' in presets


def test_run_at_a_daily_cap_stops_says_so_and_warns(tmp_path, s3_server, s3_bucket):
    store = make_store(tmp_path)
    remote = make_remote(s3_server, s3_bucket, daily_cap_class_a=2)
    SyncJob.objects.create(job_id="job1", store=store, remote=remote, remote_store="store1")
    with pytest.raises(CommandError) as info:
        run_cli("sync-job", "run", "job1")
    assert info.value.returncode == 1
    task = Task.objects.get(job="job1")
    log = task.log_path.read_text()
    message = ("daily cap of class A requests (PUT/DELETE) reached on remote 's3-test': 2 of 2 used today; "
               "stopping (on-cap stop). The next run continues where this one stopped.")
    assert task.state == Task.ERROR and message in task.status
    assert "remote limits: no request rate limit; class A cap 2/day (0 used today); at a cap: stop" in log
    texts = [w["text"] for w in warnings()]
    assert ("Remote 's3-test' reached its daily cap of class A requests (PUT/DELETE): 2 of 2 today; "
            "runs stop until tomorrow.") in texts


def test_run_keeps_the_request_rate_at_the_proxy(tmp_path, s3proxy, s3_bucket):
    store = make_store(tmp_path, backups=2)
    remote = make_remote(s3proxy, s3_bucket, request_rate=4)
    SyncJob.objects.create(job_id="job1", store=store, remote=remote, remote_store="store1")
    out = run_cli("sync-job", "run", "job1")
    assert "remote limits: 4 requests/s" in out
    assert s3proxy.total() >= 8 and s3proxy.max_per_second() <= 4   # unlimited, they all go within a second
