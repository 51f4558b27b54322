"""The task system: every long operation runs as a Task with a log (docs/DESIGN.md, "Tasks").

Apps register task functions with @task_function. A function takes a TaskContext as its
first argument (the engines' Reporter protocol: log, warn, progress, check_abort; plus the
task, its UPID and user) and JSON-able keyword arguments; what it returns (a dict, or None)
is stored as the task's JSON `result`. `run()` is the one way to start one: queued for a
Celery worker once the caller's transaction commits, or `inline=True` in the calling process
(the command line), streaming the log. Either way one run per (worker type, worker id) at a
time, enforced by an flock that dies with the process, so a killed task leaves no stale lock.
"""
import fcntl
import logging
import os
import re
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Callable

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

# The Reporter protocol is the engines' (the one import of an engine here, docs/DESIGN.md).
from datastores.engine.report import Reporter, TaskAborted
from pbsweb import tasklog
from pbsweb.models import Task
from pbsweb.notify import notify_task_finished
from pbsweb.registry import registry
from pbsweb.upid import new_upid

log = logging.getLogger(__name__)


def task_function(func: Callable) -> Callable:
    """Register a function that tasks may run, under `module.name`."""
    registry.task_function(f"{func.__module__}.{func.__name__}", func)
    return func


def resolve_function(name: str) -> Callable:
    """The registered function `module.name` (apps register theirs when Django starts)."""
    try:
        return registry.task_functions[name]
    except KeyError:
        raise KeyError(f"unknown task function {name}") from None


