"""Prune: the simulator shows keep/remove for the existing snapshots; prune jobs; the CLI and API."""
from io import StringIO

import pytest
from django.core.management import call_command

from datastores.engine.backup import run_backup
from datastores.engine.datastore import Datastore as Eng
from datastores.models import PruneJob
from datastores.services import create_datastore

pytestmark = pytest.mark.django_db

DAY = 86400
BASE = 1764126000  # 2025-11-26T03:00:00Z


@pytest.fixture
def store(tmp_path):
    cfg = create_datastore("prune1", str(tmp_path / "store"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("data")
    eng = Eng(cfg.path)
    for i in range(6):                       # six daily backups, two on the last day
        run_backup(eng, "host", "web01", [("root.tar", src)], backup_time=BASE + i * DAY)
    run_backup(eng, "host", "web01", [("root.tar", src)], backup_time=BASE + 5 * DAY + 3600)
    run_backup(eng, "ct", "200", [("root.tar", src)], backup_time=BASE)
    eng.set_protected(eng.find_snapshot("host/web01/2025-11-26T03:00:00Z"), True)
    return cfg


def test_simulator_shows_keep_and_remove(admin_client, store):
    page = admin_client.get("/datastore/prune1/prune-gc/").content.decode()
    assert "Prune Simulator" in page and "Start Garbage Collection" in page and "Keep Last" in page
    r = admin_client.get("/datastore/prune1/prune-simulate/", {"keep_last": "2"}, HTTP_HX_REQUEST="true")
    html = r.content.decode()
    assert r.status_code == 200 and "<html" not in html
    rows = {line.split('<td class="mono">')[1].split("<")[0]: line for line in html.splitlines()
            if '<td class="mono">' in line}
    assert 'sim-keep' in rows["host/web01/2025-12-01T04:00:00Z"]
    assert 'sim-keep' in rows["host/web01/2025-12-01T03:00:00Z"]
    assert 'sim-remove' in rows["host/web01/2025-11-30T03:00:00Z"]
    assert 'sim-protected' in rows["host/web01/2025-11-26T03:00:00Z"]
    assert 'sim-keep' in rows["ct/200/2025-11-26T03:00:00Z"]          # each group on its own
    assert "4 kept, 4 removed" in html
    # keep-daily 3: the newest of each of the last three days
    html = admin_client.get("/datastore/prune1/prune-simulate/", {"keep_daily": "3"}).content.decode()
    assert "sim-remove" in html and "host/web01/2025-12-01T03:00:00Z</td>" in html
    daily = [line for line in html.splitlines() if "2025-12-01T03:00:00Z" in line and "sim-" in line]
    assert daily and "sim-remove" in daily[0]
    # nothing was removed by simulating
    assert len(Eng(store.path).list_snapshots()) == 8
    bad = admin_client.get("/datastore/prune1/prune-simulate/", {"keep_last": "-3"})
    assert bad.status_code == 400 and "Keep Last" in bad.content.decode()


def test_cli_dry_run_and_prune(store):
    out = StringIO()
    call_command("prune", "prune1", "--keep-last", "1", "--dry-run", stdout=out)
    text = out.getvalue()
    assert "would keep host/web01/2025-12-01T04:00:00Z" in text
    assert "would remove host/web01/2025-12-01T03:00:00Z" in text
    assert "would keep protected host/web01/2025-11-26T03:00:00Z" in text
    assert len(Eng(store.path).list_snapshots()) == 8
    out = StringIO()
    call_command("prune", "prune1", "--keep-last", "1", stdout=out)
    assert "remove host/web01/2025-11-27T03:00:00Z" in out.getvalue() and "TASK OK" in out.getvalue()
    assert sorted(r.name for r in Eng(store.path).list_snapshots()) == [
        "ct/200/2025-11-26T03:00:00Z", "host/web01/2025-11-26T03:00:00Z", "host/web01/2025-12-01T04:00:00Z"]


def test_api_prune_dry_run_then_real(admin_client, store):
    r = admin_client.post("/api2/json/admin/datastore/prune1/prune",
                          {"keep-last": "3", "dry-run": "true", "backup-type": "host", "backup-id": "web01"})
    data = r.json()["data"]
    assert len(data) == 7 and sum(1 for d in data if d["keep"]) == 4            # 3 + protected
    assert len(Eng(store.path).list_snapshots()) == 8
    r = admin_client.post("/api2/json/admin/datastore/prune1/prune", {"keep-last": "x"})
    assert r.status_code == 400 and "keep-last" in r.json()["errors"]
    r = admin_client.post("/api2/json/admin/datastore/prune1/prune",
                          {"keep-last": "3", "backup-type": "host", "backup-id": "web01"})
    assert r.status_code == 200 and len(Eng(store.path).list_snapshots()) == 5


def test_prune_job_dialog_validates_and_adds(admin_client, store):
    r = admin_client.post("/datastore/prune1/prune-jobs/add/", {
        "job_id": "x", "schedule": "not a schedule", "keep_last": "-1", "ns": "../up"})
    assert r.status_code == 400
    errors = r.context["form"].errors
    assert {"job_id", "schedule", "keep_last", "ns"} <= set(errors)
    assert 'id="prune-job-dialog" open' in r.content.decode()
    assert not PruneJob.objects.exists()
    r = admin_client.post("/datastore/prune1/prune-jobs/add/", {
        "job_id": "daily-prune", "schedule": "daily", "keep_last": "3", "keep_daily": "7", "enabled": "on"})
    assert r.status_code == 302
    job = PruneJob.objects.get(job_id="daily-prune")
    assert job.store == store and job.keep_dict() == {"keep_last": 3, "keep_daily": 7} and job.next_run
    page = admin_client.get("/datastore/prune1/prune-gc/").content.decode()
    assert "daily-prune" in page and "keep-last: 3, keep-daily: 7" in page
    group = admin_client.get("/datastore/prune1/prune-group/?ns=&group=host/web01",
                             HTTP_HX_REQUEST="true").content.decode()
    assert "Prune Group host/web01" in group and "<dialog" in group


def test_prune_job_runs_as_a_task_with_pbs_log_lines(store):
    from pbsweb.models import Task
    job = PruneJob.objects.create(job_id="nightly", store=store, schedule="daily", keep_last=2)
    task = job.launch("root@pam", inline=True, echo=None)
    task = Task.objects.get(pk=task.pk)
    log = task.log_path.read_text()
    assert task.state == Task.OK, log
    assert 'Pruning group "host/web01"' in log and "keep protected host/web01/2025-11-26T03:00:00Z" in log
    assert "remove host/web01/2025-11-30T03:00:00Z" in log and log.rstrip().endswith("TASK OK")
    assert len(Eng(store.path).list_snapshots()) == 4
    job.refresh_from_db()
    assert job.last_task_id == task.id
