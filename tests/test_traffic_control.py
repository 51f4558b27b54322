"""Traffic-control rules: validation in the dialog and the CLI, and the rate
a sync run gets: min(job rate, rules active now for its remote)."""
from datetime import datetime

import pytest
from django.core.management.base import CommandError

from syncjobs.models import SyncJob, TrafficControlRule
from syncjobs.tasks import build_limiter, rate_rules
from syncjobs.engine.ratelimit import effective_rate
from tests.test_syncjob_run import make_remote, make_store, run_cli

pytestmark = pytest.mark.django_db
MiB = 1024 * 1024
WEDNESDAY_10 = datetime(2026, 11, 25, 10, 0)
WEDNESDAY_20 = datetime(2026, 11, 25, 20, 0)
SATURDAY_10 = datetime(2026, 11, 28, 10, 0)


def test_dialog_creates_rule(admin_client, s3_server, s3_bucket):
    make_remote(s3_server, s3_bucket)
    page = admin_client.get("/traffic-control/add/", HTTP_HX_REQUEST="true").content.decode()
    assert "Add: Traffic Control Rule" in page and "Time frames" in page
    response = admin_client.post("/traffic-control/add/", {
        "name": "office-hours", "rate_out": "2MiB", "burst_out": "4MiB",
        "timeframes": "mon..fri 08:00-18:00\nsat 09:00-12:00", "remotes": ["s3-test"], "comment": "keep the line free"})
    assert response.status_code == 302
    rule = TrafficControlRule.objects.get()
    assert rule.rate_out == 2 * MiB and rule.burst_out == 4 * MiB
    assert rule.timeframes == ["mon..fri 08:00-18:00", "sat 09:00-12:00"]
    assert rule.remote_names() == ["s3-test"]
    html = admin_client.get("/traffic-control/").content.decode()
    assert "office-hours" in html and "2.00 MiB/s" in html and "mon..fri 08:00-18:00" in html


@pytest.mark.parametrize("field,value,message", [
    ("timeframes", "mon..fri 08:00-25:00", "invalid time frame"),
    ("timeframes", "someday 08:00-09:00", "invalid time frame"),
    ("rate_out", "lots", "invalid rate"),
    ("rate_out", "", "This field is required"),
    ("name", "a", "Name must be 3-32 characters"),
])
def test_dialog_rejects_bad_values(admin_client, field, value, message):
    data = {"name": "rule1", "rate_out": "1MiB", "timeframes": "mon..fri 08:00-18:00", field: value}
    response = admin_client.post("/traffic-control/add/", data)
    assert response.status_code == 400
    html = response.content.decode()
    assert f'data-field="{field}">' in html and message in html
    assert not TrafficControlRule.objects.exists()


def test_cli_create_list_remove():
    out = run_cli("traffic-control", "create", "nightly", "--rate-out", "50MiB",
                  "--timeframe", "22:00-06:00", "--comment", "fast at night")
    assert "created traffic-control rule 'nightly'" in out
    listing = run_cli("traffic-control", "list")
    assert "nightly" in listing and "50MiB" in listing and "22:00-06:00" in listing and "all" in listing
    with pytest.raises(CommandError) as exc:
        run_cli("traffic-control", "create", "bad-rule", "--rate-out", "1MiB", "--timeframe", "mon..fry")
    assert exc.value.returncode == 2 and str(exc.value).startswith("timeframe: invalid time frame")
    with pytest.raises(CommandError) as exc:
        run_cli("traffic-control", "create", "bad-rule", "--rate-out", "1MiB", "--remote", "nope")
    assert exc.value.returncode == 2 and str(exc.value).startswith("remote:")
    assert TrafficControlRule.objects.count() == 1
    run_cli("traffic-control", "remove", "nightly")
    assert not TrafficControlRule.objects.exists()


def test_run_rate_is_min_of_job_and_active_rules(tmp_path, s3_server, s3_bucket):
    make_store(tmp_path, backups=0)
    remote = make_remote(s3_server, s3_bucket)
    other = make_remote(s3_server, s3_bucket, remote_id="other-remote")
    run_cli("sync-job", "create", "offsite", "--store", "store1", "--remote", "s3-test", "--rate-out", "10MiB")
    run_cli("traffic-control", "create", "office", "--rate-out", "1MiB", "--timeframe", "mon..fri 08:00-18:00")
    run_cli("traffic-control", "create", "generous", "--rate-out", "100MiB")  # always, above the job's rate
    run_cli("traffic-control", "create", "other-only", "--rate-out", "64KiB", "--remote", "other-remote")
    job = SyncJob.objects.get()

    rules = rate_rules(job, remote)
    assert effective_rate(rules, WEDNESDAY_10, job.rate_out) == 1 * MiB       # office hours win
    assert effective_rate(rules, WEDNESDAY_20, job.rate_out) == 10 * MiB      # job's own rate
    assert effective_rate(rules, SATURDAY_10, job.rate_out) == 10 * MiB
    assert effective_rate(rate_rules(job, other), SATURDAY_10, job.rate_out) == 64 * 1024

    # a job without its own limit gets the active rule's rate, or none at all
    run_cli("traffic-control", "remove", "generous")
    run_cli("sync-job", "update", "offsite", "--delete", "rate-out")
    job.refresh_from_db()
    rules = rate_rules(job, remote)
    assert effective_rate(rules, WEDNESDAY_10, job.rate_out) == 1 * MiB
    assert effective_rate(rules, SATURDAY_10, job.rate_out) is None
    limiter, text = build_limiter(job, remote, now=WEDNESDAY_10)
    assert limiter is not None and "traffic control" in text
