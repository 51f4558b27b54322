"""Pull and restore straight from a bucket `--as-of` a time (issue 12, docs/DESIGN.md §3): after
someone holding the key deleted every key and overwrote the manifests, a pull as of a time before
the attack into a fresh datastore and a direct restore as of that time both give the identical
tree, without changing the bucket; a time before the first push is refused naming the option.
Against moto's server with an Object Lock bucket (syncjobs.engine.asof: one ListObjectVersions,
GETs by version id)."""
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

    # pull as of before the attack into a fresh datastore, then restore: the identical tree
    out = run_cli("sync-job", "run", "pull-job", "--as-of", as_of)
    assert f"as of {as_of}" in out and f"sync snapshot {SNAP}" in out and "TASK OK" in out
    assert "remove-vanished no (reading as of a time" in out
    run_cli("catalog", "rebuild", "store2")
    target = tmp_path / "restored-from-pull"
    run_cli("restore", "store2", SNAP, "root.tar", str(target))
    assert tree_state(target) == tree_state(src)

    # restore straight from the bucket as of that time: the identical bytes
    target = tmp_path / "restored-direct"
    out = run_cli("remote", "restore", "s3-test", "backups", SNAP, "root.tar", str(target), "--as-of", as_of)
    assert f"as of {as_of}" in out and "TASK OK" in out
    assert tree_state(target) == tree_state(src)
    assert Task.objects.filter(worker_type="reader").latest("starttime").arguments["as_of"] == as_of

    # reading the past changed nothing in the bucket
    assert set(all_objects(s3_client, bucket)) == {"backups/README-RANSOM.txt"}
