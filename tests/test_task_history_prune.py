"""The task history is pruned once a day, by age and by count, logs included."""
from datetime import timedelta

from django.utils import timezone

from pbsweb import maintenance, tasklog
from pbsweb.models import Task
from pbsweb.upid import new_upid
from pbsweb.worker import execute


def make_task(age: timedelta, state=Task.OK) -> Task:
    start = timezone.now() - age
    upid = new_upid("testnode", "backup", f"store1:host/h{age.total_seconds():.0f}", "root@pam",
                    int(start.timestamp()))
    task = Task.objects.create(upid=str(upid), node="testnode", worker_type="backup", worker_id="x",
                               user="root@pam", starttime=start, state=state,
                               endtime=None if state == Task.RUNNING else start + timedelta(seconds=5))
    writer = tasklog.TaskLogWriter(task.log_path)
    writer.write("TASK OK")
    writer.close()
    return task


def test_daily_run_removes_tasks_older_than_the_limit_with_their_logs(db, settings):
    settings.TASK_HISTORY_DAYS, settings.TASK_HISTORY_COUNT = 30, 1000
    old = [make_task(timedelta(days=d)) for d in (31, 45, 400)]
    kept = [make_task(timedelta(days=d)) for d in (1, 29)]
    running = make_task(timedelta(days=60), state=Task.RUNNING)
    prune = maintenance.prune_daily(timezone.now())
    assert prune is not None and prune.worker_type == "taskprune"
    execute(prune)
    prune.refresh_from_db()
    assert prune.state == Task.OK and prune.result == {"removed": 3}
    assert not Task.objects.filter(pk__in=[t.pk for t in old]).exists()
    assert all(not t.log_path.exists() for t in old)
    assert Task.objects.filter(pk__in=[t.pk for t in kept + [running]]).count() == 3
    assert all(t.log_path.exists() for t in kept)
    assert "removed 3 tasks that ended before" in prune.log_path.read_text()
    # once a day: the next tick within 24 hours starts nothing
    assert maintenance.prune_daily(timezone.now() + timedelta(hours=23)) is None
    assert maintenance.prune_daily(timezone.now() + timedelta(hours=25)) is not None


def test_history_keeps_only_the_newest_count(db, settings):
    settings.TASK_HISTORY_DAYS, settings.TASK_HISTORY_COUNT = 365, 3
    tasks = [make_task(timedelta(hours=h)) for h in range(1, 7)]  # newest first
    prune = maintenance.prune_daily(timezone.now())
    execute(prune)
    remaining = set(Task.objects.exclude(pk=prune.pk).values_list("pk", flat=True))
    assert remaining == {t.pk for t in tasks[:3]}
    assert all(not t.log_path.exists() for t in tasks[3:])


def test_task_page_shows_the_history_limits(admin_client, settings):
    settings.TASK_HISTORY_DAYS, settings.TASK_HISTORY_COUNT = 45, 20000
    html = admin_client.get("/tasks/").content.decode()
    assert "Task history is kept 45 days, at most 20,000 tasks" in html
