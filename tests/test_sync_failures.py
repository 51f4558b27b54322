"""Failures that cannot hide (issue 15): a sync that did not carry a snapshot
ends TASK ERROR and `sync-job run` exits non-zero; a prefix holding chunk
objects but no snapshot manifest is reported as such, never as "nothing new".

Against the moto server; objects are corrupted or removed in the bucket with
a plain S3 client. (Drills: tests/test_drill.py; verify: tests/test_gc_verify.py.)"""
import pytest
from django.core.management.base import CommandError

from datastores.engine.datastore import Datastore as EngineStore
from datastores.models import Datastore
from pbsweb.models import Task
from tests.test_syncjob_run import bucket_keys, make_remote, make_store, run_cli

SNAP = "host/web01/2026-09-21T14:13:20Z"


def _pushed(tmp_path, s3_server, s3_bucket):
    """store1 (one snapshot) pushed to s3://bucket/backups, an empty store2, a pull job into it."""
    make_store(tmp_path, "store1")
    EngineStore.create(tmp_path / "ds-store2")
    Datastore.objects.create(name="store2", path=str(tmp_path / "ds-store2"))
    make_remote(s3_server, s3_bucket)
    run_cli("sync-job", "create", "push-job", "--store", "store1", "--remote", "s3-test", "--remote-store", "backups")
    run_cli("sync-job", "run", "push-job")
    run_cli("sync-job", "create", "pull-job", "--store", "store2", "--remote", "s3-test",
            "--remote-store", "backups", "--direction", "pull")


def _last_task(job_id):
    return Task.objects.filter(worker_id__endswith=job_id).order_by("-id").first()


@pytest.mark.django_db
def test_pull_of_a_corrupt_chunk_ends_in_error_and_exits_non_zero(tmp_path, s3_server, s3_client, s3_bucket):
    _pushed(tmp_path, s3_server, s3_bucket)
    victim = [k for k in bucket_keys(s3_client, s3_bucket, "backups/.chunks/")][0]
    data = bytearray(s3_client.get_object(Bucket=s3_bucket, Key=victim)["Body"].read())
    data[-3] ^= 0xFF
    s3_client.put_object(Bucket=s3_bucket, Key=victim, Body=bytes(data))

    with pytest.raises(CommandError) as exc:
        run_cli("sync-job", "run", "pull-job")
    assert exc.value.returncode == 1 and "sync failed with some errors" in str(exc.value)
    task = _last_task("pull-job")
    assert task.state == Task.ERROR and task.status == "sync failed with some errors"
    assert task.result["failed"] == 1 and task.result["snapshots"] == 0  # the figures of a failed run are kept
    log = task.log_path.read_text()
    assert f"sync snapshot {SNAP} failed, skipped: {victim}: corrupt chunk" in log
    assert f"Summary: snapshot {SNAP} failed: {victim}: corrupt chunk" in log
    assert log.rstrip().endswith("TASK ERROR: sync failed with some errors")
    assert not any(r.finished for r in EngineStore(tmp_path / "ds-store2").list_snapshots())


@pytest.mark.django_db
def test_pull_of_a_missing_chunk_ends_in_error(tmp_path, s3_server, s3_client, s3_bucket):
    _pushed(tmp_path, s3_server, s3_bucket)
    victim = bucket_keys(s3_client, s3_bucket, "backups/.chunks/")[-1]
    s3_client.delete_object(Bucket=s3_bucket, Key=victim)
    with pytest.raises(CommandError) as exc:
        run_cli("sync-job", "run", "pull-job")
    assert exc.value.returncode == 1
    task = _last_task("pull-job")
    assert task.state == Task.ERROR
    assert f"Summary: snapshot {SNAP} failed: object {victim} is missing" in task.log_path.read_text()


@pytest.mark.django_db
def test_push_that_fails_a_snapshot_ends_in_error(tmp_path, s3_server, s3_client, s3_bucket):
    store = make_store(tmp_path, "store1")
    make_remote(s3_server, s3_bucket)
    eng = store.engine()
    digest = sorted(eng.chunk_digests(eng.list_snapshots()[0]))[0]
    path = eng.chunks.path(digest)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    run_cli("sync-job", "create", "push-job", "--store", "store1", "--remote", "s3-test", "--remote-store", "backups")
    with pytest.raises(CommandError) as exc:
        run_cli("sync-job", "run", "push-job")
    assert exc.value.returncode == 1
    task = _last_task("push-job")
    assert task.state == Task.ERROR and task.status == "sync failed with some errors"
    log = task.log_path.read_text()
    assert f"Summary: snapshot {SNAP} failed: local chunk {digest}: CRC mismatch" in log
    assert f"backups/{SNAP}/index.json.blob" not in bucket_keys(s3_client, s3_bucket)


@pytest.mark.django_db
def test_chunks_but_no_snapshot_warns_instead_of_nothing_new(tmp_path, s3_server, s3_client, s3_bucket,
                                                             admin_client):
    _pushed(tmp_path, s3_server, s3_bucket)
    s3_client.delete_object(Bucket=s3_bucket, Key=f"backups/{SNAP}/index.json.blob")
    chunks = len(bucket_keys(s3_client, s3_bucket, "backups/.chunks/"))
    assert chunks > 0
    warning = f"{chunks} chunk objects but no snapshot: s3://{s3_bucket}/backups/"

    out = run_cli("sync-job", "run", "pull-job")  # work was done (a listing) that deserves a look: exit 0
    task = _last_task("pull-job")
    assert task.state == Task.WARNING and task.status == "WARNINGS: 1"
    assert warning in out and "nothing new" not in out
    assert f"Summary: downloaded nothing - {warning}" in out

    html = admin_client.get("/remotes/s3-test/content/?store=backups").content.decode()
    assert warning in html
    assert f"warning: {warning}" in run_cli("remote-content", "s3-test", "--remote-store", "backups")

    # a prefix with no chunks either stays quiet
    for key in bucket_keys(s3_client, s3_bucket, "backups/.chunks/"):
        s3_client.delete_object(Bucket=s3_bucket, Key=key)
    out = run_cli("sync-job", "run", "pull-job")
    assert "chunk objects but no snapshot" not in out and _last_task("pull-job").state == Task.OK
