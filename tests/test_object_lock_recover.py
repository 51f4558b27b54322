"""Recovery after an attack (issue 12): a push to a bucket with Object Lock, then someone holding
the same key deletes every key and overwrites the manifests; `remote recover --as-of` a time
before the attack brings the prefix back, and a pull into a fresh datastore restores the
identical tree. Against moto, which keeps versions and enforces the locks."""
import time
import uuid
from datetime import datetime, timezone

import pytest
from botocore.exceptions import ClientError

from pbsweb.models import Task
from remotes.models import Remote
from tests.conftest import make_test_client
from tests.test_restore_fresh_install import (SNAP, all_objects, backed_up_store, cli_error, make_remote,
                                              push, run_cli, tree_state)


def attack(endpoint, bucket) -> int:
    """What ransomware with the stolen key does: overwrite the manifests, delete every key,
    try to destroy the old versions too. Returns how many version deletions the locks refused."""
    s3 = make_test_client(endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    for key in keys:
        if key.endswith("index.json.blob"):
            s3.put_object(Bucket=bucket, Key=key, Body=b"encrypted by ransomware, pay up")
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
    refused = 0
    for v in s3.list_object_versions(Bucket=bucket).get("Versions", []):
        try:
            s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "AccessDenied"
            refused += 1
    s3.put_object(Bucket=bucket, Key="backups/README-RANSOM.txt", Body=b"send bitcoin")
    return refused


@pytest.mark.django_db
def test_recover_as_of_before_the_attack_then_pull_and_restore(tmp_path, s3_server, s3_client):
    bucket = f"lock-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    ds, src = backed_up_store(tmp_path)
    remote = make_remote(s3_server.url, bucket)
    Remote.objects.filter(pk=remote.pk).update(object_lock_days=7)
    push()
    before = all_objects(s3_client, bucket)
    assert f"backups/{SNAP}/index.json.blob" in before
    time.sleep(1.1)
    as_of = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    time.sleep(1.1)

    refused = attack(s3_server.url, bucket)
    assert refused == len(before)  # every version we wrote is locked
    assert set(all_objects(s3_client, bucket)) == {"backups/README-RANSOM.txt"}

    # bad arguments name the field and start nothing
    assert str(cli_error("remote", "recover", "s3-test", "--as-of", "yesterday", "--remote-store", "backups")) \
        .startswith("--as-of: 'yesterday' is not a time")
    assert str(cli_error("remote", "recover", "s3-test", "--as-of", as_of, "--remote-store", "")) \
        .startswith("--remote-store: required")
    assert not Task.objects.filter(worker_type="s3-recover").exists()

    out = run_cli("remote", "recover", "s3-test", "--as-of", as_of, "--remote-store", "backups")
    assert f"restored {len(before)} objects to their version of {as_of}, hid 1 written later" in out
    assert f"restored snapshot {SNAP}" in out and "TASK OK" in out
    assert all_objects(s3_client, bucket) == before
    task = Task.objects.get(worker_type="s3-recover")
    assert task.result["restored"] == len(before) and task.result["hidden"] == 1
    # the restored copies are locked again
    manifest = f"backups/{SNAP}/index.json.blob"
    assert s3_client.head_object(Bucket=bucket, Key=manifest)["ObjectLockMode"] == "GOVERNANCE"

    # pull into a fresh datastore and restore: the identical tree
    new_path = tmp_path / "new-install" / "restored-store"
    run_cli("datastore", "create", "store2", str(new_path))
    run_cli("sync-job", "create", "restore-job", "--direction", "pull", "--store", "store2",
            "--remote", "s3-test", "--remote-store", "backups")
    out = run_cli("sync-job", "run", "restore-job")
    assert f"sync snapshot {SNAP}" in out
    run_cli("catalog", "rebuild", "store2")
    target = tmp_path / "restored"
    run_cli("restore", "store2", SNAP, "root.tar", str(target))
    assert tree_state(target) == tree_state(src)

    # recovering again to the same time changes nothing
    out = run_cli("remote", "recover", "s3-test", "--as-of", as_of, "--remote-store", "backups")
    assert f"restored 0 objects to their version of {as_of}, hid 0 written later, {len(before) + 1} unchanged" in out


@pytest.mark.django_db
def test_console_recover_dialog(s3_server, admin_client, audit_user):
    from django.test import Client
    audit_client = Client()
    audit_client.force_login(audit_user)
    make_remote(s3_server.url, "some-bucket")
    page = admin_client.get("/remotes/s3-test/").content.decode()
    assert 'href="/remotes/s3-test/recover/">Recover bucket as of…</a>' in page
    assert audit_client.get("/remotes/s3-test/recover/").status_code == 403
    assert audit_client.post("/remotes/s3-test/recover/", {"remote_store": "backups", "as_of": "2026-01-01T00:00:00Z"}
                             ).status_code == 403
    html = admin_client.get("/remotes/s3-test/recover/?remote_store=backups").content.decode()
    assert 'name="remote_store" value="backups"' in html and 'name="as_of"' in html
    # bad input: the field's message, no task, input not echoed as HTML
    response = admin_client.post("/remotes/s3-test/recover/", {"remote_store": "backups", "as_of": "<b>soon</b>"})
    assert response.status_code == 400
    html = response.content.decode()
    assert ('data-field="as_of">&#x27;&lt;b&gt;soon&lt;/b&gt;&#x27; is not a time: give e.g. 2026-11-30T18:00:00Z'
            in html) and "<b>soon</b>" not in html
    response = admin_client.post("/remotes/s3-test/recover/", {"remote_store": "/", "as_of": "2026-01-01T00:00:00Z"})
    assert 'data-field="remote_store">required, the store prefix in the bucket' in response.content.decode()
    assert not Task.objects.filter(worker_type="s3-recover").exists()
    response = admin_client.post("/remotes/s3-test/recover/", {"remote_store": "backups/", "as_of": "2026-01-01 06:30"})
    task = Task.objects.get(worker_type="s3-recover")
    assert response.status_code == 302 and response["Location"] == task.url
    assert task.arguments == {"remote": "s3-test", "remote_store": "backups", "as_of": "2026-01-01T06:30:00+00:00"}
