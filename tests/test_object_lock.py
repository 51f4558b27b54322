"""Object Lock (issue 12, docs/DESIGN.md §3): remote settings, Test Connection's bucket report,
against the real moto server (which enforces Object Lock)."""
import io
import json
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from pbsweb import secretbox
from remotes.engine.config import RemoteConfig
from remotes.engine.connection_test import test_connection
from remotes.models import Remote


def lock_bucket(s3_client, days=None, mode="GOVERNANCE") -> str:
    """A fresh bucket created with Object Lock (and so versioning), optionally a default retention."""
    name = f"lock-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    if days:
        s3_client.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": mode, "Days": days}}})
    return name


def config(endpoint, bucket, **kw) -> RemoteConfig:
    return RemoteConfig(id="locked", endpoint=endpoint, bucket=bucket, region="us-east-1",
                        access_key="testing", secret_key="testing", **kw)


def messages(result) -> list[tuple[str, str]]:
    return [(m.level, m.text) for m in result.messages[1:]]  # after "Connected to …"


# --- Test Connection ---------------------------------------------------------------------------

def test_connection_bucket_without_versioning_refuses_a_lock_period(s3_server, s3_bucket):
    result = test_connection(config(s3_server.url, s3_bucket, object_lock_days=30))
    assert messages(result) == [
        ("info", "Bucket versioning: off."),
        ("error", f"Object Lock days: the bucket '{s3_bucket}' has no Object Lock, so pushes cannot lock "
                  "objects for 30 days. Object Lock can only be turned on when a bucket is created: use a "
                  "new bucket with Object Lock, or set Object Lock days to 0."),
        ("info", "Lifecycle rules: none."),
    ]
    # without a lock period the basic test stays one LIST
    plain = test_connection(config(s3_server.url, s3_bucket))
    assert messages(plain) == [] and plain.details["requests"]["GET"] == 0


def test_connection_bucket_with_object_lock(s3_server, s3_client):
    bucket = lock_bucket(s3_client, days=7, mode="COMPLIANCE")
    result = test_connection(config(s3_server.url, bucket, object_lock_days=30, object_lock_mode="compliance"))
    assert messages(result) == [
        ("info", "Bucket versioning: enabled."),
        ("ok", "Object Lock: enabled (default retention compliance 7 days); every pushed object is locked "
               "30 days (compliance)."),
        ("info", "Lifecycle rules: none."),
    ]
    assert result.details["features"]["object_lock"] is True
    assert result.details["features"]["default_retention"] == "compliance 7 days"
    # the same bucket for a remote without a lock period: deletions will wait
    result = test_connection(config(s3_server.url, bucket), probe_features=True)
    assert ("warning", "Object Lock: enabled (default retention compliance 7 days). Pruned snapshots and "
                       "unused chunks cannot be deleted before their retention ends.") in messages(result)


