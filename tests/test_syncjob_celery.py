"""Run now, end to end: the web request queues a task, a real Celery worker
(on Redis) runs the sync, the task ends OK and the bucket holds the snapshot."""
import time
from urllib.parse import quote

from pbsweb.models import Task
from syncjobs.models import SyncJob
from tests.test_syncjob_run import bucket_keys, make_remote, make_store, run_cli


def wait_for_task(upid: str, timeout: float = 90) -> Task:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = Task.objects.get(upid=upid)
        if not task.running:
            return task
        time.sleep(0.3)
    raise AssertionError(f"task {upid} still {Task.objects.get(upid=upid).state} after {timeout}s")


def test_run_now_on_celery_worker(celery_worker, admin_client, tmp_path, s3_server, s3_client, s3_bucket):
    make_store(tmp_path)
    make_remote(s3_server, s3_bucket)
    run_cli("sync-job", "create", "offsite", "--store", "store1", "--remote", "s3-test",
            "--remote-store", "backups")

    response = admin_client.post("/sync-jobs/offsite/run/")
    assert response.status_code == 302 and response["Location"].startswith("/tasks/UPID:")
    upid = Task.objects.get(worker_type="syncjob").upid
    assert upid.split(":")[6] == "syncjob"

    task = wait_for_task(upid)
    log = open(task.log_path).read()
    assert task.state == Task.OK, log + celery_worker.log_path.read_text()[-3000:]
    assert "Summary: uploaded" in log and log.rstrip().endswith("TASK OK")

    keys = bucket_keys(s3_client, s3_bucket, "backups/")
    assert "backups/host/web01/2026-09-21T14:13:20Z/index.json.blob" in keys
    assert any(k.startswith("backups/.chunks/") for k in keys)

    job = SyncJob.objects.get()
    assert job.last_task.upid == upid and job.last_bytes > 0
    page = admin_client.get("/sync-jobs/").content.decode()
    assert f'href="/tasks/{quote(upid, safe=":@")}/"' in page and ">OK<" in page
