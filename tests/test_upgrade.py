"""An install made with the previous release upgrades in place (`git pull`, `make run`, which runs
`migrate`): the database is built with the previous release's migrations and filled through the
models as they were then; migrating to whatever migrations exist now keeps every remote (its
secret still decrypts), sync job, task and task log, and a sync run afterwards uploads nothing.

PREVIOUS_RELEASE names the newest migration of each app in that release (main before issue 17).
The target is every leaf of the migration graph, so migrations added since are all exercised; each
must be reversible (a RunPython with `reverse_code`, RunPython.noop if nothing needs undoing), as
this test first migrates the test database back to the previous release."""
import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from datastores.engine.backup import run_backup
from datastores.engine.datastore import Datastore as EngineStore
from datastores.engine.report import ListReporter
from pbsweb import tasklog
from pbsweb.models import Task
from pbsweb.secretbox import encrypt_secret, ensure_key
from pbsweb.upid import new_upid
from remotes.engine.client import make_s3_client
from remotes.models import Remote
from syncjobs.engine.bucket import Bucket
from syncjobs.engine.push import PushOptions, push_sync
from syncjobs.models import SyncJob
from syncjobs.tasks import open_inventory
from tests.test_restore_fresh_install import run_cli

PREVIOUS_RELEASE = [
    ("datastores", "0002_datastoreusage"),
    ("pbsweb", "0003_task_job_index"),
    ("remotes", "0001_initial"),
    ("syncjobs", "0002_drills"),
]
SECRET = "testing"  # moto's; the sync after the upgrade signs its requests with the decrypted secret
LOG_LINES = ["Starting datastore sync job 's3-old:bkt:store1:s3-old-job'", "uploaded 9 objects", "TASK OK"]


@pytest.fixture
def executor(transactional_db):
    """The test database at the previous release's schema; back at the newest afterwards."""
    executor = MigrationExecutor(connection)
    executor.migrate(PREVIOUS_RELEASE)
    executor.loader.build_graph()
    yield executor
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def _objects(s3_client, bucket) -> dict:
    """Every object in the bucket with what a re-upload would change."""
    out = {}
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            out[o["Key"]] = (o["ETag"], o["LastModified"])
    return out


def test_previous_release_upgrades_in_place(executor, tmp_path, s3_server, s3_client, s3_bucket):
    ensure_key()
    old = executor.loader.project_state(PREVIOUS_RELEASE).apps
    remote_fields = dict(remote_id="s3-old", provider="other", endpoint=s3_server.url, bucket=s3_bucket,
                         region="us-east-1", access_key="testing", path_style=True)

    # The previous release's data: a datastore with a backup, a remote, a sync job, its last task.
    engine = EngineStore.create(tmp_path / "ds")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"kept across the upgrade\n" * 1000)
    run_backup(engine, "host", "web01", [("root.tar", src)], backup_time=1_790_000_000)
    store = old.get_model("datastores", "Datastore").objects.create(name="store1", path=str(engine.path))
    remote = old.get_model("remotes", "Remote").objects.create(
        **remote_fields, secret_key_encrypted=encrypt_secret(SECRET), comment="off-site")
    upid = new_upid("pbs1", "syncjob", "s3-old:" + s3_bucket + ":store1:s3-old-job", "root@pam",
                    int(timezone.now().timestamp()))
    task = old.get_model("pbsweb", "Task").objects.create(
        upid=str(upid), node=upid.node, worker_type=upid.worker_type, worker_id=upid.worker_id, user=upid.user,
        state="ok", status="OK", endtime=timezone.now())
    log = tasklog.TaskLogWriter(tasklog.log_path(settings.TASK_LOG_DIR, str(upid), upid.pstart))
    for line in LOG_LINES:
        log.write(line)
    log.close()
    old.get_model("syncjobs", "SyncJob").objects.create(
        job_id="s3-old-job", store=store, remote=remote, remote_store="store1", schedule="daily",
        remove_vanished=True, last_task=task, comment="nightly off-site")
    # What that release's sync left in the bucket and in the local inventory: the engines' formats
    # (docs/FORMAT.md) are the same before and after, so the engine stands in for the old code.
    cfg = Remote(**remote_fields).config(secret_key=SECRET, write_ca=False)
    client = make_s3_client(cfg)
    inventory = open_inventory(None, cfg, "store1")
    try:
        first = push_sync(engine, Bucket(client, s3_bucket, "store1"), inventory, PushOptions(), ListReporter())
    finally:
        inventory.close()
    assert first.objects_transferred > 0 and not first.snapshots_failed
    bucket_before = _objects(s3_client, s3_bucket)

    # `make run` after `git pull`: migrate to every migration there is now.
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    remote = Remote.objects.get(remote_id="s3-old")
    assert (remote.secret_key, remote.endpoint, remote.bucket, remote.comment) == (
        SECRET, s3_server.url, s3_bucket, "off-site")
    job = SyncJob.objects.select_related("store", "remote", "last_task").get(job_id="s3-old-job")
    assert (job.store.name, job.store.path, job.remote.remote_id, job.remote_store, job.schedule,
            job.remove_vanished, job.comment) == ("store1", str(engine.path), "s3-old", "store1", "daily",
                                                  True, "nightly off-site")
    assert job.last_task.upid == str(upid)
    task = Task.objects.get(upid=str(upid))
    assert (task.state, task.status, task.user) == ("ok", "OK", "root@pam")
    shown = run_cli("task", "log", str(upid))
    assert [line.split(": ", 1)[1] for line in shown.splitlines()] == LOG_LINES

    # A sync run after the upgrade finds everything in place: nothing uploaded, the bucket unchanged.
    out = run_cli("sync-job", "run", "s3-old-job")
    assert "Summary: uploaded nothing" in out, out
    job.refresh_from_db()
    assert (job.last_bytes, job.last_objects, job.last_chunks) == (0, 0, 0)
    assert _objects(s3_client, s3_bucket) == bucket_before