def test_connection_glacier_lifecycle_rule(s3_server, s3_client, s3_bucket):
    s3_client.put_bucket_lifecycle_configuration(Bucket=s3_bucket, LifecycleConfiguration={"Rules": [
        {"ID": "to-glacier", "Status": "Enabled", "Filter": {"Prefix": ""},
         "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]},
        {"ID": "instant", "Status": "Enabled", "Filter": {"Prefix": "x/"},
         "Transitions": [{"Days": 10, "StorageClass": "GLACIER_IR"}]},
    ]})
    result = test_connection(config(s3_server.url, s3_bucket), probe_features=True)
    assert ("warning", "Lifecycle rules: rule 'to-glacier' moves objects to GLACIER after 30 days. Objects in "
                       "GLACIER or DEEP_ARCHIVE cannot be read at once, so pull and restore fail on them; "
                       "remove the rule or use GLACIER_IR (instant retrieval).") in messages(result)
    assert result.details["features"]["archive_rules"] == ["rule 'to-glacier' moves objects to GLACIER after 30 days"]


# --- settings: CLI, API, validation -------------------------------------------------------------

CREATE = ["create", "locked", "--type", "s3", "--endpoint", "https://s3.eu-central-1.amazonaws.com",
          "--bucket", "pbs-locked", "--region", "eu-central-1", "--access-key", "AKIAEXAMPLE",
          "--secret-key", "Secret-Value-1"]


def remote_cli(*args) -> str:
    out = io.StringIO()
    call_command("remote", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_cli_sets_object_lock_and_names_bad_fields():
    secretbox.ensure_key()
    remote_cli(*CREATE, "--object-lock-days", "30", "--object-lock-mode", "compliance")
    r = Remote.objects.get(remote_id="locked")
    assert (r.object_lock_days, r.object_lock_mode) == (30, "compliance")
    assert r.config().object_lock_days == 30
    remote_cli("update", "locked", "--object-lock-mode", "governance")
    data = json.loads(remote_cli("show", "locked", "--output-format", "json"))
    assert (data["object-lock-days"], data["object-lock-mode"]) == (30, "governance")
    for args, message in ((("--object-lock-days", "-1"), "--object-lock-days: a whole number of days from 0"),
                          (("--object-lock-days", "ten"), "--object-lock-days: expected a whole number of days"),
                          (("--object-lock-mode", "legal-hold"), "--object-lock-mode: one of governance, compliance")):
        with pytest.raises(CommandError) as info:
            remote_cli("update", "locked", *args)
        assert info.value.returncode == 2 and str(info.value).startswith(message), str(info.value)
    r.refresh_from_db()
    assert (r.object_lock_days, r.object_lock_mode) == (30, "governance")  # nothing written


@pytest.mark.django_db
def test_api_object_lock_fields(admin_client):
    secretbox.ensure_key()
    body = {"name": "locked", "type": "s3", "endpoint": "https://s3.eu-central-1.amazonaws.com",
            "bucket": "pbs-locked", "region": "eu-central-1", "access-key": "AKIAEXAMPLE",
            "secret-key": "Secret-Value-1", "object-lock-days": 14, "object-lock-mode": "sealed"}
    resp = admin_client.post("/api2/json/config/remote", json.dumps(body), content_type="application/json")
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"object-lock-mode": "one of governance, compliance"}
    assert not Remote.objects.exists()
    body["object-lock-mode"] = "compliance"
    resp = admin_client.post("/api2/json/config/remote", json.dumps(body), content_type="application/json")
    assert resp.status_code == 200, resp.content
    data = admin_client.get("/api2/json/config/remote/locked").json()["data"]
    assert (data["object-lock-days"], data["object-lock-mode"]) == (14, "compliance")


@pytest.mark.django_db
def test_dialog_object_lock_fields():
    from remotes.forms import RemoteForm
    data = {"remote_id": "locked", "provider": "aws", "endpoint": "https://s3.eu-central-1.amazonaws.com",
            "bucket": "pbs-locked", "region": "eu-central-1", "access_key": "AKIAEXAMPLE",
            "secret_key": "Secret-Value-1", "object_lock_days": "40000", "object_lock_mode": "governance"}
    form = RemoteForm(data)
    assert not form.is_valid()
    assert form.errors["object_lock_days"] == ["Ensure this value is less than or equal to 36500."]
    form = RemoteForm({**data, "object_lock_days": "30"})
    assert form.is_valid(), form.errors
    values = form.values()
    assert (values["object_lock_days"], values["object_lock_mode"]) == (30, "governance")
    assert "object_lock_days" in [f.name for f in form.advanced_fields()]


# --- a sync job to a locked remote: task log and the remote's page ----------------------------

@pytest.mark.django_db
def test_sync_job_to_locked_remote_logs_and_shows_lock_extensions(tmp_path, s3_server, s3_client, admin_client):
    from tests.test_syncjob_run import make_remote, make_store, run_cli
    from pbsweb.models import Task
    bucket = lock_bucket(s3_client)
    make_store(tmp_path)
    make_remote(s3_server, bucket, remote_id="locked", object_lock_days=30, object_lock_mode="compliance")
    run_cli("sync-job", "create", "locked-sync", "--store", "store1", "--remote", "locked",
            "--remote-store", "backups")
    out = run_cli("sync-job", "run", "locked-sync")
    assert "Summary: Object Lock 30 days (compliance): extended 0 locks (0 requests)" in out
    manifest = next(k for k in [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]]
                    if k.endswith("index.json.blob"))
    assert s3_client.head_object(Bucket=bucket, Key=manifest)["ObjectLockMode"] == "COMPLIANCE"
    task = Task.objects.filter(worker_type="syncjob").order_by("-id").first()
    assert task.result["locks_extended"] == 0 and task.result["requests"] > 0
    page = admin_client.get("/remotes/locked/").content.decode()
    assert ("30 days (compliance); the last push extended 0 locks (0 PutObjectRetention requests)"
            in page)


# --- own remote retention: sync-job options -------------------------------------------------------

@pytest.mark.django_db
def test_sync_job_own_remote_retention_options(tmp_path, s3_server, s3_client, s3_bucket):
    from tests.test_syncjob_run import make_remote, make_store, run_cli
    from syncjobs.models import SyncJob
    make_store(tmp_path, backups=3)
    make_remote(s3_server, s3_bucket)
    run_cli("sync-job", "create", "own-ret", "--store", "store1", "--remote", "s3-test",
            "--remote-store", "backups", "--keep-last", "2", "--keep-monthly", "3")
    job = SyncJob.objects.get(job_id="own-ret")
    assert (job.keep_last, job.keep_monthly, job.keep_daily) == (2, 3, None)
    from syncjobs.services import job_privileges
    assert ("Remote.DatastorePrune", "/remote/s3-test") in job_privileges(job)  # it deletes in the bucket
    show = json.loads(run_cli("sync-job", "show", "own-ret", "--output-format", "json"))
    assert (show["keep-last"], show["keep-monthly"]) == (2, 3)
    for args, message in ((("--remove-vanished", "true"), "remove-vanished: the job keeps its own retention in the "
                                                            "bucket (keep-last): turn off remove-vanished"),
                          (("--direction", "pull"), "keep-last: own remote retention is for push jobs"),
                          (("--keep-daily", "0"), "keep-daily: Ensure this value is greater than or equal to 1.")):
        with pytest.raises(CommandError) as info:
            run_cli("sync-job", "update", "own-ret", *args)
        assert info.value.returncode == 2 and str(info.value).startswith(message), str(info.value)
    out = run_cli("sync-job", "run", "own-ret")
    assert "scope: namespace '/'; own remote retention keep-last 2 keep-monthly 3" in out
    assert "own remote retention: 1 local snapshots are not uploaded" in out
    manifests = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]
                 if o["Key"].endswith("index.json.blob")]
    assert len(manifests) == 2
    run_cli("sync-job", "update", "own-ret", "--delete", "keep-last", "--delete", "keep-monthly")
    assert SyncJob.objects.get(job_id="own-ret").remote_keep is None
