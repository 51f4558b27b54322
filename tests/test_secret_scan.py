"""Secrets never leak: an S3 secret key and a datastore key passphrase, each distinctive, are
used for real (Test Connection, a sync, a failing sync), then every page and API GET, every
task log, every file under the data directory (the database holds them only Fernet-encrypted)
and the CLI outputs are scanned for them. The secret-encryption key file is mode 0600, and
without it a secret that must be decrypted gives an error naming the file, never plaintext.

Also login/session hardening: sessions expire, CSRF is enforced on every form, and the session
cookie is Secure over HTTPS."""
import http.client
import io
import logging
import os
import re
import shutil
import ssl
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import URLPattern, URLResolver, get_resolver

from pbsweb import secretbox
from tests.conftest import REPO, read_bytes_elsewhere, service_env
from tests.test_syncjob_celery import wait_for_task

SECRET = f"SKsecret{uuid.uuid4().hex}"
PASSPHRASE = f"Pass phrase {uuid.uuid4().hex}"
NEEDLES = [SECRET.encode(), PASSPHRASE.encode()]


def _scan_bytes(data: bytes, where: str) -> list[str]:
    return [f"{where}: contains {'the secret key' if n == NEEDLES[0] else 'the passphrase'}"
            for n in NEEDLES if n in data]


def _scan_tree(root: Path, skip: Path) -> list[str]:
    """Every file under root, except the SQLite database `skip` (and its -wal, -shm), which
    is read by another process (see read_bytes_elsewhere)."""
    found = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if str(p).startswith(str(skip)):
                continue
            try:
                found += _scan_bytes(p.read_bytes(), str(p))
            except (FileNotFoundError, PermissionError, IsADirectoryError):
                pass
    return found


def _url_paths(samples: dict) -> list[str]:
    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                route = prefix + str(p.pattern)
                route = re.sub(r"<int:\w+>", "1", route)
                for key, value in samples.items():
                    for conv in ("str", "path", "slug", "int"):
                        route = route.replace(f"<{conv}:{key}>", value)
                    route = route.replace(f"<{key}>", value)
                if "<" not in route:
                    yield "/" + route.lstrip("^").rstrip("$")
    return sorted(set(walk(get_resolver().url_patterns)))


def cli(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def own_key(settings, tmp_path):
    """This test's own secret-encryption key file and data dir (the session's stay untouched)."""
    settings.PBSWEB_SECRET_KEY_FILE = tmp_path / "data" / "secret.key"
    settings.DATA_DIR = tmp_path / "data"
    settings.PBSWEB_REMOTE_TEST_TIMEOUT = 2
    secretbox.ensure_key()
    return settings.PBSWEB_SECRET_KEY_FILE


def cli_subprocess(*args, ok=True) -> bytes:
    """A CLI command as a user runs it: its stdout and its stderr (logs, errors) together."""
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=service_env(),
                            capture_output=True, timeout=180)
    assert (result.returncode == 0) == ok, (args, result.stdout[-2000:], result.stderr[-2000:])
    return result.stdout + b"\n" + result.stderr


def _https(server):
    return http.client.HTTPSConnection("127.0.0.1", server.port, context=ssl._create_unverified_context(),
                                       timeout=30)


