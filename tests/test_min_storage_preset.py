"""A push honours the provider preset's minimum storage days (Wasabi: 90) when the remote's own
setting is unset (Remote.effective_min_storage_days, as the dashboard counts it), docs/DESIGN.md §3
invariant 4: a chunk younger than that is not deleted but deferred and listed."""
import pytest

from datastores.engine.backup import run_backup
from datastores.engine.datastore import Datastore as EngineStore
from remotes.models import Remote
from syncjobs.models import SyncJob
from syncjobs.tasks import push_options
from tests.test_restore_fresh_install import T0, all_objects, backed_up_store, make_remote, make_tree, run_cli


@pytest.mark.django_db
def test_wasabi_preset_defers_deleting_a_young_chunk(tmp_path, s3_server, s3_client, s3_bucket):
    ds, _ = backed_up_store(tmp_path)
    store = EngineStore(ds.path)
    run_backup(store, "host", "db01", [("root.tar", make_tree(tmp_path / "src2", seed=2))], backup_time=T0 + 60)
    remote = make_remote(s3_server.url, s3_bucket)
    Remote.objects.filter(pk=remote.pk).update(provider="wasabi", min_storage_days=0)
    remote.refresh_from_db()
    assert remote.min_storage_days == 0 and remote.effective_min_storage_days == 90
    run_cli("sync-job", "create", "push-job", "--store", "store1", "--remote", "s3-test",
            "--remote-store", "backups", "--remove-vanished", "true")
    assert push_options(SyncJob.objects.get(job_id="push-job")).min_storage_days == 90
    run_cli("sync-job", "run", "push-job")
    before = {k for k in all_objects(s3_client, s3_bucket) if "/.chunks/" in k}

    ref = next(r for r in store.list_snapshots("", recursive=True) if r.backup_id == "db01")
    store.remove_snapshot(ref)
    out = run_cli("sync-job", "run", "push-job")
    assert "removed 1 vanished snapshots, deleted 2 objects" in out  # its manifest and index
    assert "chunk deletions deferred (provider minimum storage 90 days)" in out
    assert " 0 chunk deletions deferred" not in out
    # the chunks only db01 used are still in the bucket, deferred, not deleted
    assert {k for k in all_objects(s3_client, s3_bucket) if "/.chunks/" in k} == before
