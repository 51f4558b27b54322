"""`sync-job run ID` against the moto S3 server: the bucket holds the
datastore's layout (marker, manifest, indexes, chunks), the task log has the
summary, and a second run uploads nothing and says why.

The helpers here (a datastore with one real backup, an S3 remote on the moto
server) are shared by the other sync-job test modules."""
import io
import random

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from datastores.engine.backup import run_backup
from datastores.engine.datastore import Datastore as EngineStore
from datastores.models import Datastore
from pbsweb.models import Task
from remotes.models import Remote, RemoteUsage
from syncjobs.models import SyncJob

T0 = 1_790_000_000


def make_tree(path, seed=1):
    """A small directory tree: some random (incompressible) and some text files."""
    rnd = random.Random(seed)
    (path / "etc").mkdir(parents=True)
    (path / "etc" / "hostname").write_text("web01\n")
    (path / "data.bin").write_bytes(rnd.randbytes(96 * 1024))
    (path / "notes.txt").write_text("backup me\n" * 500)
    return path


def make_store(tmp_path, name="store1", backups=1):
    """A datastore (configured and on disk) with `backups` real snapshots of host/web01."""
    path = tmp_path / f"ds-{name}"
    engine = EngineStore.create(path)
    for i in range(backups):
        src = make_tree(tmp_path / f"src-{name}-{i}", seed=i)
        run_backup(engine, "host", "web01", [("root.tar", src)], backup_time=T0 + i * 3600)
    return Datastore.objects.create(name=name, path=str(path))


def make_remote(s3_server, bucket, remote_id="s3-test", **extra):
    from pbsweb.secretbox import ensure_key
    ensure_key()
    remote = Remote(remote_id=remote_id, provider="other", endpoint=s3_server.url, bucket=bucket,
                    region="us-east-1", access_key="testing", path_style=True, **extra)
    remote.secret_key = "testing"
    remote.save()
    return remote


