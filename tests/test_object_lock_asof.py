"""Pull and restore straight from a bucket `--as-of` a time (issue 12, docs/DESIGN.md §3): after
someone holding the key deleted every key and overwrote the manifests, a pull as of a time before
the attack into a fresh datastore and a direct restore as of that time both give the identical
tree, without changing the bucket; a time before the first push is refused naming the option.
Against moto's server with an Object Lock bucket (syncjobs.engine.asof: one ListObjectVersions,
GETs by version id)."""
import re
import json
import time
import uuid
from datetime import datetime, timezone

import pytest

from pbsweb.models import Task
from remotes.models import Remote
from tests.test_object_lock_recover import attack
from tests.test_restore_fresh_install import (SNAP, all_objects, backed_up_store, cli_error, make_remote, push,
                                              run_cli, tree_state)

EARLY = "2020-01-01T00:00:00Z"  # before the first push


@pytest.fixture
def attacked(tmp_path, s3_server, s3_client, db):
    """A pushed datastore, then the attack; (source tree, as-of time before the attack, bucket)."""
    bucket = f"asof-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    _, src = backed_up_store(tmp_path)
    remote = make_remote(s3_server.url, bucket)
    Remote.objects.filter(pk=remote.pk).update(object_lock_days=7)
    push()
    time.sleep(1.1)  # S3 times are whole seconds
    as_of = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    time.sleep(1.1)
    attack(s3_server.url, bucket)
    assert set(all_objects(s3_client, bucket)) == {"backups/README-RANSOM.txt"}
    return src, as_of, bucket


@pytest.mark.django_db
def test_pull_and_direct_restore_as_of_before_the_attack(tmp_path, s3_client, attacked):
    src, as_of, bucket = attacked
    run_cli("datastore", "create", "store2", str(tmp_path / "new-install" / "store2"))
    run_cli("sync-job", "create", "pull-job", "--direction", "pull", "--store", "store2",
            "--remote", "s3-test", "--remote-store", "backups", "--remove-vanished", "true")

    # bad times name the option and start nothing; a push job takes no --as-of
    assert str(cli_error("sync-job", "run", "pull-job", "--as-of", "yesterday")) \
        .startswith("--as-of: 'yesterday' is not a time")
    assert str(cli_error("sync-job", "run", "push-job", "--as-of", as_of)) \
        .startswith("--as-of: only a pull job reads the bucket as of a time")
    assert str(cli_error("remote", "restore", "s3-test", "backups", SNAP, "root.tar", str(tmp_path / "x"),
                         "--as-of", "soon")).startswith("--as-of: 'soon' is not a time")
    assert not Task.objects.filter(worker_type="reader").exists()

    # before the first push: a clear error naming the option and the time
    error = str(cli_error("remote", "restore", "s3-test", "backups", SNAP, "root.tar", str(tmp_path / "x"),
                          "--as-of", EARLY))
    assert error.startswith(f"--as-of 2020-01-01T00:00:00+00:00: s3://{bucket}/backups held no finished "
                            "snapshot at that time (its first snapshot was written at "), error
    assert error.endswith(", later)")
    error = str(cli_error("sync-job", "run", "pull-job", "--as-of", EARLY))
    task = Task.objects.filter(worker_type="syncjob").latest("starttime")
    assert task.state == "error" and task.status.startswith("as-of 2020-01-01T00:00:00+00:00: ")
    assert "held no finished snapshot at that time" in task.status and "task failed" in error
    assert not (tmp_path / "new-install" / "store2" / "host").exists()

    # as of now (after the attack) the bucket holds nothing: the snapshot does not exist then
    error = str(cli_error("remote", "restore", "s3-test", "backups", SNAP, "root.tar", str(tmp_path / "x"),
                          "--as-of", datetime.now(timezone.utc).isoformat()))
    assert error.startswith("--as-of ") and "every snapshot manifest was deleted by then" in error

    # what the prefix held then: `remote content --as-of` (now it lists nothing)
    assert str(cli_error("remote", "content", "s3-test", "--as-of", as_of)).startswith("--remote-store: required")
    out = run_cli("remote", "content", "s3-test", "--remote-store", "backups", "--as-of", as_of)
    assert f"s3://{bucket}/backups as of {as_of}:" in out and SNAP in out
    assert str(cli_error("remote", "content", "s3-test", "--remote-store", "backups", "--as-of", EARLY)) \
        .startswith("--as-of 2020-01-01T00:00:00+00:00: ")

    # pull as of before the attack into a fresh datastore, then restore: the identical tree
    out = run_cli("sync-job", "run", "pull-job", "--as-of", as_of)
    assert f"as of {as_of}" in out and f"sync snapshot {SNAP}" in out and "TASK OK" in out
    assert "remove-vanished no (reading as of a time" in out
    # one listing of the versions, no write: 1 LIST (ListObjectVersions), 0 PUT, 0 DELETE
    assert "requests: 0 PUT, 1 LIST, 0 HEAD, " in out and ", 0 DELETE;" in out
    run_cli("catalog", "rebuild", "store2")
    target = tmp_path / "restored-from-pull"
    run_cli("restore", "store2", SNAP, "root.tar", str(target))
    assert tree_state(target) == tree_state(src)

    # restore straight from the bucket as of that time: the identical bytes
    target = tmp_path / "restored-direct"
    out = run_cli("remote", "restore", "s3-test", "backups", SNAP, "root.tar", str(target), "--as-of", as_of)
    assert f"as of {as_of}" in out and "TASK OK" in out and "requests: 0 PUT, " in out and ", 0 DELETE;" in out
    assert tree_state(target) == tree_state(src)
    assert Task.objects.filter(worker_type="reader").latest("starttime").arguments["as_of"] == as_of

    # reading the past changed nothing in the bucket
    assert set(all_objects(s3_client, bucket)) == {"backups/README-RANSOM.txt"}


