"""Tasks run by a real Celery worker on Redis write their log and final status."""
import time

import pytest

from pbsweb import tasklog
from pbsweb.models import Task
from pbsweb.worker import run

pytestmark = pytest.mark.slow


def wait_finished(task: Task, timeout: float = 30) -> Task:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task.refresh_from_db()
        if not task.running:
            return task
        time.sleep(0.2)
    raise AssertionError(f"task {task.upid} still {task.state} after {timeout}s")


def test_worker_runs_task_and_ends_task_ok(celery_worker, admin_client):
    task = run("pbsweb.maintenance.prune_task_history", "taskprune", "", "admin@pbs", {"keep_days": 30})
    task = wait_finished(task)
    assert task.state == Task.OK and task.status == "OK"
    lines = task.log_path.read_text().splitlines()
    assert "removed 0 tasks that ended before" in lines[0]
    assert lines[-1].endswith(": TASK OK")
    assert tasklog.final_status(task.log_path) == "OK"
    page = admin_client.get(f"/tasks/{task.upid}/").content.decode()
    assert "TASK OK" in page


def test_failing_task_ends_task_error_and_page_says_so(celery_worker, admin_client):
    task = wait_finished(run("pbsweb.maintenance.prune_task_history", "taskprune", "", "admin@pbs",
                             {"keep_days": 0}))
    assert task.state == Task.ERROR
    last = task.log_path.read_text().splitlines()[-1]
    assert last.endswith("TASK ERROR: keep-days: must be a whole number, at least 1 (got 0)")
    page = admin_client.get(f"/tasks/{task.upid}/").content.decode()
    assert "Error: keep-days: must be a whole number" in page
    listing = admin_client.get("/tasks/?state=errors").content.decode()
    assert task.upid in listing
