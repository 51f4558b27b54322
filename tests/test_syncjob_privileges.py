"""Issue 16 #2: a change to a sync job or a restore drill is checked against the privileges the
RESULTING job needs, the same check for the dialog, the JSON API and the CLI.

The attacks replayed: Mallory is DatastoreAdmin of store A and holds nothing on the remote.
She edits A's existing push job to point at store B's prefix with force and remove-vanished
(which, run, deleted B's off-site snapshots and took over its marker); the same on a pull job
(which read store C's data into A); and she moves a restore drill to a remote she cannot see.
Each is refused with 403 naming the missing privilege, through all three doors, and nothing
changes: B's objects stay in the bucket after A's job runs.
"""
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from pbsweb.models import AclEntry
from syncjobs.models import DrillJob, SyncJob
from tests.test_syncjob_create import valid_post
from tests.test_syncjob_run import bucket_keys, make_remote, make_store, run_cli

pytestmark = pytest.mark.django_db
MALLORY = "mallory@pbs"


@pytest.fixture
def world(tmp_path, s3_server, s3_client, s3_bucket, django_user_model):
    """Stores A and B on one remote; B's snapshot is off-site under prefix storeB (run by its job)."""
    make_store(tmp_path, "storeA", backups=1)
    make_store(tmp_path, "storeB", backups=1)
    make_remote(s3_server, s3_bucket)
    run_cli("sync-job", "create", "job-a", "--store", "storeA", "--remote", "s3-test", "--remote-store", "storeA")
    run_cli("sync-job", "create", "job-b", "--store", "storeB", "--remote", "s3-test", "--remote-store", "storeB")
    run_cli("sync-job", "run", "job-b")
    b_keys = bucket_keys(s3_client, s3_bucket, "storeB/")
    assert any(k.endswith("index.json.blob") for k in b_keys)
    user = django_user_model.objects.create_user(username=MALLORY, password="mallory-password-1")
    AclEntry.objects.create(user=user, path="/datastore/storeA", role="DatastoreAdmin")
    return {"user": user, "b_keys": b_keys, "s3": s3_client, "bucket": s3_bucket}


def _job(job_id="job-a"):
    return SyncJob.objects.select_related("store", "remote").get(job_id=job_id)


def _snapshot(job_id="job-a"):
    j = _job(job_id)
    return (j.store.name, j.remote.remote_id, j.remote_store, j.direction, j.force, j.remove_vanished, j.comment)


def _cli_refused(*args) -> str:
    with pytest.raises(CommandError) as exc:
        call_command(*args, "--auth-id", MALLORY, stdout=io.StringIO(), stderr=io.StringIO())
    assert exc.value.returncode == 1
    return str(exc.value)


def _api_put(client, job_id, body):
    return client.put(f"/api2/json/config/sync/{job_id}", json.dumps(body), content_type="application/json")


def _form_edit(job: SyncJob, **changes) -> dict:
    data = valid_post(id=job.job_id, store=job.store.name, remote=job.remote.remote_id,
                      remote_store=job.remote_store, direction=job.direction, remove_vanished="",
                      group_filter="", rate_out="", schedule="")
    data.update(changes)
    return data


def test_push_job_retargeted_at_another_stores_prefix_is_refused(world, client):
    client.force_login(world["user"])
    before = _snapshot()
    attack = {"remote-store": "storeB", "force": True, "remove-vanished": True}

    api = _api_put(client, "job-a", attack)
    assert api.status_code == 403
    assert api.json()["errors"]["permission"] == "permission check failed: Remote.DatastoreBackup on /remote/s3-test"

    form = client.post("/sync-jobs/job-a/edit/", _form_edit(_job(), remote_store="storeB", force="on",
                                                              remove_vanished="on"))
    assert form.status_code == 403
    assert form.content.decode() == "permission check failed: Remote.DatastoreBackup on /remote/s3-test"
    assert form["Content-Type"].startswith("text/plain")

    cli = _cli_refused("sync-job", "update", "job-a", "--remote-store", "storeB", "--force", "true",
                       "--remove-vanished", "true")
    assert "Remote.DatastoreBackup on /remote/s3-test" in cli

    assert _snapshot() == before
    # A's job runs as it was: B's off-site copy and its marker are untouched
    run_cli("sync-job", "run", "job-a")
    assert bucket_keys(world["s3"], world["bucket"], "storeB/") == world["b_keys"]


def test_even_a_comment_edit_needs_the_remote_privilege(world, client):
    """As PBS: the resulting job is checked as a whole, whatever the edit changes."""
    client.force_login(world["user"])
    assert _api_put(client, "job-a", {"comment": "hello"}).status_code == 403
    AclEntry.objects.create(user=world["user"], path="/remote/s3-test", role="RemoteSyncPushOperator")
    assert _api_put(client, "job-a", {"comment": "hello"}).status_code == 200
    assert _job().comment == "hello"