@pytest.mark.django_db
def test_console_as_of_content_restore_and_pull(tmp_path, admin_client, attacked):
    from urllib.parse import quote
    _, as_of, _ = attacked
    run_cli("datastore", "create", "store2", str(tmp_path / "store2"))
    run_cli("sync-job", "create", "pull-job", "--direction", "pull", "--store", "store2",
            "--remote", "s3-test", "--remote-store", "backups")
    # Content: now the bucket holds no snapshot; as of before the attack it does, restore links carry the time
    html = admin_client.get("/remotes/s3-test/content/?remote_store=backups").content.decode()
    assert 'class="snapshot-row"' not in html and 'name="as_of"' in html
    html = admin_client.get(f"/remotes/s3-test/content/?remote_store=backups&as_of={quote(as_of)}").content.decode()
    assert f'data-snapshot="{SNAP}"' in html and f"as of {as_of}" in html
    assert f"&amp;archive=root.tar&amp;as_of={quote(as_of, safe='')}" in html
    html = admin_client.get("/remotes/s3-test/content/?remote_store=backups&as_of=%3Cb%3Ex").content.decode()
    assert 'data-field="as_of" role="alert">as_of: &#x27;&lt;b&gt;x&#x27; is not a time' in html
    html = admin_client.get(f"/remotes/s3-test/content/?remote_store=backups&as_of={EARLY}").content.decode()
    assert "as_of: as-of 2020-01-01T00:00:00+00:00: " in html and "held no finished snapshot at that time" in html

    # Restore archive as of: the dialog carries the time; a bad one is refused naming the field, no task
    url = f"/remotes/s3-test/content/restore/?remote_store=backups&snapshot={SNAP}&archive=root.tar&as_of={quote(as_of)}"
    html = admin_client.get(url).content.decode()
    assert f'name="as_of" value="{as_of}"' in html
    body = {"remote_store": "backups", "snapshot": SNAP, "archive": "root.tar", "target": str(tmp_path / "t")}
    response = admin_client.post("/remotes/s3-test/content/restore/", {**body, "as_of": EARLY})
    assert response.status_code == 400 and "as_of: as-of 2020-01-01T00:00:00+00:00: " in response.content.decode()
    response = admin_client.post("/remotes/s3-test/content/restore/", body)  # now: the snapshot is gone
    assert response.status_code == 400 and "does not exist" in response.content.decode()
    assert not Task.objects.filter(worker_type="reader").exists()
    response = admin_client.post("/remotes/s3-test/content/restore/", {**body, "as_of": as_of})
    assert response.status_code == 302, re.findall(r'field-error[^<]*<', response.content.decode())
    task = Task.objects.get(worker_type="reader")
    assert response.status_code == 302 and task.arguments["as_of"] == as_of

    # Sync Jobs → Pull as of…: validated, names the field; a push job refuses
    assert "Pull as of…" in admin_client.get("/sync-jobs/").content.decode()
    html = admin_client.get("/sync-jobs/pull-job/run-as-of/").content.decode()
    assert 'name="as_of"' in html and "Pull as of a time: Sync Job pull-job" in html
    response = admin_client.post("/sync-jobs/pull-job/run-as-of/", {"as_of": "<i>later</i>"})
    html = response.content.decode()
    assert response.status_code == 400 and "<i>later</i>" not in html
    assert 'data-field="as_of">&#x27;&lt;i&gt;later&lt;/i&gt;&#x27; is not a time' in html
    response = admin_client.post("/sync-jobs/push-job/run-as-of/", {"as_of": as_of})
    assert 'data-field="as_of">only a pull job reads the bucket as of a time' in response.content.decode()
    assert not Task.objects.filter(worker_type="syncjob", arguments__has_key="as_of").exists()
    response = admin_client.post("/sync-jobs/pull-job/run-as-of/", {"as_of": as_of})
    task = Task.objects.filter(worker_type="syncjob").latest("starttime")
    assert response.status_code == 302 and task.arguments == {"job_id": "pull-job", "as_of": as_of}

    # the API: `as-of` on admin/sync/ID/run
    def api_run(job, **body):
        return admin_client.post(f"/api2/json/admin/sync/{job}/run", json.dumps(body), content_type="application/json")
    response = api_run("pull-job", **{"as-of": "noon"})
    assert response.status_code == 400 and "as-of" in response.json()["errors"]
    response = api_run("push-job", **{"as-of": as_of})
    assert response.status_code == 400 and "only a pull job" in response.json()["errors"]["as-of"]
    upid = api_run("pull-job", **{"as-of": as_of}).json()["data"]
    assert Task.objects.get(upid=upid).arguments == {"job_id": "pull-job", "as_of": as_of}
