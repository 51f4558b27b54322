"""A management command whose reader goes away (`manage.py task list | head -1`) stops quietly:
no BrokenPipeError traceback on stderr, exit status 141 (128 + SIGPIPE) as for `ls | head`.
Real pipes: bash runs the command line, `head -1` closes it after one line."""
import shlex
import subprocess
import sys

import pytest
from django.utils import timezone

from pbsweb.models import Task
from pbsweb.tasklog import TaskLogWriter
from pbsweb.upid import new_upid
from tests.conftest import REPO, service_env
from tests.test_restore_fresh_install import run_cli


def _add_task(i: int) -> Task:
    upid = new_upid("n", "prune", f"store{i}", "root@pam", int(timezone.now().timestamp()))
    return Task.objects.create(upid=str(upid), node="n", worker_type=upid.worker_type, worker_id=upid.worker_id,
                               user=upid.user, state=Task.OK, status="OK", endtime=timezone.now())


def _env() -> dict:
    # As in a user's shell: buffered stdout (unbuffered, one large write that meets a closed pipe
    # comes back short instead of failing, which would hide the case under test).
    env = service_env()
    env.pop("PYTHONUNBUFFERED", None)
    return env


def _piped(*argv: str) -> tuple[int, str, str]:
    """Run `manage.py ARGV | head -1`; the command's own exit status, head's output, stderr."""
    command = " ".join(shlex.quote(a) for a in (sys.executable, "manage.py", *argv))
    result = subprocess.run(["bash", "-c", f'{command} | head -1; exit "${{PIPESTATUS[0]}}"'], cwd=REPO,
                            env=_env(), capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.django_db(transaction=True)
def test_task_list_and_log_into_a_closed_pipe_exit_141_without_traceback():
    # More output than a pipe buffers (64 KiB), so the writer meets the closed pipe.
    for i in range(600):
        task = _add_task(i)
    writer = TaskLogWriter(task.log_path)
    for i in range(20_000):
        writer.write(f"line {i} of a long task log")
    writer.close()

    for argv in (["task", "list", "--all", "--limit", "600"], ["task", "log", task.upid]):
        status, out, err = _piped(*argv)
        assert status == 141, (argv, status, err)
        assert err == "", (argv, err)
        assert len(out.splitlines()) == 1, out
    assert _piped("task", "log", task.upid)[1].endswith(": line 0 of a long task log\n")

    # The whole output still goes through when nobody closes the pipe.
    full = subprocess.run([sys.executable, "manage.py", "task", "log", task.upid], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert full.returncode == 0 and full.stdout.count("\n") == 20_000 and full.stderr == ""



@pytest.mark.django_db(transaction=True)
def test_a_task_run_from_the_cli_finishes_when_its_reader_goes_away(tmp_path):
    # `true` exits before Django has even started, so every line the task echoes meets a closed pipe.
    run_cli("datastore", "create", "piped", str(tmp_path / "piped"))
    command = " ".join(shlex.quote(a) for a in (sys.executable, "manage.py", "garbage-collection", "start", "piped"))
    result = subprocess.run(["bash", "-c", f'{command} | true; exit "${{PIPESTATUS[0]}}"'], cwd=REPO, env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 141 and result.stderr == "", (result.returncode, result.stderr)
    task = Task.objects.get(worker_type="garbage_collection", worker_id="piped")
    assert task.state == Task.OK, task.status
    assert task.log_path.read_text().rstrip().endswith("TASK OK")