def test_remove_vanished_needs_prune_and_force_needs_modify_on_the_remote(world, client):
    AclEntry.objects.create(user=world["user"], path="/remote/s3-test", role="RemoteSyncPushOperator")
    client.force_login(world["user"])
    response = _api_put(client, "job-a", {"remote-store": "storeB", "remove-vanished": True})
    assert response.status_code == 403
    assert "Remote.DatastorePrune on /remote/s3-test" in response.json()["errors"]["permission"]
    response = _api_put(client, "job-a", {"force": True})
    assert response.status_code == 403
    assert "Remote.DatastoreModify on /remote/s3-test" in response.json()["errors"]["permission"]
    form = client.post("/sync-jobs/job-a/edit/", _form_edit(_job(), remove_vanished="on"))
    assert form.status_code == 403 and b"Remote.DatastorePrune" in form.content
    assert "Remote.DatastorePrune" in _cli_refused("sync-job", "update", "job-a", "--remove-vanished", "true")
    assert not _job().remove_vanished and not _job().force
    # a create is checked the same way
    response = client.post("/api2/json/config/sync", json.dumps({
        "id": "new-a", "store": "storeA", "remote": "s3-test", "remote-store": "storeB", "remove-vanished": True}),
        content_type="application/json")
    assert response.status_code == 403 and "Remote.DatastorePrune" in response.json()["errors"]["permission"]
    assert not SyncJob.objects.filter(job_id="new-a").exists()
    # with the privileges a remote datastore admin has, the same edit goes through
    AclEntry.objects.filter(user=world["user"], path="/remote/s3-test").update(role="RemoteDatastoreAdmin")
    assert _api_put(client, "job-a", {"remove-vanished": True, "force": True}).status_code == 200
    assert _job().remove_vanished and _job().force


def test_pull_job_retargeted_at_another_prefix_is_refused(world, client):
    run_cli("sync-job", "create", "pull-a", "--store", "storeA", "--remote", "s3-test", "--remote-store", "storeA",
            "--direction", "pull")
    client.force_login(world["user"])
    before = _snapshot("pull-a")
    api = _api_put(client, "pull-a", {"remote-store": "storeB"})
    assert api.status_code == 403
    assert api.json()["errors"]["permission"] == "permission check failed: Remote.Read on /remote/s3-test"
    form = client.post("/sync-jobs/pull-a/edit/", _form_edit(_job("pull-a"), remote_store="storeB"))
    assert form.status_code == 403 and form.content.decode().endswith("Remote.Read on /remote/s3-test")
    assert "Remote.Read on /remote/s3-test" in _cli_refused("sync-job", "update", "pull-a", "--remote-store",
                                                            "storeB")
    # turning a push job into a pull is checked as a new pull job
    assert "Remote.Read" in _api_put(client, "job-a", {"sync-direction": "pull"}).json()["errors"]["permission"]
    assert _snapshot("pull-a") == before and _job().direction == "push"
    # B's snapshots never reached store A
    assert [s.backup_id for s in _job().store.engine().list_snapshots("")] == ["web01"]
    assert len(_job().store.engine().list_snapshots("")) == 1


def test_cli_without_auth_id_acts_as_root(world):
    run_cli("sync-job", "update", "job-a", "--remove-vanished", "true")
    assert _job().remove_vanished


def test_drill_moved_to_a_remote_the_user_cannot_see_is_refused(world, client, s3_server, s3_bucket):
    make_remote(s3_server, s3_bucket, remote_id="hidden")
    run_cli("drill", "create", "drill-1", "--remote", "s3-test")
    AclEntry.objects.create(user=world["user"], path="/remote/s3-test", role="RemoteAdmin")
    client.force_login(world["user"])
    form = {"id": "drill-1", "remote": "hidden", "remote_store": "", "sample_size": "2", "schedule": "weekly",
            "enabled": "on", "comment": ""}
    response = client.post("/drills/drill-1/edit/", form)
    assert response.status_code == 403
    assert response.content.decode() == "permission check failed: Remote.Modify on /remote/hidden"
    assert DrillJob.objects.get(job_id="drill-1").remote.remote_id == "s3-test"
    # an edit that stays on her remote goes through
    assert client.post("/drills/drill-1/edit/", {**form, "remote": "s3-test", "comment": "mine"}).status_code == 302
    assert DrillJob.objects.get(job_id="drill-1").comment == "mine"
    # creating one on the hidden remote: refused through the dialog and the CLI, nothing saved
    AclEntry.objects.create(user=world["user"], path="/remote", role="RemoteAdmin", propagate=False)
    response = client.post("/drills/add/", {**form, "id": "drill-2"})
    assert response.status_code == 403 and b"Remote.Modify on /remote/hidden" in response.content
    assert "Remote.Modify on /remote/hidden" in _cli_refused("drill", "create", "drill-3", "--remote", "hidden")
    assert not DrillJob.objects.filter(job_id__in=["drill-2", "drill-3"]).exists()
