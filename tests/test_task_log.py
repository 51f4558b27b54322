"""The task viewer: log lines, live tail by byte offset, stop, history list."""
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from pbsweb import tasklog
from pbsweb.models import Task
from pbsweb.upid import new_upid, parse_upid
from pbsweb.worker import JobLock, TaskError, create_task, execute, request_stop, run, task_function

pytestmark = pytest.mark.django_db(transaction=True)

RELEASE = threading.Event()


@task_function
def _demo_steps(reporter, steps: int = 3, fail: str = "", wait: bool = False) -> None:
    for i in range(steps):
        reporter.log(f"step {i + 1} of {steps}")
        reporter.progress((i + 1) / steps, f"step {i + 1}")
    if wait:
        while not RELEASE.wait(0.05):
            reporter.check_abort()
    if fail:
        raise TaskError(fail)
    reporter.warn("one thing looked odd") if steps == 2 else None


FUNC = f"{__name__}._demo_steps"


def test_upid_round_trip():
    upid = new_upid("pbs1", "syncjob", "s3:bucket:store::job1", "admin@pbs", 0x5CA78B83)
    text = str(upid)
    assert text.startswith("UPID:pbs1:") and ":5CA78B83:syncjob:" in text and text.endswith(":admin@pbs:")
    assert "s3\\x3abucket" in text  # colons in the worker id are escaped
    assert parse_upid(text) == upid


def test_inline_run_streams_log_and_ends_ok(capsys):
    import sys
    task = run(FUNC, "backup", "host/a", "admin@pbs", {"steps": 3}, inline=True, echo=sys.stdout)
    out = capsys.readouterr().out
    assert "step 1 of 3" in out and out.rstrip().endswith("TASK OK")
    assert task.state == Task.OK and task.endtime is not None
    lines = task.log_path.read_text().splitlines()
    # each line: RFC3339 time, colon, message
    assert lines[0].split(": ", 1)[1] == "step 1 of 3"
    assert timezone.datetime.fromisoformat(lines[0].split(": ", 1)[0])


def test_warnings_are_counted():
    task = run(FUNC, "backup", "w", "admin@pbs", {"steps": 2}, inline=True, echo=None)
    assert task.state == Task.WARNING and task.status == "WARNINGS: 1"
    assert task.log_path.read_text().splitlines()[-1].endswith("TASK WARNINGS: 1")


def test_error_message_is_the_last_line():
    task = run(FUNC, "backup", "e", "admin@pbs", {"fail": "disk is full"}, inline=True, echo=None)
    assert task.state == Task.ERROR and task.status == "disk is full"
    assert task.log_path.read_text().splitlines()[-1].endswith("TASK ERROR: disk is full")


def test_one_run_at_a_time_per_job():
    lock = JobLock("backup", "locked")
    assert lock.acquire()
    try:
        task = run(FUNC, "backup", "locked", "admin@pbs", {}, inline=True, echo=None)
        assert task.state == Task.ERROR and "another Backup locked task is running" in task.status
    finally:
        lock.release()
    assert run(FUNC, "backup", "locked", "admin@pbs", {}, inline=True, echo=None).state == Task.OK


