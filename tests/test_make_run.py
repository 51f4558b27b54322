"""`make run` smoke test: the console answers over HTTPS, the worker and the
scheduler run beside it, and when the supervisor is killed (SIGKILL, not Ctrl-C)
web, worker and beat die with it: nothing of `make run` is left running."""
import os
import signal
import ssl
import subprocess
import time
import urllib.request
import uuid

import pytest

from tests.conftest import REPO, free_port, marked_processes

pytestmark = pytest.mark.slow


def _kill_all(mark):
    for pid, _ in marked_processes(mark):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_make_run_serves_console_and_dies_with_its_supervisor(tmp_path):
    port = free_port()  # 8007 may be taken by a console running on this machine
    mark = f"PBSWEB_SMOKE={uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL",
                                                              "PBSWEB_SQLITE_PATH")}
    env.update(PBSWEB_DATA_DIR=str(tmp_path / "data"), PBSWEB_ADMIN_PASSWORD="smoke-test-pw",
               PBSWEB_PORT=str(port))
    env[mark.split("=")[0]] = mark.split("=")[1]
    proc = subprocess.Popen(["make", "run"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + 90
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/login/", context=context, timeout=5) as r:
                    body = r.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
        assert body is not None, f"console did not answer on https://127.0.0.1:{port}"
        assert "pbsweb Login" in body
        assert (tmp_path / "data" / "proxy.pem").exists()
        assert oct((tmp_path / "data" / "secret.key").stat().st_mode & 0o777) == "0o600"
        # the worker and the scheduler run beside the web server
        deadline = time.monotonic() + 30
        out = b""
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < deadline:
            out += proc.stdout.read() or b""
            if b" ready." in out and b"beat: Starting" in out:
                break
            time.sleep(0.5)
        text = out.decode(errors="replace")
        assert " ready." in text and "beat: Starting" in text, text[-2000:]

        running = marked_processes(mark)
        commands = " ".join(cmd for _, cmd in running)
        assert "gunicorn" in commands and "celery -A pbsweb worker" in commands \
            and "celery -A pbsweb beat" in commands, commands
        supervisor = [pid for pid, cmd in running if "pbsweb.supervisor" in cmd]
        assert len(supervisor) == 1, running
        os.kill(supervisor[0], signal.SIGKILL)
        deadline = time.monotonic() + 45
        while marked_processes(mark) and time.monotonic() < deadline:
            proc.poll()
            time.sleep(0.5)
        left = marked_processes(mark)
        assert left == [], f"still running after the supervisor was SIGKILLed: {left}"
        assert proc.wait(timeout=10) != 0  # make reports its recipe's death
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _kill_all(mark)
        proc.wait(timeout=20)