class TaskContext(Reporter):
    """What a task function gets: the task, its log, progress, and a stop request as TaskAborted.

    Engines see only the Reporter methods; the task function also reads `task`, `upid`, `user`."""

    DB_INTERVAL = 1.0  # seconds between progress/abort round trips to the database

    def __init__(self, task: Task, writer: tasklog.TaskLogWriter, echo=None):
        self.task = task
        self.writer = writer
        self.echo = echo
        self.warnings = 0
        self._last_db = 0.0
        self._pending_progress: tuple[float, str] | None = None

    @property
    def upid(self) -> str:
        return self.task.upid

    @property
    def user(self) -> str:
        return self.task.user

    def log(self, msg: str) -> None:
        text = self.writer.write(msg)
        if self.echo:
            self.echo.write(text)
            self.echo.flush()

    def warn(self, msg: str) -> None:
        self.warnings += 1
        self.log(f"WARN: {msg}")

    def progress(self, fraction: float, text: str = "") -> None:
        self._pending_progress = (max(0.0, min(1.0, fraction)), text[:255])
        self._sync_db()

    def check_abort(self) -> None:
        self._sync_db()
        if self.task.abort_requested:
            raise TaskAborted("task aborted")

    def _sync_db(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_db < self.DB_INTERVAL:
            return
        self._last_db = now
        fields = {"heartbeat": timezone.now()}
        if self._pending_progress is not None:
            fields["progress"], fields["progress_text"] = self._pending_progress
            self._pending_progress = None
        Task.objects.filter(pk=self.task.pk).update(**fields)
        self.task.abort_requested = Task.objects.filter(pk=self.task.pk).values_list(
            "abort_requested", flat=True).first() or False


def _lock_path(worker_type: str, worker_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{worker_type}-{worker_id}")
    return Path(settings.DATA_DIR) / "locks" / f"{safe}.lock"


class JobLock:
    """Exclusive, non-blocking flock per job; released when the process dies."""

    def __init__(self, worker_type: str, worker_id: str):
        self.path = _lock_path(worker_type, worker_id)
        self.fd = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            return False
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def queue_for(store: str) -> str:
    """The Celery queue of a datastore's tasks: settings.DATASTORES_TASK_QUEUE, a name or a
    template with {store} (one queue per datastore, on the node that holds its disk); blank:
    the default queue."""
    return settings.DATASTORES_TASK_QUEUE.format(store=store) if store else ""


def create_task(function: str, worker_type: str, worker_id: str, user: str, arguments: dict | None = None,
                *, store: str = "", job: str = "", queue: str = "") -> Task:
    """The Task row of a run, not yet started (run() starts it; tests start it themselves)."""
    resolve_function(function)
    now = timezone.now()
    upid = new_upid(settings.NODE_NAME, worker_type, worker_id, user, int(now.timestamp()))
    return Task.objects.create(
        upid=str(upid), node=upid.node, worker_type=worker_type, worker_id=worker_id, user=user,
        starttime=now, function=function, arguments=arguments or {}, queue=queue, store=store, job=job,
    )


def run(function: str, worker_type: str, worker_id: str, user: str, arguments: dict | None = None, *,
        store: str = "", job: str = "", inline: bool = False, echo=sys.stdout,
        private: dict | None = None) -> Task:
    """Start a task: the one entry for the console, the API, the scheduler and the command line.

    `store` and `job` say which datastore and job the task belongs to (the task history's and
    dashboard's filters; a store's tasks go to its queue). Queued, it reaches a Celery worker once
    the current transaction commits; `inline`, it runs here, streaming its log to `echo`, and
    `private` arguments (a key, a secret typed into a dialog) reach the function but are never
    stored with the task."""
    task = create_task(function, worker_type, worker_id, user, arguments, store=store, job=job,
                       queue="" if inline else queue_for(store))
    if inline:
        execute(task, echo=echo, private=private)
        task.refresh_from_db()
    else:
        options = {"queue": task.queue} if task.queue else {}
        transaction.on_commit(lambda: celery_app().send_task("pbsweb.tasks.run_task", args=[task.upid], **options))
    return task


def celery_app():
    """The Celery app, loaded when the first task is queued: the command line runs its tasks
    inline and starts without Celery (docs/DESIGN.md §1)."""
    from pbsweb.celery import app  # heavy (celery, kombu): lazy, docs/DESIGN.md §1
    return app


HEARTBEAT_INTERVAL = 15  # seconds
HEARTBEAT_TIMEOUT = 120  # a running task silent this long died with its process


class Heartbeat(threading.Thread):
    """Stamps the task while its process lives, however long an engine call blocks."""

    def __init__(self, task_pk: int):
        super().__init__(daemon=True, name=f"heartbeat-{task_pk}")
        self.task_pk = task_pk
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(HEARTBEAT_INTERVAL):
                Task.objects.filter(pk=self.task_pk, state=Task.RUNNING).update(heartbeat=timezone.now())
        finally:
            connection.close()


def reap_dead_tasks(now=None) -> list[Task]:
    """Mark running tasks whose heartbeat lapsed as failed (their worker or CLI was killed)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=HEARTBEAT_TIMEOUT)
    dead = list(Task.objects.filter(state=Task.RUNNING, heartbeat__lt=cutoff))
    for task in dead:
        status = (f"task died unexpectedly: no heartbeat from node {task.node} "
                  f"since {task.heartbeat:%Y-%m-%d %H:%M:%S} UTC")
        if Task.objects.filter(pk=task.pk, state=Task.RUNNING).update(
                state=Task.ERROR, status=status, endtime=now):
            writer = tasklog.TaskLogWriter(task.log_path)
            writer.write(f"TASK ERROR: {status}")
            writer.close()
            task.refresh_from_db()
            _notify(task)
    return dead


def execute(task: Task, echo=None, private: dict | None = None) -> None:
    """Run a created task to its end, writing the final TASK line and state."""
    writer = tasklog.TaskLogWriter(task.log_path)
    context = TaskContext(task, writer, echo=echo)
    lock = JobLock(task.worker_type, task.worker_id)
    # The node that executes the task (a worker machine), not the one that created it.
    task.node = settings.NODE_NAME
    Task.objects.filter(pk=task.pk).update(state=Task.RUNNING, heartbeat=timezone.now(), node=task.node)
    heartbeat = Heartbeat(task.pk)
    heartbeat.start()
    state, status, result = Task.ERROR, "unknown", None
    try:
        if task.abort_requested or Task.objects.filter(pk=task.pk, abort_requested=True).exists():
            raise TaskAborted("task aborted")
        if not lock.acquire():
            raise TaskError(f"another {registry.describe(task.worker_type, task.worker_id)} task is running")
        result = resolve_function(task.function)(context, **task.arguments, **(private or {}))
        if context.warnings:
            state, status = Task.WARNING, f"WARNINGS: {context.warnings}"
        else:
            state, status = Task.OK, "OK"
    except TaskAborted as exc:
        status = str(exc) or "task aborted"
    except Exception as exc:  # every failure ends the task with its message, never a traceback
        result = getattr(exc, "result", None)
        status, expected = user_message(exc)
        if not expected:
            log.exception("task %s failed", task.upid)
    finally:
        heartbeat.stopped.set()
        heartbeat.join()
        lock.release()
        final = f"TASK {status}" if state != Task.ERROR else f"TASK ERROR: {status}"
        context.log(final)
        writer.close()
        Task.objects.filter(pk=task.pk).update(
            state=state, status=status, endtime=timezone.now(),
            progress=1.0 if state != Task.ERROR else None,
            result=result if isinstance(result, dict) else {},
        )
        _notify(task)


def _notify(task: Task) -> None:
    """Tell the notification targets; a failing notification never fails the task."""
    try:
        notify_task_finished(task)
    except Exception:  # noqa: BLE001
        log.warning("notification for task %s failed", task.upid, exc_info=True)


class TaskError(Exception):
    """A failure whose message tells the user what went wrong; no traceback is logged.
    `result`: the figures of the work done before it failed (stored as the task's result)."""

    def __init__(self, message: str, result: dict | None = None):
        super().__init__(message)
        self.result = result


def user_message(exc: Exception) -> tuple[str, bool]:
    """One line for the task log, and whether the error was an expected, user-facing one."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    expected = isinstance(exc, (OSError, ValueError, *registry.user_errors))
    if expected:
        return text or type(exc).__name__, True
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__), False


def request_stop(task: Task) -> None:
    """Ask a running task to stop; a queued one is ended at once."""
    Task.objects.filter(pk=task.pk).update(abort_requested=True)
    if task.state == Task.QUEUED:
        updated = Task.objects.filter(pk=task.pk, state=Task.QUEUED).update(
            state=Task.ERROR, status="task aborted", endtime=timezone.now())
        if updated:
            writer = tasklog.TaskLogWriter(task.log_path)
            writer.write("TASK ERROR: task aborted")
            writer.close()
