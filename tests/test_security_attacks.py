"""The penetration test of issue 16, replayed against the real gunicorn server (HTTPS, as `make run`).

Each attack is sent as an attacker would: raw HTTP from loopback addresses (127.0.0.2, .3, ... stand
for different clients), a logged-in Admin's browser for the reflected XSS, the CLI for the
command-line variants. What held in the penetration test is kept here too (cookies, session
rotation, open redirects, headers, DEBUG off), and a static scan keeps each class closed: no
error body built from input without text/plain, no inline script, event handler or style
attribute in a template (the Content-Security-Policy would block them anyway).
"""
import ast
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from django.conf import settings

from tests.conftest import REPO, browser_login, service_env

pytestmark = pytest.mark.django_db(transaction=True)

XSS = "<img src=x onerror=window.__pwned=1>"
SCRIPT = "<script>window.__pwned=1</script>"


class Http:
    """A tiny HTTPS client with a cookie jar that connects from a chosen loopback address."""

    def __init__(self, server, source="127.0.0.1"):
        self.port, self.source, self.cookies = server.port, source, {}
        self.base = server.url

    def request(self, method, path, body=None, headers=None, host=None):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=60,
                                           context=ssl._create_unverified_context(),
                                           source_address=(self.source, 0))
        headers = dict(headers or {})
        if host is not None:
            headers["Host"] = host
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if isinstance(body, dict):
            body = urlencode(body)
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if method == "POST":
            headers.setdefault("Referer", f"{self.base}/")
            if "csrftoken" in self.cookies:
                headers.setdefault("X-CSRFToken", self.cookies["csrftoken"])
        started = time.monotonic()
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.body = response.read()
        response.elapsed = time.monotonic() - started
        response.text = response.body.decode("utf-8", "replace")
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";")[0]
        conn.close()
        return response

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, data=None, **kw):
        if "csrftoken" not in self.cookies:
            self.get("/login/")
        return self.request("POST", path, body=data or {}, **kw)

    def login(self, username, password):
        self.get("/login/")
        response = self.post("/login/", {"username": username, "password": password, "realm": "pbs"})
        assert response.status == 302, (response.status, response.text[:300])
        return response


def assert_not_reflected(response, *payloads):
    """No HTML answer carries the raw payload, and every answer has the CSP."""
    assert "default-src 'self'" in response.headers.get("Content-Security-Policy", ""), response.getheaders()
    if "text/html" in response.headers.get("Content-Type", ""):
        for payload in payloads:
            assert payload not in response.text, (response.status, response.text[:500])


@pytest.fixture
def people(django_user_model):
    """admin@pbs (superuser), reader@pbs (DatastoreAudit on store1 only), victim1@pbs (Admin)."""
    from pbsweb.models import AclEntry
    admin = django_user_model.objects.create_superuser(username="admin@pbs", password="admin-password-1")
    reader = django_user_model.objects.create_user(username="reader@pbs", password="reader-password-1")
    AclEntry.objects.create(user=reader, path="/datastore/store1", role="DatastoreAudit")
    victim = django_user_model.objects.create_user(username="victim1@pbs", password="victim-password-1")
    AclEntry.objects.create(user=victim, path="/", role="Admin")
    return {"admin": admin, "reader": reader, "victim": victim}


