"""Creating a sync job: the Add dialog (with field errors inline, nothing
saved), the CLI (one-line errors naming the field, exit 2), and the grids."""
import subprocess
import sys

import pytest
from django.core.management.base import CommandError

from syncjobs.models import SyncJob
from tests.conftest import REPO, service_env
from tests.test_syncjob_run import make_remote, make_store, run_cli

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(tmp_path, s3_server, s3_bucket):
    store = make_store(tmp_path, backups=0)
    remote = make_remote(s3_server, s3_bucket)
    return store, remote


def valid_post(**overrides):
    data = {"id": "offsite", "direction": "push", "store": "store1", "remote": "s3-test", "remote_store": "",
            "ns": "", "max_depth": "", "schedule": "0 2 * * *", "remove_vanished": "on",
            "group_filter": "type:host\nexclude:group:host/scratch", "transfer_last": "",
            "rate_out": "10MiB", "burst_out": "", "workers": "", "enabled": "on", "comment": "to B2",
            "next": "/datastore/store1/sync-jobs/"}
    data.update(overrides)
    return data


def test_add_dialog_creates_job(admin_client, setup):
    dialog = admin_client.get("/sync-jobs/add/?store=store1&direction=push", HTTP_HX_REQUEST="true")
    html = dialog.content.decode()
    assert dialog.status_code == 200
    assert "Add: Sync Job - <span class=\"sync-direction\">Push</span> Direction" in html
    for label in ("Job ID", "Local Datastore", "Remote", "Remote Store", "Local Namespace", "Max. Depth",
                  "Group Filter", "Sync Schedule", "Remove Vanished", "Transfer Last", "Rate Limit",
                  "Parallel uploads", "Direction", "Comment"):
        assert f">{label}:</label>" in html, label

    response = admin_client.post("/sync-jobs/add/", valid_post(), HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert response["HX-Redirect"] == "/datastore/store1/sync-jobs/"
    job = SyncJob.objects.get(job_id="offsite")
    assert job.store.name == "store1" and job.remote.remote_id == "s3-test"
    assert job.remote_store == "store1"  # defaults to the datastore name
    assert job.rate_out == 10 * 1024 * 1024 and job.workers == 8
    assert job.group_filter == ["type:host", "exclude:group:host/scratch"]
    assert job.remove_vanished and job.schedule == "0 2 * * *" and job.next_run is not None

    page = admin_client.get("/datastore/store1/sync-jobs/").content.decode()
    assert 'data-id="offsite"' in page and "0 2 * * *" in page and "never run" in page
    assert "Sync Jobs</a>" in page  # the datastore's tab bar
    assert 'data-id="offsite"' in admin_client.get("/sync-jobs/").content.decode()


@pytest.mark.parametrize("field,value,message", [
    ("id", "x", "Job ID must be 3-32 characters"),
    ("schedule", "every tuesday", "invalid schedule"),
    ("rate_out", "10 parsecs", "invalid rate"),
    ("remote", "nope", "no remote &#x27;nope&#x27;"),
    ("group_filter", "type:pc", "unknown backup type"),
    ("max_depth", "9", "less than or equal to 7"),
])
def test_add_dialog_field_errors(admin_client, setup, field, value, message):
    response = admin_client.post("/sync-jobs/add/", valid_post(**{field: value}))
    assert response.status_code == 400
    html = response.content.decode()
    assert f'data-field="{field}">' in html and message in html
    assert "<dialog" in html and " open" in html
    assert not SyncJob.objects.exists()
    # with htmx the dialog fragment comes back (200 so htmx swaps it) with the error
    response = admin_client.post("/sync-jobs/add/", valid_post(**{field: value}), HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and message in response.content.decode()
    assert not SyncJob.objects.exists()


def test_duplicate_id_refused(admin_client, setup):
    assert admin_client.post("/sync-jobs/add/", valid_post()).status_code == 302
    response = admin_client.post("/sync-jobs/add/", valid_post(comment="again"))
    assert response.status_code == 400 and "already exists" in response.content.decode()
    assert SyncJob.objects.get().comment == "to B2"


def test_edit_and_remove(admin_client, setup):
    admin_client.post("/sync-jobs/add/", valid_post())
    edit = admin_client.get("/sync-jobs/offsite/edit/", HTTP_HX_REQUEST="true").content.decode()
    assert "Edit: Sync Job" in edit and 'value="10MiB"' in edit
    response = admin_client.post("/sync-jobs/offsite/edit/", valid_post(rate_out="", remote_store="backups/a"))
    assert response.status_code == 302
    job = SyncJob.objects.get()
    assert job.rate_out is None and job.remote_store == "backups/a"
    assert admin_client.post("/sync-jobs/offsite/remove/").status_code == 302
    assert not SyncJob.objects.exists()


def test_audit_user_cannot_add(audit_client, setup):
    assert audit_client.post("/sync-jobs/add/", valid_post()).status_code == 403
    assert not SyncJob.objects.exists()
    assert audit_client.get("/sync-jobs/").status_code == 200


def test_cli_create_like_the_guide(setup):
    out = run_cli("sync-job", "create", "daily-s3-sync", "--store", "store1", "--remote", "s3-test",
                  "--remote-store", "backups", "--schedule", "0 2 * * *", "--remove-vanished", "true",
                  "--group-filter", "type:vm", "--group-filter", "regex:^host/web", "--rate-out", "500KiB",
                  "--workers", "4", "--transfer-last", "3", "--ns", "prod", "--max-depth", "1")
    assert "created sync job 'daily-s3-sync'" in out
    job = SyncJob.objects.get()
    assert (job.remote_store, job.ns, job.max_depth, job.transfer_last, job.workers, job.rate_out) == \
        ("backups", "prod", 1, 3, 4, 500 * 1024)
    assert job.group_filter == ["type:vm", "regex:^host/web"]
    listing = run_cli("sync-job", "list")
    assert "┌" in listing and "daily-s3-sync" in listing and "backups" in listing
    assert '"remote-store": "backups"' in run_cli("sync-job", "list", "--output-format", "json")
    run_cli("sync-job", "update", "daily-s3-sync", "--schedule", "daily", "--delete", "rate-out")
    job.refresh_from_db()
    assert job.schedule == "daily" and job.rate_out is None
    assert "daily" in run_cli("sync-job", "show", "daily-s3-sync")
    run_cli("sync-job", "remove", "daily-s3-sync")
    assert not SyncJob.objects.exists()


@pytest.mark.parametrize("args,message", [
    (["--store", "nostore"], "store: no datastore 'nostore'"),
    (["--remote", "noremote"], "remote: no remote 'noremote'"),
    (["--schedule", "25:99"], "schedule: invalid schedule"),
    (["--rate-out", "fast"], "rate-out: invalid rate 'fast'"),
    (["--remove-vanished", "perhaps"], "remove-vanished: expected true or false"),
    (["--direction", "sideways"], "direction: Select a valid choice"),
])
def test_cli_errors_name_the_field(setup, args, message):
    base = {"--store": "store1", "--remote": "s3-test", "--remote-store": "backups"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = ["sync-job", "create", "job1"] + [x for kv in base.items() for x in kv]
    with pytest.raises(CommandError) as exc:
        run_cli(*argv)
    assert exc.value.returncode == 2
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)
    assert not SyncJob.objects.exists()


def test_cli_bad_id_exits_2(transactional_db, tmp_path, s3_server, s3_bucket):
    """The real command line: one line on stderr, exit code 2, nothing saved."""
    make_store(tmp_path, backups=0)
    make_remote(s3_server, s3_bucket)
    proc = subprocess.run([sys.executable, "manage.py", "sync-job", "create", "no!", "--store", "store1",
                           "--remote", "s3-test", "--remote-store", "backups"],
                          cwd=REPO, env=service_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "id: Job ID must be 3-32 characters" in proc.stderr
    assert not SyncJob.objects.exists()


def test_removing_used_remote_is_refused(admin_client, setup):
    run_cli("sync-job", "create", "offsite", "--store", "store1", "--remote", "s3-test")
    from pbsweb.errors import Conflict
    from remotes.services import remove_remote
    with pytest.raises(Conflict, match="offsite"):
        remove_remote(setup[1])


def test_api_config_sync(admin_client, setup):
    import json
    response = admin_client.post("/api2/json/config/sync", json.dumps({
        "id": "api-job", "store": "store1", "remote": "s3-test", "remote-store": "backups",
        "schedule": "daily", "remove-vanished": True, "group-filter": ["type:host"], "rate-out": "1G"}),
        content_type="application/json")
    assert response.status_code == 200, response.content
    job = SyncJob.objects.get()
    assert job.rate_out == 10 ** 9 and job.group_filter == ["type:host"] and job.remove_vanished
    bad = admin_client.post("/api2/json/config/sync", json.dumps({
        "id": "api-job2", "store": "store1", "remote": "s3-test", "rate-out": "quick"}),
        content_type="application/json")
    assert bad.status_code == 400 and "rate-out" in bad.json()["errors"]
    listed = admin_client.get("/api2/json/config/sync").json()["data"]
    assert [j["id"] for j in listed] == ["api-job"] and listed[0]["remote-store"] == "backups"
    put = admin_client.put("/api2/json/config/sync/api-job", json.dumps({"comment": "via API"}),
                           content_type="application/json")
    assert put.status_code == 200
    assert admin_client.get("/api2/json/config/sync/api-job").json()["data"]["comment"] == "via API"
    assert admin_client.delete("/api2/json/config/sync/api-job").status_code == 200
    assert not SyncJob.objects.exists()


def test_grid_rows_fragment_and_show_log(admin_client, setup):
    admin_client.post("/sync-jobs/add/", valid_post())
    rows = admin_client.get("/sync-jobs/?fragment=rows", HTTP_HX_REQUEST="true").content.decode()
    assert rows.lstrip().startswith('<tbody id="syncjob-rows"') and 'data-id="offsite"' in rows
    response = admin_client.get("/sync-jobs/offsite/log/?next=/sync-jobs/", follow=True)
    assert "has not run yet" in response.content.decode()