def bucket_keys(s3_client, bucket, prefix=""):
    keys = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def run_cli(*args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_run_uploads_backup_then_nothing(tmp_path, s3_server, s3_client, s3_bucket):
    store = make_store(tmp_path)
    make_remote(s3_server, s3_bucket)
    run_cli("sync-job", "create", "daily-s3-sync", "--store", "store1", "--remote", "s3-test",
            "--remote-store", "backups", "--schedule", "0 2 * * *", "--remove-vanished", "true")

    out = run_cli("sync-job", "run", "daily-s3-sync")

    keys = bucket_keys(s3_client, s3_bucket)
    snap = "backups/host/web01/2026-09-21T14:13:20Z"
    assert "backups/.pbsweb-datastore.json" in keys
    assert f"{snap}/index.json.blob" in keys
    assert f"{snap}/root.tar.didx" in keys
    assert f"{snap}/catalog.blob" not in keys  # local only
    chunks = [k for k in keys if k.startswith("backups/.chunks/")]
    digests = store.engine().chunk_digests(store.engine().list_snapshots()[0])
    assert chunks and {k.rsplit("/", 1)[1] for k in chunks} == digests

    task = Task.objects.get(worker_type="syncjob")
    assert task.state == Task.OK
    log = open(task.log_path).read()
    assert "Starting datastore sync job 's3-test:backups:store1::daily-s3-sync'" in log
    assert "Summary: uploaded" in log and "1 snapshots synced" in log
    assert log.rstrip().endswith("TASK OK")
    assert "Summary: uploaded" in out  # the CLI streamed the log
    assert "testing" not in log  # no secret (the moto key) in the log

    job = SyncJob.objects.get(job_id="daily-s3-sync")
    assert job.last_task_id == task.pk
    assert job.last_bytes > 0 and job.last_objects == len(keys)
    remote = Remote.objects.get(remote_id="s3-test")
    assert remote.stored_bytes > 0
    usage = RemoteUsage.objects.get(remote=remote, task_upid=task.upid)
    assert usage.put == len(keys)

    out2 = run_cli("sync-job", "run", "daily-s3-sync")
    assert bucket_keys(s3_client, s3_bucket) == keys
    assert "Summary: uploaded nothing - nothing new since the last run" in out2
    job.refresh_from_db()
    assert job.last_bytes == 0 and job.last_objects == 0

    # Resync inventory: a full listing, still nothing to upload
    out3 = run_cli("sync-job", "run", "daily-s3-sync", "--reconcile")
    assert "reconciled inventory with a full listing (requested)" in out3
    assert "uploaded nothing" in out3


@pytest.mark.django_db
def test_failed_run_exits_non_zero(tmp_path, s3_server, s3_client):
    make_store(tmp_path, backups=0)
    make_remote(s3_server, "no-such-bucket-here")
    run_cli("sync-job", "create", "job-missing", "--store", "store1", "--remote", "s3-test",
            "--remote-store", "backups")
    with pytest.raises(CommandError) as exc:
        run_cli("sync-job", "run", "job-missing")
    assert exc.value.returncode == 1
    task = Task.objects.get(worker_type="syncjob")
    assert task.state == Task.ERROR
    assert "no-such-bucket-here" in task.status or "NoSuchBucket" in task.status


@pytest.mark.django_db
def test_empty_datastore_says_why(tmp_path, s3_server, s3_bucket):
    make_store(tmp_path, backups=0)
    make_remote(s3_server, s3_bucket)
    run_cli("sync-job", "create", "empty-job", "--store", "store1", "--remote", "s3-test")
    out = run_cli("sync-job", "run", "empty-job")
    assert "0 snapshots synced - no finished snapshots in the job's scope" in out


@pytest.mark.django_db
def test_schedule_starts_the_job(tmp_path, s3_server, s3_client, s3_bucket):
    """The beat tick starts a due job as a syncjob task (run here in-process)."""
    from datetime import timedelta

    from django.utils import timezone

    from pbsweb.scheduler import run_due_jobs
    from pbsweb.worker import execute
    make_store(tmp_path)
    make_remote(s3_server, s3_bucket)
    run_cli("sync-job", "create", "nightly", "--store", "store1", "--remote", "s3-test", "--schedule", "daily")
    job = SyncJob.objects.get()
    assert job.next_run > timezone.now()
    SyncJob.objects.filter(pk=job.pk).update(next_run=timezone.now() - timedelta(minutes=1))
    started = run_due_jobs()
    assert [t.worker_type for t in started] == ["syncjob"]
    job.refresh_from_db()
    assert job.last_task_id == started[0].pk and job.next_run > timezone.now()
    execute(started[0])
    assert Task.objects.get(pk=started[0].pk).state == Task.OK
    assert any(k.endswith("/index.json.blob") for k in bucket_keys(s3_client, s3_bucket, "store1/"))


@pytest.mark.django_db
def test_pull_job_restores_into_another_datastore(tmp_path, s3_server, s3_bucket):
    source = make_store(tmp_path, "store1", backups=2)
    target_path = tmp_path / "ds-store2"
    EngineStore.create(target_path)
    Datastore.objects.create(name="store2", path=str(target_path))
    make_remote(s3_server, s3_bucket)
    run_cli("sync-job", "create", "push-job", "--store", "store1", "--remote", "s3-test", "--remote-store", "site-a")
    run_cli("sync-job", "run", "push-job")
    run_cli("sync-job", "create", "pull-job", "--store", "store2", "--remote", "s3-test",
            "--remote-store", "site-a", "--direction", "pull", "--transfer-last", "1")
    out = run_cli("sync-job", "run", "pull-job")
    assert "sync datastore 'store2' from remote 's3-test'" in out and "Summary: downloaded" in out
    pulled = EngineStore(target_path).list_snapshots()
    newest = max(source.engine().list_snapshots(), key=lambda r: r.time)
    assert [r.rel_dir for r in pulled] == [newest.rel_dir] and pulled[0].finished
    job = SyncJob.objects.get(job_id="pull-job")
    assert job.last_snapshots == 1 and job.last_bytes > 0


@pytest.mark.django_db
def test_prefix_owned_by_another_datastore_needs_force(tmp_path, s3_server, s3_bucket):
    make_store(tmp_path, "store1")
    make_store(tmp_path, "store2")
    make_remote(s3_server, s3_bucket)
    run_cli("sync-job", "create", "job-one", "--store", "store1", "--remote", "s3-test", "--remote-store", "shared")
    run_cli("sync-job", "create", "job-two", "--store", "store2", "--remote", "s3-test", "--remote-store", "shared")
    run_cli("sync-job", "run", "job-one")
    with pytest.raises(CommandError):
        run_cli("sync-job", "run", "job-two")
    failed = Task.objects.filter(worker_id__endswith="job-two").get()
    assert "belongs to datastore" in failed.status and "force" in failed.status
    run_cli("sync-job", "update", "job-two", "--force", "true")
    out = run_cli("sync-job", "run", "job-two")
    assert "taking over remote prefix" in out and "TASK WARNINGS: 1" in out


@pytest.mark.django_db
def test_remove_vanished_propagates_local_prune(tmp_path, s3_server, s3_client, s3_bucket):
    store = make_store(tmp_path, backups=2)
    make_remote(s3_server, s3_bucket)
    run_cli("sync-job", "create", "mirror", "--store", "store1", "--remote", "s3-test", "--remove-vanished", "true")
    run_cli("sync-job", "run", "mirror")
    engine = store.engine()
    oldest = min(engine.list_snapshots(), key=lambda r: r.time)
    assert f"store1/{oldest.rel_dir}/index.json.blob" in bucket_keys(s3_client, s3_bucket)
    engine.remove_snapshot(oldest)
    out = run_cli("sync-job", "run", "mirror")
    assert f"removed vanished snapshot {oldest.rel_dir}" in out
    assert "Summary: removed 1 vanished snapshots" in out
    assert not any(k.startswith(f"store1/{oldest.rel_dir}/") for k in bucket_keys(s3_client, s3_bucket))
    assert SyncJob.objects.get().last_deleted > 0