@pytest.fixture
def store(tmp_path):
    """store1 with one snapshot host/h1 holding root.tar."""
    from datastores.engine.backup import run_backup
    from datastores.services import create_datastore
    from pbsweb import secretbox
    secretbox.ensure_key()
    cfg = create_datastore("store1", str(tmp_path / "store1"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("data")
    eng = cfg.engine()
    run_backup(eng, "host", "h1", [("root.tar", src)], backup_time=1767225600)
    return {"cfg": cfg, "snapshot": eng.list_snapshots("")[0].name}


def _token(user, name, role=None, path="/"):
    from pbsweb.apitokens import create_token
    token, secret = create_token(user, name, role=role, path=path)
    return {"Authorization": f"PBSAPIToken={token.tokenid}:{secret}"}


# -- 1. reflected XSS ----------------------------------------------------------------------------

def _reflected_urls(snapshot):
    q = quote(XSS)
    s = quote(SCRIPT)
    return [
        f"/?{q}%00=1",                                                  # NUL-byte check names the key
        f"/?{s}%00=1",
        f"/sync-jobs/add/?store={q}",                                   # 403 text with the store
        f"/datastore/{q}/",                                             # require() on /datastore/<name>
        f"/datastore/store1/download/{snapshot}?file={q}",              # file=
        f"/datastore/store1/download-file/{snapshot}?archive={q}.tar&path={q}",
        f"/datastore/store1/download-file/{snapshot}?archive=root.tar&path={q}",
        f"/datastore/store1/browse/{snapshot}?archive={q}&dir={q}",
        f"/tasks/?type={q}&state={q}",
        f"/tasks/{q}/log/?start={q}",
        f"/remotes/{q}/",
        f"/login/?next={q}",
    ]


def test_reflected_xss_is_never_html(people, store, web_server):
    admin, reader = Http(web_server), Http(web_server)
    admin.login("admin", "admin-password-1")
    reader.login("reader", "reader-password-1")
    for url in _reflected_urls(store["snapshot"]):
        for client in (admin, reader):
            response = client.get(url)
            assert response.status < 500, (url, response.status)
            assert_not_reflected(response, XSS, SCRIPT)
    # the answers of the original report, exactly: plain text naming what was wrong
    nul = admin.get(f"/?{quote(XSS)}%00=1")
    assert (nul.status, nul.headers["Content-Type"]) == (400, "text/plain; charset=utf-8")
    assert nul.text == f"{XSS}\\x00: NUL bytes are not allowed"
    forbidden = reader.get(f"/sync-jobs/add/?store={quote(XSS)}")
    assert (forbidden.status, forbidden.headers["Content-Type"]) == (403, "text/plain; charset=utf-8")
    download = admin.get(f"/datastore/store1/download/{store['snapshot']}?file={quote(XSS)}")
    assert (download.status, download.headers["Content-Type"]) == (400, "text/plain; charset=utf-8")
    assert XSS in download.text  # named, as text: the browser shows it, never parses it


def test_injected_script_does_not_run_in_the_admins_browser(people, store, web_server, page):
    """The admin opens the crafted links: nothing runs, and the console's own pages break no CSP rule."""
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    browser_login(page, web_server)
    for url in _reflected_urls(store["snapshot"]):
        page.goto(web_server.url + url)
        assert page.evaluate("window.__pwned") is None, url
    # the CSP stops even markup that did reach a page: inject one into the DOM as an attacker would
    page.goto(f"{web_server.url}/")
    page.evaluate("""() => { const d = document.createElement('div');
        d.innerHTML = '<img src=x onerror="window.__pwned=1">'; document.body.appendChild(d);
        const s = document.createElement('script'); s.textContent = 'window.__pwned=2';
        document.body.appendChild(s); }""")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    assert violations, "the browser reported the blocked script (so an empty list below means something)"
    # the console itself needs no inline script or style: no violation on its pages
    violations.clear()
    for path in ("/", "/tasks/", "/access/", "/access/tokens/", "/access/permissions/", "/remotes/",
                 "/sync-jobs/", "/traffic-control/", "/drills/", "/notifications/", "/datastore/",
                 "/datastore/store1/", "/datastore/store1/content/", "/datastore/store1/prune-gc/",
                 f"/datastore/store1/browse/{store['snapshot']}"):
        response = page.goto(web_server.url + path)
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
    assert violations == []
    # the datastore entry of the navigation tree draws its icon in CSS (no missing glyph)
    link = page.locator("nav.tree a.ds").first
    assert link.inner_text().strip() == "store1"
    assert page.evaluate("(a) => getComputedStyle(a, '::before').borderTopWidth", link.element_handle()) == "3px"


# -- 4. path traversal through the Test Connection dialog ------------------------------------------

def test_dialog_remote_id_never_becomes_a_path(people, web_server, s3_server, s3_bucket):
    admin = Http(web_server)
    admin.login("admin", "admin-password-1")
    data_dir = Path(settings.DATA_DIR)
    ca = (data_dir / "proxy.pem").read_text()
    before = set(os.listdir(tempfile.gettempdir()))
    for remote_id in ("../../x", "../../../tmp/x", "/etc/x", "..", "a/b"):
        response = admin.post("/remotes/add/test/", {
            "remote_id": remote_id, "provider": "other", "endpoint": s3_server.url, "bucket": s3_bucket,
            "region": "us-east-1", "access_key": "testing", "secret_key": "testing", "path_style": "on",
            "ca_bundle": ca})
        assert response.status == 200 and "Connected to" in response.text, response.text[:500]
    leftovers = [p for p in data_dir.parent.rglob("*dialog-ca.pem")] + list(Path("/tmp").glob("x*ca.pem"))
    assert leftovers == []
    assert not (data_dir / "remotes").exists() or not any((data_dir / "remotes").iterdir())
    assert not [n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("pbsweb-test-")]


def test_one_validator_for_ids_that_become_paths():
    from datastores.models import Datastore
    from pbsweb.errors import UserError
    from pbsweb.paths import safe_id
    from remotes.models import Remote
    for bad in ("../x", "..", ".hidden", "a/b", "a\\b", "", "-x", "x\x00", "a" * 129):
        with pytest.raises(UserError) as err:
            safe_id("remote_id", bad)
        assert err.value.field == "remote_id"
    with pytest.raises(UserError):
        Remote(remote_id="../../x", ca_bundle="pem").ca_bundle_path()
    with pytest.raises(UserError):
        Datastore(name="../keys").key_path  # noqa: B018 (a property)
    assert Remote(remote_id="b2-offsite").ca_bundle_path() == Path(settings.DATA_DIR) / "remotes" / "b2-offsite-ca.pem"


# -- 5. login throttle ----------------------------------------------------------------------------

def test_login_throttle_counts_name_variants_and_slows_instead_of_locking(people, web_server):
    from django.core.cache import cache
    cache.clear()
    attacker = Http(web_server, source="127.0.0.2")
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        assert attacker.post("/login/", {"username": "victim1", "password": "guess", "realm": "pbs"}).status == 400
    # the per-address limit stays: this address is locked out
    assert attacker.post("/login/", {"username": "victim1", "password": "guess", "realm": "pbs"}).status == 429
    # another address: the name's variants count for victim1@pbs, and every try is slowed down
    other = Http(web_server, source="127.0.0.3")
    delays = []
    for variant in (" victim1", "VICTIM1", "victim1@PBS "):
        response = other.post("/login/", {"username": variant, "password": "guess", "realm": "pbs"})
        assert response.status == 400
        delays.append(response.elapsed)
    assert delays[0] >= 0.5 and delays[1] >= 1.0 and delays[2] >= 2.0, delays
    # ... but the account is not locked: the real user logs in from their own address, slowed
    victim = Http(web_server, source="127.0.0.4")
    response = victim.post("/login/", {"username": "victim1", "password": "victim-password-1", "realm": "pbs"})
    assert response.status == 302 and response.elapsed >= 4.0
    cache.clear()


# -- 6. a datastore inside the data directory -------------------------------------------------------

def test_no_datastore_in_or_around_the_data_directory(people, web_server):
    data_dir = Path(settings.DATA_DIR)
    admin = Http(web_server)
    admin.login("admin", "admin-password-1")
    token = _token(people["admin"], "alloc", "Admin")
    for path in (data_dir / "keys", data_dir / "tasks" / "x", data_dir, data_dir.parent):
        form = admin.post("/datastore/create/", {"name": "inside", "path": str(path), "schedule": "daily"})
        assert form.status == 400 and "data directory" in form.text, form.text[:300]
        api = admin.request("POST", "/api2/json/config/datastore", json.dumps({"name": "inside", "path": str(path)}),
                            headers={**token, "Content-Type": "application/json"})
        assert api.status == 400 and "path" in json.loads(api.text)["errors"], api.text
        cli = subprocess.run([sys.executable, "manage.py", "datastore", "create", "inside", str(path)],
                             cwd=REPO, env=service_env(), capture_output=True, text=True)
        assert cli.returncode != 0 and "path: " in cli.stderr and "data directory" in cli.stderr, cli.stderr
    assert not (data_dir / "keys" / ".pbsweb-datastore.json").exists()
    assert not (data_dir / "tasks" / "x").exists()
    from datastores.models import Datastore
    assert not Datastore.objects.filter(name="inside").exists()


# -- 7. a malformed endpoint ----------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ["http://[::1", "http://[::1]x", "https://[zz]:9000"])
def test_malformed_endpoint_is_a_field_error_everywhere(people, web_server, endpoint):
    admin = Http(web_server)
    admin.login("admin", "admin-password-1")
    values = {"remote_id": "bad-endpoint", "provider": "other", "endpoint": endpoint, "bucket": "bucket1",
              "region": "", "access_key": "AK", "secret_key": "SK", "path_style": "on"}
    form = admin.post("/remotes/add/", values)
    assert form.status == 400 and "is not a valid URL" in form.text
    test = admin.post("/remotes/add/test/", values)
    assert test.status == 200 and "Endpoint: " in test.text and "is not a valid URL" in test.text
    api = admin.request("POST", "/api2/json/config/remote", json.dumps({
        "id": "bad-endpoint", "endpoint": endpoint, "bucket": "bucket1", "access-key": "AK", "secret-key": "SK"}),
        headers={**_token(people["admin"], "remote", "Admin"), "Content-Type": "application/json"})
    assert api.status == 400 and "endpoint" in json.loads(api.text)["errors"], api.text
    cli = subprocess.run([sys.executable, "manage.py", "remote", "create", "bad-endpoint", "--type", "s3",
                          "--endpoint", endpoint, "--bucket", "bucket1", "--access-key", "AK",
                          "--secret-key", "SK"], cwd=REPO, env=service_env(), capture_output=True, text=True)
    assert cli.returncode == 2 and "endpoint" in cli.stderr and "Traceback" not in cli.stderr, cli.stderr
    from remotes.models import Remote
    assert not Remote.objects.filter(remote_id="bad-endpoint").exists()


# -- 8. tokens, file modes, Host header --------------------------------------------------------------

def test_token_rights_are_its_acl_intersected_with_its_owner(people, store, web_server):
    reader = people["reader"]  # DatastoreAudit on /datastore/store1 only
    api = Http(web_server)
    # a token that claims Admin on / still holds only what its owner holds
    admin_token = _token(reader, "claims-admin", "Admin")
    assert api.get("/api2/json/admin/datastore/store1/snapshots", headers=admin_token).status == 200
    assert api.get("/api2/json/nodes/localhost/tasks", headers=admin_token).status == 403
    assert api.request("POST", "/api2/json/config/datastore", json.dumps({"name": "x", "path": "/tmp/x"}),
                       headers={**admin_token, "Content-Type": "application/json"}).status == 403
    # the Admin's read-only token reads, and changes nothing
    audit = _token(people["admin"], "read-only", "Audit")
    assert api.get("/api2/json/nodes/localhost/tasks", headers=audit).status == 200
    assert api.request("POST", "/api2/json/admin/datastore/store1/verify", "{}",
                       headers={**audit, "Content-Type": "application/json"}).status == 403
    # a token with no entry of its own holds nothing
    bare = _token(people["admin"], "bare")
    assert api.get("/api2/json/admin/datastore/store1/snapshots", headers=bare).status == 403


def test_data_directory_and_secrets_are_private(web_server):
    data_dir = Path(settings.DATA_DIR)
    assert data_dir.stat().st_mode & 0o777 == 0o700
    db = Path(str(settings.DATABASES["default"]["NAME"]))
    files = [data_dir / n for n in ("secret.key", "django-secret.key", "proxy.key", "settings.json")]
    if "sqlite" in settings.DATABASES["default"]["ENGINE"]:
        files.append(db)
    for path in files + list((data_dir / "keys").glob("*.json")):
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_only_allowed_host_names_are_answered(people, web_server):
    client = Http(web_server)
    for host in ("evil.example", "evil.example:8007", "127.0.0.1.evil.example"):
        response = client.get("/login/", host=host)
        assert response.status == 400, host
        assert "evil" not in response.text or "text/html" not in response.headers["Content-Type"]
    for host in (f"127.0.0.1:{web_server.port}", f"localhost:{web_server.port}", f"[::1]:{web_server.port}"):
        assert client.get("/login/", host=host).status == 200, host
    saved = json.loads((Path(settings.DATA_DIR) / "settings.json").read_text())["allowed_hosts"]
    import socket
    assert socket.gethostname() in saved
    assert client.get("/login/", host=f"{socket.gethostname()}:{web_server.port}").status == 200


# -- what held: keep it --------------------------------------------------------------------------

def test_cookies_session_rotation_redirects_and_headers_hold(people, web_server):
    client = Http(web_server)
    client.get("/login/")
    client.cookies["sessionid"] = "attacker-chosen-session-id"
    response = client.post("/login/?next=/tasks/", {"username": "admin", "password": "admin-password-1",
                                                    "realm": "pbs"})
    assert response.status == 302 and response.headers["Location"] == "/tasks/"
    assert client.cookies["sessionid"] != "attacker-chosen-session-id"
    for header in response.headers.get_all("Set-Cookie"):
        lowered = header.lower()
        assert "secure" in lowered and "samesite=lax" in lowered, header
        if header.startswith("sessionid="):
            assert "httponly" in lowered
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example", "https:evil.example",
                   "\\\\evil.example"):
        other = Http(web_server)
        answer = other.post(f"/login/?next={quote(target)}", {"username": "admin", "password": "admin-password-1",
                                                            "realm": "pbs"})
        assert answer.status == 302 and answer.headers["Location"] == "/", target
    page = client.get("/")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "max-age=" in page.headers["Strict-Transport-Security"]
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    api = client.get("/api2/json/nodes/localhost/tasks")
    assert api.headers["Content-Type"] == "application/json" and api.headers["X-Content-Type-Options"] == "nosniff"
    missing = client.get("/no/such/page/")
    assert missing.status == 404 and "URLconf" not in missing.text and "Traceback" not in missing.text  # DEBUG off


# -- the classes stay closed -------------------------------------------------------------------------

PRODUCT = ["pbsweb", "datastores", "remotes", "syncjobs"]
RESPONSES = {"HttpResponse", "HttpResponseBadRequest", "HttpResponseForbidden", "HttpResponseNotFound",
             "HttpResponseServerError", "HttpResponseNotAllowed", "HttpResponseGone"}


def test_no_error_body_is_html_built_from_input():
    """Every HttpResponse* with a body states its content type (plain_error does); nothing is
    marked safe; no template turns escaping off."""
    problems = []
    for app in PRODUCT:
        for path in (REPO / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            source = path.read_text()
            if re.search(r"\bmark_safe\(|\bSafeString\(|format_html\(", source):
                problems.append(f"{path}: marks text safe")
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in RESPONSES:
                    has_body = bool(node.args) or any(k.arg == "content" for k in node.keywords)
                    typed = any(k.arg == "content_type" for k in node.keywords)
                    if has_body and not typed:
                        problems.append(f"{path}:{node.lineno}: a response body without content_type")
    for path in (REPO / "templates").rglob("*.html"):
        text = path.read_text()
        if re.search(r"\|\s*safe\b|{%\s*autoescape\s+off", text):
            problems.append(f"{path}: escaping turned off")
    assert problems == []


def test_templates_have_no_inline_script_handler_or_style():
    problems = []
    for path in (REPO / "templates").rglob("*.html"):
        text = path.read_text()
        for m in re.finditer(r"<script\b([^>]*)>", text):
            attrs = m.group(1)
            if "src=" not in attrs and 'type="application/json"' not in attrs:
                problems.append(f"{path}: inline <script>")
        if re.search(r"\son[a-z]+\s*=", text):
            problems.append(f"{path}: an on*= event handler")
        if re.search(r"\sstyle\s*=", text) or "<style" in text:
            problems.append(f"{path}: a style attribute or element")
        if re.search(r"\bhx-on\b|hx-on:|javascript:", text):
            problems.append(f"{path}: code in an attribute")
    assert problems == []
