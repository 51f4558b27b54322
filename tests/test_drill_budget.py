"""Drills on a budget (issue 13): each run verifies the next slice of the bucket
within a byte or GET budget, so every chunk is verified every K runs; each run
checks every object's presence and size against the inventory by LIST only.
Against the real moto server, counted at tests/s3proxy.py."""
import json
import math

import pytest
from django.core.management.base import CommandError

from datastores.engine.datastore import Datastore
from syncjobs.engine.bucket import Bucket
from syncjobs.engine.drill_budget import drill_slice
from syncjobs.engine.inventory import Inventory, chunk_rel
from syncjobs.engine.push import push_sync
from tests.conftest import make_test_client
from tests.s3proxy import s3proxy  # noqa: F401  (fixture)
from tests.test_sync_push import backup_img

MiB = 1024 * 1024
T0 = 1_790_000_000


def test_budget_covers_every_chunk_in_k_runs_and_list_names_a_deleted_chunk(tmp_path, s3proxy, s3_bucket):
    store = Datastore.create(tmp_path / "ds")
    for i in range(3):   # 3 x 4 chunks of 4 MiB (random data: stored about as large)
        backup_img(store, tmp_path, f"vm{i}", T0, list(range(16 * i, 16 * i + 16)))
    inv = Inventory(tmp_path / "inv.sqlite")
    bucket = Bucket(make_test_client(s3proxy.url), s3_bucket, "store1")
    push_sync(store, bucket, inv)
    total = sum(size for _, _, size in inv.iter_chunks())
    budget = 10 * MiB
    runs = math.ceil(total / budget)
    assert runs == 5   # 12 chunks of ~4 MiB: 2, 3, 2, 3, 2 (a run keeps what the last one left unused)

    seen, cursor, credit = [], "", 0
    for run in range(1, runs + 1):
        s3proxy.reset_counts()
        res = drill_slice(bucket, cursor, budget_bytes=budget, credit=credit, inventory=inv)
        gets = [k.rsplit("/", 1)[1] for k in s3proxy.keys("GET", 200)]
        assert s3proxy.counts["LIST"] == 1 and res.problems == [] and res.runs_per_pass == runs
        assert res.bytes <= budget + credit and len(gets) == res.chunks
        seen += gets
        cursor, credit = res.cursor, res.credit
        assert res.full_pass == (run == runs)
    assert sorted(seen) == sorted(d for d, _, _ in inv.iter_chunks())   # every chunk once in K runs
    assert cursor == ""                                                  # the next pass starts over

    # a chunk deleted behind pbsweb's back: named by the next run's LIST check
    victim = sorted(d for d, _, _ in inv.iter_chunks())[-1]
    make_test_client(s3proxy.url).delete_object(Bucket=s3_bucket, Key=f"store1/{chunk_rel(victim)}")
    res = drill_slice(bucket, "", max_gets=3, inventory=inv)
    assert res.problems == [f"store1/{chunk_rel(victim)}: object is missing (LIST)"]
    assert res.chunks == 3 and res.runs_per_pass == 4   # 11 chunks left, 3 GETs a run


# -- a drill job on a budget: `drill create --budget`, runs, the drill list ----------------------

@pytest.mark.django_db
def test_budget_drill_job(tmp_path, s3proxy, s3_bucket, admin_client):
    from datastores.models import Datastore as StoreModel
    from pbsweb.models import Task
    from syncjobs.models import DrillJob, SyncJob
    from tests.test_syncjob_run import make_remote, run_cli

    engine = Datastore.create(tmp_path / "ds")
    for i in range(3):
        backup_img(engine, tmp_path, f"vm{i}", T0, list(range(16 * i, 16 * i + 16)))
    store = StoreModel.objects.create(name="store1", path=str(engine.path))
    remote = make_remote(s3proxy, s3_bucket)
    SyncJob.objects.create(job_id="push1", store=store, remote=remote, remote_store="store1")
    run_cli("sync-job", "run", "push1")

    for args, message in [
            (("--budget", "10MiB", "--max-gets", "3"), "--max-gets: give a byte budget or a number of GETs, not both"),
            (("--budget", "lots"), "--budget: invalid size 'lots' (e.g. 10GiB, 500MiB)")]:
        with pytest.raises(CommandError) as err:
            run_cli("drill", "create", "drill1", "--remote", "s3-test", "--remote-store", "store1", *args)
        assert str(err.value) == message
    with pytest.raises(CommandError) as err:
        run_cli("drill", "create", "drill1", "--remote", "s3-test", "--budget", "10MiB")
    assert str(err.value) == "--remote-store: a drill on a budget verifies one prefix: name it"
    assert not DrillJob.objects.exists()

    run_cli("drill", "create", "drill1", "--remote", "s3-test", "--remote-store", "store1", "--budget", "10MiB")
    job = DrillJob.objects.get()
    chunk_gets = []
    for run in range(5):
        s3proxy.reset_counts()
        task = job.launch("root@pam", inline=True)
        assert task.state == Task.OK, task.status
        chunk_gets += [k for k in s3proxy.keys("GET", 200) if "/.chunks/" in k]
        job.refresh_from_db()
        assert (job.last_full_coverage is not None) == (run == 4)
    assert len(chunk_gets) == len(set(chunk_gets)) == 12
    today = job.last_full_coverage.astimezone().strftime("%Y-%m-%d")
    assert job.coverage_text() == f"bucket fully verified every 5 runs; last full coverage on {today}"
    assert job.coverage_text() in admin_client.get("/drills/").content.decode()
    assert json.loads(run_cli("drill", "list", "--output-format", "json"))[0]["coverage"] == job.coverage_text()

    victim = [k for k in chunk_gets][0]
    make_test_client(s3proxy.url).delete_object(Bucket=s3_bucket, Key=victim)
    task = job.launch("root@pam", inline=True)
    assert task.state == Task.ERROR and f"{victim}: object is missing (LIST)" in task.status
