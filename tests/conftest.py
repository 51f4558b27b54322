"""Shared fixtures: real servers on loopback, started once per session.

- s3_server: moto's standalone S3 server (a subprocess) on a free port.
- s3_client / s3_bucket: a boto3 client for it and a fresh bucket per test.

Hygiene, enforced here for the whole run:
- with CI set in the environment a skipped test is a failure (nothing the suite
  needs may be silently missing: `make test-deps` installs it);
- every process the run starts inherits RUN_MARK in its environment; at the end
  of the session any such process still alive fails the run (and is killed).
"""
import os
import signal
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.soak.crashpoints import SEED as CRASH_SEED

REPO = Path(__file__).resolve().parent.parent
# Playwright's sync API runs an event loop in this thread; the ORM must still work beside it.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
VENV_BIN = Path(sys.executable).parent
# Inherited by every subprocess (they all copy os.environ): finds the ones left behind.
RUN_MARK_VAR = "PBSWEB_TEST_RUN"
RUN_MARK = f"{RUN_MARK_VAR}={os.getpid()}-{uuid.uuid4().hex[:8]}"
os.environ[RUN_MARK_VAR] = RUN_MARK.split("=", 1)[1]


def stop_process_group(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM the process group `proc` leads (started with start_new_session=True),
    wait for every member to go, then SIGKILL what is left: a celery worker's pool
    children and gunicorn's workers are in the group but are not `proc`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader so it stops counting as a member
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            continue
        break
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


def marked_processes(mark: str = RUN_MARK) -> list[tuple[int, str]]:
    """(pid, command line) of live processes whose environment holds `mark`
    ("NAME=value"; this run's RUN_MARK by default), except this one."""
    mark = mark.encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if mark not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue  # a zombie: already dead, waiting for its parent to reap it
        except OSError:
            continue  # gone meanwhile, or not ours to read
        out.append((int(entry), cmd))
    return out


def _leftover_processes() -> list[str]:
    """This process's leftovers, killed, as report lines ([] when there are none)."""
    deadline = time.monotonic() + 10  # a browser or a worker may still be on its way out
    left = marked_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = marked_processes()
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return [f"  pid {pid}: {cmd[:200]}" for pid, cmd in left]


_LEFTOVERS_FROM_WORKERS: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist: a worker's exit status does not reach the controller, its output does."""
    _LEFTOVERS_FROM_WORKERS.extend(getattr(node, "workeroutput", {}).get("leftover_processes", []))


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when a process it started outlives it (then kill it). Under
    pytest-xdist each worker checks its own processes and hands the list to the
    controller, which fails the run."""
    left = _leftover_processes() + _LEFTOVERS_FROM_WORKERS
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["leftover_processes"] = left
    if not left:
        return
    lines = ["processes started by this test run were still running at its end (now killed):"] + left
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line("\n".join(lines), red=True)
    else:
        print("\n".join(lines), file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config):
    """The pytest-xdist controller runs no test: its workers must not inherit its
    mark (they set their own when they import this module), or its leftover check
    would count the workers themselves, which xdist stops only after that check."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        os.environ.pop(RUN_MARK_VAR, None)


def pytest_report_header(config):
    return f"crash suite seed: CRASH_SEED={CRASH_SEED}"


def _skip_is_failure(report) -> None:
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and CI is set (make test-deps provides what it needs): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _skip_is_failure(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _skip_is_failure(outcome.get_result())


@pytest.fixture(scope="session", autouse=True)
def _fresh_cache(django_db_blocker):
    """Login throttling counts live in the file cache under the data directory: a run
    starts without the failures an earlier run (or the login fuzzing) left there."""
    from django.core.cache import cache
    cache.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class S3Server:
    """A running moto_server; `url` is its endpoint."""

    def __init__(self, tmpdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        moto = shutil.which("moto_server", path=str(VENV_BIN)) or "moto_server"
        env = dict(os.environ)
        self.log_path = tmpdir / "moto.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [moto, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        wait_for_port(self.port, proc=self.proc)

    def reset(self) -> None:
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=5)

    def set_auth(self, enforce: bool) -> None:
        """Turn moto's IAM enforcement on (every request must be signed by a real IAM key) or off."""
        import urllib.request
        body = b"0" if enforce else b"inf"
        # moto reads the body only when it is not sent as a form
        request = urllib.request.Request(f"{self.url}/moto-api/reset-auth", data=body, method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=5)

    def stop(self) -> None:
        stop_process_group(self.proc, timeout=10)
        self._log.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


def make_test_client(endpoint: str, access_key="testing", secret_key="testing", region="us-east-1"):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=region,
        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1},
                      request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"),
    )


@pytest.fixture
def s3_client(s3_server):
    return make_test_client(s3_server.url)


