"""Verify finds a corrupt chunk and names it; GC and Verify All from the web run as tasks on a
real Celery worker and their results show on the pages."""
import json
import time
from urllib.parse import unquote
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from datastores.engine.datastore import Datastore as Eng
from datastores.models import Datastore, VerifyJob
from datastores.services import create_datastore
from pbsweb.models import Task

T1 = 1764126000
S1 = "host/web01/2025-11-26T03:00:00Z"


def _backup(tmp_path, name):
    cfg = create_datastore(name, str(tmp_path / "store"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"A" * 300000)
    (src / "b").write_bytes(bytes(range(256)) * 2000)
    call_command("backup", name, "--id", "web01", f"root.tar:{src}", "--backup-time", str(T1), stdout=StringIO())
    return cfg


@pytest.mark.django_db
def test_verify_ok_then_corrupt_chunk_fails_and_is_named(tmp_path):
    cfg = _backup(tmp_path, "verify1")
    out = StringIO()
    call_command("verify", "verify1", stdout=out)
    assert "TASK OK" in out.getvalue()
    listing = StringIO()
    call_command("snapshots", "verify1", "--output-format", "json", stdout=listing)
    assert json.loads(listing.getvalue())[0]["verification"]["state"] == "ok"

    eng = Eng(cfg.path)
    digest = sorted(eng.chunk_digests(eng.find_snapshot(S1)))[0]
    chunk = eng.chunks.path(digest)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))

    out = StringIO()
    with pytest.raises(CommandError) as exc:
        call_command("verify", "verify1", stdout=out)
    assert exc.value.returncode == 1
    log = out.getvalue()
    assert digest in log and "TASK ERROR" in log and S1 in log
    listing = StringIO()
    call_command("snapshots", "verify1", stdout=listing)
    assert "failed" in listing.getvalue()
    with pytest.raises(CommandError) as exc:
        call_command("verify", "verify1", "--ignore-verified", "maybe", stdout=StringIO())
    assert exc.value.returncode == 2 and "ignore-verified" in str(exc.value)


def _wait(task_upid, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = Task.objects.get(upid=task_upid)
        if not t.running:
            return t
        time.sleep(0.3)
    raise AssertionError("task did not finish")


def test_gc_and_verify_from_the_web_on_a_worker(celery_worker, admin_client, tmp_path):
    cfg = _backup(tmp_path, "webgc1")
    r = admin_client.post("/datastore/webgc1/gc/start/")
    assert r.status_code == 302 and r["Location"].startswith("/tasks/UPID:")
    task = _wait(unquote(r["Location"].split("/")[2]))
    assert task.state == Task.OK and task.worker_type == "garbage_collection"
    assert Datastore.objects.get(name="webgc1").last_task_id == task.id
    page = admin_client.get("/datastore/webgc1/").content.decode()
    assert "Deduplication Factor" in page and task.upid in page
    prune_gc = admin_client.get("/datastore/webgc1/prune-gc/").content.decode()
    assert "On-Disk Usage" in prune_gc and "OK" in prune_gc

    r = admin_client.post("/datastore/webgc1/verify-jobs/add/", {
        "job_id": "v1", "schedule": "daily", "ignore_verified": "on", "enabled": "on"})
    assert r.status_code == 302 and VerifyJob.objects.filter(job_id="v1", store=cfg).exists()
    r = admin_client.post("/datastore/webgc1/verify-jobs/v1/run/")
    task = _wait(unquote(r["Location"].split("/")[2]))
    assert task.state == Task.OK and task.worker_type == "verificationjob"
    page = admin_client.get("/datastore/webgc1/verify-jobs/").content.decode()
    assert "v1" in page and task.url in page
    content = admin_client.get("/datastore/webgc1/content/").content.decode()
    assert 'state-ok">ok<' in content
    r = admin_client.post("/api2/json/admin/datastore/webgc1/verify", {"ignore-verified": "false"})
    task = _wait(r.json()["data"])
    assert task.state == Task.OK
    r = admin_client.post("/api2/json/admin/datastore/webgc1/gc")
    task = _wait(r.json()["data"])
    assert task.state == Task.OK and "Deduplication factor" in task.log_path.read_text()
    r = admin_client.post("/api2/json/admin/datastore/webgc1/verify", {"outdated-after": "soon"})
    assert r.status_code == 400 and "outdated-after" in r.json()["errors"]


@pytest.mark.django_db
def test_verify_new_verifies_each_new_backup(tmp_path):
    cfg = create_datastore("vnew1", str(tmp_path / "store"), verify_new=True)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("verify me")
    out = StringIO()
    call_command("backup", "vnew1", "--id", "web01", f"root.tar:{src}", "--backup-time", str(T1), stdout=out)
    assert "verify-new is set" in out.getvalue()
    eng = Eng(cfg.path)
    assert eng.load_manifest(eng.find_snapshot(S1)).verify_state["state"] == "ok"