def test_stop_request_aborts_running_task():
    RELEASE.clear()
    task = create_task(FUNC, "backup", "stopme", "admin@pbs", {"wait": True})
    thread = threading.Thread(target=execute, args=(task,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while Task.objects.get(pk=task.pk).state != Task.RUNNING and time.monotonic() < deadline:
            time.sleep(0.05)
        request_stop(Task.objects.get(pk=task.pk))
        thread.join(timeout=10)
    finally:
        RELEASE.set()
        thread.join()
    task.refresh_from_db()
    assert task.state == Task.ERROR and task.status == "task aborted"
    assert task.log_path.read_text().splitlines()[-1].endswith("TASK ERROR: task aborted")


def test_log_view_returns_only_new_bytes(admin_client):
    task = create_task(FUNC, "backup", "live", "admin@pbs", {})
    Task.objects.filter(pk=task.pk).update(state=Task.RUNNING)
    writer = tasklog.TaskLogWriter(task.log_path)
    writer.write("first line")
    page = admin_client.get(f"/tasks/{task.upid}/").content.decode()
    assert "first line" in page
    offset = task.log_path.stat().st_size
    writer.write("second line")
    writer.close()
    chunk = admin_client.get(f"/tasks/{task.upid}/log/?start={offset}").content.decode()
    assert "second line" in chunk and "first line" not in chunk
    assert f"start={task.log_path.stat().st_size}" in chunk  # the next poll continues from the end


def test_log_read_from_never_returns_half_lines(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"2026-01-01T00:00:00+00:00: whole\n2026-01-01T00:00:01+00:00: half")
    data, end = tasklog.read_from(path, 0)
    assert data.endswith(b"whole\n") and end == len(data)


def test_task_list_filters_and_paginates(admin_client):
    now = timezone.now()
    for i in range(120):
        upid = new_upid("n", "syncjob" if i % 2 else "prune", f"job{i}", "admin@pbs", int(now.timestamp()))
        Task.objects.create(upid=str(upid), node="n", worker_type=upid.worker_type, worker_id=upid.worker_id,
                            user="admin@pbs", starttime=now - timedelta(minutes=i),
                            endtime=now - timedelta(minutes=i) + timedelta(seconds=5),
                            state=Task.ERROR if i % 10 == 0 else Task.OK, status="boom" if i % 10 == 0 else "OK")
    page = admin_client.get("/tasks/").content.decode()
    assert "Page 1 of 3 (120 tasks)" in page
    assert page.index("Sync Job job1<") < page.index("Sync Job job3<")  # newest first
    errors = admin_client.get("/tasks/?state=errors").content.decode()
    assert "(12 tasks)" in errors and "Error: boom" in errors
    syncs = admin_client.get("/tasks/?type=syncjob&page=2").content.decode()
    assert "Page 2 of 2 (60 tasks)" in syncs and "Prune job" not in syncs


def test_api_task_log_lines(admin_client):
    task = run(FUNC, "backup", "api", "admin@pbs", {"steps": 3}, inline=True, echo=None)
    data = admin_client.get(f"/api2/json/nodes/localhost/tasks/{task.upid}/log?start=1&limit=2").json()
    assert [line["t"].split(": ", 1)[1] for line in data["data"]] == ["step 2 of 3", "step 3 of 3"]
    assert data["total"] == 4 and data["active"] is False
    status = admin_client.get(f"/api2/json/nodes/localhost/tasks/{task.upid}/status").json()["data"]
    assert status["status"] == "OK" and status["upid"] == task.upid


def test_task_whose_process_died_is_marked_failed():
    from pbsweb.worker import reap_dead_tasks
    task = create_task(FUNC, "syncjob", "killed", "admin@pbs", {})
    stale = timezone.now() - timedelta(minutes=5)
    Task.objects.filter(pk=task.pk).update(state=Task.RUNNING, heartbeat=stale)
    fresh = create_task(FUNC, "syncjob", "alive", "admin@pbs", {})
    Task.objects.filter(pk=fresh.pk).update(state=Task.RUNNING, heartbeat=timezone.now())
    assert [t.pk for t in reap_dead_tasks()] == [task.pk]
    task.refresh_from_db()
    assert task.state == Task.ERROR and task.status.startswith("task died unexpectedly: no heartbeat from node")
    assert "TASK ERROR: task died unexpectedly" in task.log_path.read_text()
    assert Task.objects.get(pk=fresh.pk).state == Task.RUNNING


def test_upid_with_slashes_in_worker_id_is_one_url_segment(admin_client):
    task = run(FUNC, "reader", "store1:host/web01/2026-01-01T00:00:00Z", "admin@pbs", {}, inline=True, echo=None)
    assert "/" not in task.upid.split("UPID:")[1]
    assert parse_upid(task.upid).worker_id == "store1:host/web01/2026-01-01T00:00:00Z"
    listing = admin_client.get("/tasks/").content.decode()
    href = listing.split('href="/tasks/UPID')[1].split('"')[0]
    assert admin_client.get("/tasks/UPID" + href).status_code == 200