@pytest.fixture
def s3_bucket(s3_client):
    """A fresh, empty bucket name on the moto server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


# --- Redis, a real Celery worker, the web server, a browser ------------------

def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """The machine's Redis on 6379 if one answers, else one we start and stop."""
    if port_open(6379):
        yield "redis://127.0.0.1:6379/13"
        return
    server = shutil.which("redis-server")
    if not server:
        pytest.fail("no Redis on 127.0.0.1:6379 and no redis-server binary (make test installs it)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for_port(port, proc=proc)
    yield f"redis://127.0.0.1:{port}/13"
    stop_process_group(proc, timeout=10)


# Each test session uses its own queue on the shared Redis, so parallel sessions
# on one machine never take each other's tasks.
TEST_QUEUE = f"pbsweb-test-{uuid.uuid4().hex[:8]}"


def service_env(**extra) -> dict:
    """Environment for subprocesses (worker, gunicorn, CLI) that share the test database."""
    from django.conf import settings
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env["PBSWEB_DATA_DIR"] = str(settings.DATA_DIR)
    env["DJANGO_SETTINGS_MODULE"] = "pbsweb.settings"
    env["PBSWEB_QUEUE"] = TEST_QUEUE
    if db["ENGINE"].endswith("sqlite3"):
        env["PBSWEB_SQLITE_PATH"] = str(db["NAME"])
    env.update(extra)
    return env


class Worker:
    """A real `celery worker` subprocess consuming the test broker."""

    def __init__(self, broker_url: str, log_path: Path, queues: str = TEST_QUEUE):
        celery_bin = str(VENV_BIN / "celery")
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [celery_bin, "-A", "pbsweb", "worker", "--loglevel=info", f"--queues={queues}",
             "--concurrency=2", "--pool=prefork", "--without-gossip", "--without-mingle",
             f"--hostname=test-{uuid.uuid4().hex[:6]}@%h"],
            cwd=REPO, env=service_env(CELERY_BROKER_URL=broker_url),
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while b" ready." not in log_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("celery worker did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.2)

    def stop(self):
        stop_process_group(self.proc)  # the pool children too
        self._log.close()


@pytest.fixture(scope="session")
def celery_broker(redis_url):
    """Point this process's Celery app at the test Redis and this session's queue."""
    from pbsweb.celery import app
    app.conf.broker_url = redis_url
    app.conf.task_default_queue = TEST_QUEUE
    app.conf.broker_transport_options = {}
    # Drop connections made with the default (filesystem) broker, if any.
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None
    return redis_url


@pytest.fixture
def celery_worker(celery_broker, transactional_db, tmp_path):
    """A real worker for one test; the test's data is committed (transactional_db)."""
    worker = Worker(celery_broker, tmp_path / "worker.log")
    yield worker
    worker.stop()


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(username="admin@pbs", password="admin-password-1")


@pytest.fixture
def audit_user(django_user_model):
    from pbsweb.models import AclEntry
    user = django_user_model.objects.create_user(username="auditor@pbs", password="audit-password-1")
    AclEntry.objects.create(user=user, path="/", role="Audit")
    return user


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def audit_client(client, audit_user):
    client.force_login(audit_user)
    return client


class WebServer:
    """gunicorn serving the console over HTTPS on a free port, as `make run` does."""

    def __init__(self, log_path: Path, broker_url: str):
        from django.core.management import call_command
        call_command("firstrun", stdout=open(os.devnull, "w"))
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._log = open(log_path, "wb")
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "-c", "pbsweb/gunicorn_conf.py", "pbsweb.wsgi"],
            cwd=REPO, env=service_env(PBSWEB_PORT=str(self.port), PBSWEB_BIND="127.0.0.1",
                                      PBSWEB_WEB_WORKERS="1", CELERY_BROKER_URL=broker_url),
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for_port(self.port, proc=self.proc, timeout=30)

    def stop(self):
        stop_process_group(self.proc, timeout=10)  # the gunicorn workers too
        self._log.close()


@pytest.fixture
def web_server(celery_broker, transactional_db, tmp_path):
    server = WebServer(tmp_path / "gunicorn.log", celery_broker)
    yield server
    server.stop()


OUTPUT_DIR = REPO / "test-output"


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright
    executable = shutil.which("chromium")
    if not executable:
        pytest.fail("Debian's chromium is not installed (make test installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser page; a screenshot of it is saved under test-output/ at the end."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(15000)
    yield pg
    OUTPUT_DIR.mkdir(exist_ok=True)
    try:
        pg.screenshot(path=str(OUTPUT_DIR / f"{request.node.name}.png"), full_page=True)
    finally:
        context.close()


def browser_login(page, server, username="admin", password="admin-password-1"):
    page.goto(f"{server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/")


def read_bytes_elsewhere(path) -> bytes:
    """A file's bytes read by another process. Opening and closing a SQLite database
    file in this process would drop the POSIX locks its open connection holds on it
    (fcntl locks are per process), and SQLite then fails with 'disk I/O error'."""
    return subprocess.run(["cat", str(path)], capture_output=True, check=True).stdout