def gunicorn_login(server, username="admin", password="admin-password-1") -> str:
    """Log in through the login form served by gunicorn; the session cookie."""
    conn = _https(server)
    conn.request("GET", "/login/")
    r = conn.getresponse()
    page = r.read().decode()
    csrf = next(c for c in r.headers.get_all("Set-Cookie") if c.startswith("csrftoken=")).split(";")[0]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"username": username, "password": password, "realm": "pbs",
                                   "csrfmiddlewaretoken": token})
    conn = _https(server)  # gunicorn's keep-alive is 2 s: do not count on the first connection
    conn.request("POST", "/login/", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": csrf, "Referer": f"{server.url}/login/"})
    r = conn.getresponse()
    r.read()
    assert r.status == 302, r.status
    return next(c for c in r.headers.get_all("Set-Cookie") if c.startswith("sessionid=")).split(";")[0]


def gunicorn_get(server, path, session_cookie) -> tuple[int, bytes]:
    conn = _https(server)
    conn.request("GET", path, headers={"Cookie": session_cookie})
    r = conn.getresponse()
    return r.status, r.read()


# GET answers other than 200 the scan accepts: routes that only take POST, and pages that
# send the user on (no run yet, an empty form posted back).
NOT_A_PAGE = {405}
REDIRECTS = {"/sync-jobs/job1/log/", "/drills/job1/log/"}
# routes that need a query (the scan also GETs them with one, in `extra`): without it they
# answer (plain, htmx) with these
NEEDS_QUERY = {"/datastore/store1/download/": (400, 400), "/datastore/store1/download-file/": (400, 400),
               "/remotes/remote1/content/restore/": (404, 200)}
# the backup/reader protocol (docs/PROTOCOL.md) takes no session cookie: 401 to the console's
# session; what it sends a client (chunks, indexes, manifests) holds no server secret
PROTOCOL = ("/api2/json/backup/", "/api2/json/reader/")


@pytest.mark.timeout(900)  # ~2.5 min on an idle machine: a worker, gunicorn, 20 CLI processes
@pytest.mark.django_db(transaction=True)
def test_secret_and_passphrase_never_leak(own_key, admin_user, admin_client, celery_worker, web_server,
                                          s3_server, s3_bucket, tmp_path, caplog):
    """Committed data (a real SQLite file shared with a real worker and gunicorn); every
    output scanned: pages (each must be 200), API answers, CLI stdout and stderr, the
    exception of a failing command, task logs, the worker's and gunicorn's logs, this
    process's log records, every file of the data directory and the database file, which
    must hold the secret's Fernet ciphertext (the control: the scan sees the rows)."""
    from pbsweb.models import Task
    from remotes.models import Remote
    from pbsweb.models import NotificationTarget
    from syncjobs.models import DrillJob
    caplog.set_level(logging.INFO)
    outputs = []

    remote_form = {"remote_id": "remote1", "provider": "other", "endpoint": s3_server.url, "bucket": s3_bucket,
                   "region": "us-east-1", "access_key": "testing", "secret_key": SECRET, "path_style": "on",
                   "no_checksum_headers": "on", "min_storage_days": "0"}
    # Test Connection from the Add dialog (the secret travels in the POST), then save.
    r = admin_client.post("/remotes/add/test/", remote_form)
    assert r.status_code == 200, r.content[:500]
    outputs.append(("POST /remotes/add/test/", r.content))
    r = admin_client.post("/remotes/add/", remote_form)
    assert r.status_code in (204, 302), r.content[:500]
    remote = Remote.objects.get(remote_id="remote1")
    assert remote.secret_key == SECRET and SECRET not in remote.secret_key_encrypted
    # a second remote whose endpoint refuses connections: its sync fails
    bad = dict(remote_form, remote_id="deadremote", endpoint="http://127.0.0.1:9")
    assert admin_client.post("/remotes/add/", bad).status_code in (204, 302)

    r = admin_client.post("/datastore/create/", {"name": "store1", "path": str(tmp_path / "store1"),
                                                 "schedule": "daily"})
    assert r.status_code == 302
    r = admin_client.post("/datastore/store1/encryption/generate/", {
        "kdf": "scrypt", "passphrase": PASSPHRASE, "confirm": PASSPHRASE, "hint": "the usual one"})
    assert r.status_code == 302, r.content[:500]
    outputs.append(("POST encryption/generate", r.content))
    src = tmp_path / "src"
    src.mkdir()
    (src / "file.txt").write_text("payload " * 1000)
    outputs.append(("backup", cli_subprocess("backup", "store1", "--id", "h1", f"root.tar:{src}")))

    # Test Connection of the saved remote and a sync run in the Celery worker
    r = admin_client.post("/remotes/remote1/test/", {"write_probe": "on"})
    outputs.append(("POST /remotes/remote1/test/", r.content))
    for job, rem in (("job1", "remote1"), ("job2", "deadremote")):
        r = admin_client.post("/api2/json/config/sync", {"id": job, "store": "store1", "remote": rem,
                                                         "remote-store": "pbs/store1"})
        assert r.status_code == 200, r.content
    r = admin_client.post("/sync-jobs/job1/run/")
    assert r.status_code == 302, r.content[:500]
    for task in Task.objects.filter(worker_type__in=["remotetest", "syncjob"]):
        wait_for_task(task.upid)
    remote.refresh_from_db()
    assert remote.last_test_ok, remote.last_test_message
    assert Task.objects.get(worker_type="syncjob").state == Task.OK
    # the failing sync, from the CLI: its stderr and its exception text
    outputs.append(("sync-job run job2 (fails)", cli_subprocess("sync-job", "run", "job2", ok=False)))
    with pytest.raises(CommandError) as failure:
        call_command("sync-job", "run", "job2", stdout=io.StringIO(), stderr=io.StringIO())
    outputs.append(("the exception of sync-job run job2", str(failure.value).encode() + repr(failure.value).encode()))
    assert Task.objects.filter(worker_type="syncjob", state="error").exists()

    admin_client.post("/api2/json/config/traffic-control", {"name": "rule1", "rate-out": "10MiB"})
    DrillJob.objects.create(job_id="job1", remote=remote)   # the samples below name one id per kind
    NotificationTarget.objects.create(name="store1", address="admin@example.com")
    from datastores.models import Datastore
    eng = Datastore.objects.get(name="store1").engine()
    snapshot = eng.list_snapshots("")[0].name

    # every page and API GET, with real ids: each a 200 (or a POST-only route's 405)
    upid = Task.objects.filter(worker_type="syncjob", state="error").first().upid
    samples = {"upid": upid, "store": "store1", "name": "store1", "remote": "remote1", "id": "job1",
               "job": "job1", "username": "admin@pbs", "rule": "rule1", "node": "localhost",
               "snapshot": snapshot}
    paths = _url_paths(samples)
    extra = ["/remotes/remote1/edit/", "/remotes/deadremote/", "/remotes/add/", "/api2/json/config/remote/deadremote",
             f"/datastore/store1/download/{snapshot}?file=index.json.blob",
             f"/datastore/store1/download-file/{snapshot}?archive=root.tar&path=file.txt",
             "/api2/json/config/sync/job2", "/datastore/store1/encryption/paperkey/"]
    for t in Task.objects.all():
        extra += [f"/tasks/{t.upid}/", f"/tasks/{t.upid}/log/", f"/tasks/{t.upid}/log/download/",
                  f"/api2/json/nodes/localhost/tasks/{t.upid}/log"]
    bad_status = []
    for path in paths + extra:
        if path.startswith(("/logout/", "/static/")):
            continue
        for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
            r = admin_client.get(path, **headers)
            body = b"".join(r.streaming_content) if getattr(r, "streaming", False) else r.content
            outputs.append((f"GET {path} {headers}", body))
            expected = 302 if path.split("?")[0] in REDIRECTS else 401 if path.startswith(PROTOCOL) else 200
            if "?" not in path:
                expected = next((st[bool(headers)] for part, st in NEEDS_QUERY.items() if path.startswith(part)),
                                expected)
            if r.status_code != expected and r.status_code not in NOT_A_PAGE:
                bad_status.append(f"GET {path} {headers}: {r.status_code}, expected {expected}")
    assert not bad_status, "\n".join(bad_status)

    # the same pages served by gunicorn (its log is scanned below)
    session = gunicorn_login(web_server)
    for path in ["/", "/remotes/remote1/", "/remotes/remote1/edit/", "/api2/json/config/remote/remote1",
                 f"/tasks/{upid}/log/"]:
        status, body = gunicorn_get(web_server, path, session)
        assert status == 200, (path, status)
        outputs.append((f"gunicorn GET {path}", body))

    # CLI outputs, stdout and stderr
    for args in (("remote", "list"), ("remote", "list", "--output-format", "json"), ("remote", "show", "remote1"),
                 ("remote", "show", "remote1", "--output-format", "json"), ("remote", "test", "remote1"),
                 ("sync-job", "list"), ("sync-job", "show", "job1"), ("task", "list", "--all"),
                 ("datastore", "list"), ("key", "show", str(Datastore.objects.get(name="store1").key_path))):
        outputs.append((" ".join(args), cli_subprocess(*args)))
    for t in Task.objects.all():
        outputs.append((f"task log {t.upid}", cli_subprocess("task", "log", t.upid)))

    outputs.append(("the Celery worker's log", celery_worker.log_path.read_bytes()))
    outputs.append(("gunicorn's log", web_server.log_path.read_bytes()))
    outputs.append(("this process's log records", caplog.text.encode()))
    found = []
    for where, data in outputs:
        found += _scan_bytes(data, where)
    db_path = Path(django_settings.DATABASES["default"]["NAME"])
    database = b"".join(read_bytes_elsewhere(p) for p in (db_path, Path(f"{db_path}-wal")) if p.exists())
    found += _scan_bytes(database, f"the database {db_path}")
    found += _scan_tree(Path(django_settings.DATA_DIR), skip=db_path)
    found += _scan_tree(Path(django_settings.TASK_LOG_DIR), skip=db_path)
    found += _scan_tree(Path(os.environ["PBSWEB_DATA_DIR"]), skip=db_path)
    found += _scan_tree(tmp_path / "store1", skip=db_path)
    assert not found, "\n".join(found)
    # the control: the committed row is in the file scanned, encrypted
    ciphertext = Remote.objects.get(remote_id="remote1").secret_key_encrypted
    assert ciphertext and ciphertext.encode() in database, "the scan did not see the committed remote row"
    assert (own_key.stat().st_mode & 0o777) == 0o600


@pytest.mark.django_db
def test_without_the_key_file_secrets_fail_clearly(admin_client, own_key, tmp_path, monkeypatch):
    from remotes.models import Remote
    remote = Remote(remote_id="remote1", provider="other", endpoint="http://127.0.0.1:9", bucket="bucket1",
                    region="us-east-1", access_key="AK", path_style=True)
    remote.secret_key = SECRET
    remote.save()
    moved = tmp_path / "moved.key"
    shutil.move(own_key, moved)
    try:
        # the CLI: a usage-style error that names the file, no traceback, no plaintext
        out = io.StringIO()
        with pytest.raises(Exception) as info:
            call_command("remote", "test", "remote1", stdout=out, stderr=io.StringIO())
        text = str(info.value) + out.getvalue()
        assert str(own_key) in text, text
        assert SECRET not in text and "Traceback" not in text
        # the model: ImproperlyConfigured naming the file
        from django.core.exceptions import ImproperlyConfigured
        with pytest.raises(ImproperlyConfigured, match=re.escape(str(own_key))):
            Remote.objects.get(remote_id="remote1").secret_key
        # the web: no 500, the message names the file
        response = admin_client.post("/remotes/remote1/test/", {}, follow=True)
        assert response.status_code < 500
        page = response.content.decode()
        assert SECRET not in page and "Traceback" not in page
        assert str(own_key) in page, page[-3000:]
        response = admin_client.post("/remotes/remote1/test/", {}, HTTP_HX_REQUEST="true")
        assert response.status_code < 500 and str(own_key) in response.content.decode()
    finally:
        shutil.move(moved, own_key)
    assert Remote.objects.get(remote_id="remote1").secret_key == SECRET


@pytest.mark.django_db
def test_key_file_with_loose_mode_is_refused(own_key):
    from django.core.exceptions import ImproperlyConfigured
    os.chmod(own_key, 0o644)
    try:
        with pytest.raises(ImproperlyConfigured, match="0600"):
            secretbox.encrypt_secret("x")
    finally:
        os.chmod(own_key, 0o600)


# -- login and session ----------------------------------------------------------------------------

@pytest.mark.django_db
def test_sessions_expire(client, admin_user, settings):
    from datetime import timedelta

    from django.contrib.sessions.models import Session
    from django.utils import timezone
    assert 0 < settings.SESSION_COOKIE_AGE <= 24 * 3600
    r = client.post("/login/", {"username": "admin", "password": "admin-password-1", "realm": "pbs"})
    assert r.status_code == 302
    cookie = r.cookies[settings.SESSION_COOKIE_NAME]
    assert int(cookie["max-age"]) == settings.SESSION_COOKIE_AGE
    assert client.get("/").status_code == 200
    # the session ages past its lifetime: the next request is sent to the login page
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    r = client.get("/")
    assert r.status_code == 302 and r["Location"].startswith("/login/")


CSRF_POSTS = ["/datastore/create/", "/remotes/add/", "/sync-jobs/add/", "/traffic-control/add/",
              "/access/users/add/", "/access/permissions/add/", "/access/tokens/add/",
              "/datastore/store1/prune-jobs/add/", "/datastore/store1/verify-jobs/add/",
              "/datastore/store1/options/save/", "/datastore/store1/gc/start/", "/datastore/store1/remove/",
              "/remotes/remote1/edit/", "/remotes/remote1/remove/", "/remotes/remote1/test/", "/logout/"]


@pytest.mark.django_db
def test_csrf_enforced_on_every_form(admin_user, tmp_path, settings, own_key):
    from django.test import Client

    from datastores.services import create_datastore
    from remotes.models import Remote
    create_datastore("store1", str(tmp_path / "store1"))
    Remote.objects.create(remote_id="remote1", endpoint="http://127.0.0.1:9", bucket="bucket1",
                          region="us-east-1", access_key="AK", secret_key="x")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    # every POST route of the site, with real ids, plus the main dialogs
    paths = set(CSRF_POSTS) | {p for p in _url_paths({"store": "store1", "remote": "remote1", "name": "store1",
                                                       "id": "x1", "job": "x1", "rule": "x1", "username": "u@pbs",
                                                       "upid": "UPID:n:1:1:0:1:backup:x:u@pbs:", "node": "localhost",
                                                       "snapshot": "host/a/2026-01-01T00:00:00Z"})
                               if not p.startswith(("/api2/", "/static/", "/login/"))}
    for path in sorted(paths):
        r = client.post(path, {"name": "x"})
        assert r.status_code in (403, 405), (path, r.status_code)
        if r.status_code == 403:
            assert b"CSRF" in r.content, path
    assert Remote.objects.count() == 1 and client.get("/").status_code == 200
    # the login form itself needs the token too
    anonymous = Client(enforce_csrf_checks=True)
    assert anonymous.post("/login/", {"username": "admin", "password": "admin-password-1"}).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_https_login_sets_secure_cookies(web_server):
    import http.client
    import ssl
    import urllib.parse
    ctx = ssl._create_unverified_context()
    conn = http.client.HTTPSConnection("127.0.0.1", web_server.port, context=ctx, timeout=15)
    conn.request("GET", "/login/")
    r = conn.getresponse()
    page = r.read().decode()
    cookies = r.headers.get_all("Set-Cookie") or []
    csrf_cookie = next(c for c in cookies if c.startswith("csrftoken="))
    assert "Secure" in csrf_cookie
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    from django.contrib.auth import get_user_model
    admin = get_user_model().objects.get(username="admin@pbs")  # made by firstrun
    admin.set_password("admin-password-1")
    admin.save()
    body = urllib.parse.urlencode({"username": "admin", "password": "admin-password-1", "realm": "pbs",
                                   "csrfmiddlewaretoken": token})
    # a new connection: setting the password above may outlast gunicorn's 2 s keep-alive
    conn = http.client.HTTPSConnection("127.0.0.1", web_server.port, context=ctx, timeout=15)
    conn.request("POST", "/login/", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": csrf_cookie.split(";")[0],
        "Referer": f"{web_server.url}/login/"})
    r = conn.getresponse()
    r.read()
    assert r.status == 302, r.status
    session = [c for c in r.headers.get_all("Set-Cookie") or [] if c.startswith("sessionid=")]
    assert session, r.headers
    assert "Secure" in session[0] and "HttpOnly" in session[0], session[0]
    assert "SameSite=Lax" in session[0] or "SameSite=Strict" in session[0]
