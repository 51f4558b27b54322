"""`make run` smoke test: the console answers over HTTPS on port 8007."""
import os
import signal
import ssl
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import REPO, port_open

pytestmark = pytest.mark.slow


def test_make_run_serves_console_on_8007(tmp_path):
    port = 8007 if not port_open(8007) else None
    if port is None:
        pytest.skip("port 8007 is taken by a running console on this machine")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL",
                                                              "PBSWEB_SQLITE_PATH")}
    env.update(PBSWEB_DATA_DIR=str(tmp_path / "data"), PBSWEB_ADMIN_PASSWORD="smoke-test-pw")
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
                with urllib.request.urlopen("https://127.0.0.1:8007/login/", context=context, timeout=5) as r:
                    body = r.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
        assert body is not None, "console did not answer on https://127.0.0.1:8007"
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
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
