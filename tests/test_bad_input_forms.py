"""Bad input in every dialog and its API twin (hypothesis-driven): never a 500, never a
traceback, always a message naming the field.

Each case posts a valid form with ONE field replaced by a hostile value (empty, huge,
unicode, NUL bytes, traversal, markup, numbers out of range). The answer is either a
success (the value was acceptable) or an error that is tied to a field of the form
(HTML: `form.errors` keyed by a field, rendered in the page; API: `{"errors": {field: …}}`).
A 400 without such an error fails. Every field of every form is fuzzed on its own
(PER_FIELD examples each); hypothesis prints the failing input.
"""
import itertools
import json
import os

import pytest
from django.forms import BaseForm
from django.utils.html import escape
from hypothesis import HealthCheck, given, settings, strategies as st

from pbsweb import secretbox

pytestmark = pytest.mark.django_db

FUZZ = settings(max_examples=12, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PER_FIELD = settings(FUZZ, max_examples=6, print_blob=True)  # per field: ~100 fields

HOSTILE = [
    "", " ", "\x00", "a\x00b", "name\x00.tar", "../../etc/passwd", "/etc/passwd", "..", "%2e%2e%2f", "a/../../b",
    "x" * 5000, "ü" * 40, "名前", "\u202egnp.exe", "😀😀", "-1", "0", "99999999999999999999999", "1e309", "NaN",
    "<script>alert(1)</script>", "' OR 1=1 --", "\n", "a\nb", "\r\n", "\t", "{store}", "%s%n", "ns/" * 20,
    "1PiB", "1000000PiB", "-5MiB", "10 MiB", "* * * * * *", "mon..sun 25:61", "999999999", "/", "//", "\\x00",
]
BAD = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40),
                st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=300))

_counter = itertools.count()


@pytest.fixture(autouse=True)
def _key():
    secretbox.ensure_key()


@pytest.fixture
def world(admin_client, tmp_path, settings):
    """One datastore and one remote, for the forms that refer to them."""
    settings.DATA_DIR = tmp_path / "data"  # key files of this test's datastores
    from datastores.services import create_datastore
    from remotes.models import Remote
    from pbsweb.models import NotificationTarget
    settings.PBSWEB_REMOTE_TEST_TIMEOUT = 1
    settings.LOGIN_FAILURE_LIMIT = 10 ** 6  # the login form is fuzzed: no throttling here
    create_datastore("store1", str(tmp_path / "store1"))
    Remote.objects.create(remote_id="remote1", endpoint="http://127.0.0.1:9", bucket="bucket1",
                          region="us-east-1", access_key="AKIA1", secret_key="s3cr3t-value")
    NotificationTarget.objects.create(name="n1", address="admin@example.com")
    yield tmp_path
    from django.core.cache import cache
    cache.clear()  # the fuzzed logins' failure counts would lock later logins from 127.0.0.1 out


def _contained(world, value):
    """An absolute path that does not exist would really be created: keep it inside the test dir."""
    if isinstance(value, str) and value.startswith("/") and not os.path.exists(value.replace("\x00", "")):
        return str(world) + value
    return value


def _form_with_errors(response):
    """The bound form with errors among everything the page's templates rendered (a page
    may hold several forms, e.g. a fresh Add dialog beside the Edit dialog that failed)."""
    contexts = response.context if isinstance(response.context, list) else [response.context]
    for context in contexts:
        if context is None:
            continue
        for value in context.flatten().values():
            if isinstance(value, BaseForm) and value.is_bound and value.errors:
                return value
    return None


def _assert_html_ok(response, field, value):
    assert response.status_code != 500, (field, value)
    body = response.content.decode("utf-8", "replace")
    assert "Traceback" not in body and "File \"/" not in body, (field, value)
    if response.status_code in (302, 204):
        return True
    form = _form_with_errors(response)
    if form is None:
        # a refusal must say which field: a 400 without a form error fails
        assert response.status_code == 200, (field, value, response.status_code, body[:300])
        return True
    named = set(form.errors) - {"__all__"}
    assert named <= set(form.fields), form.errors
    if not named:  # a form-wide error (a conflict with existing state) must at least say something
        assert all(m.strip() for m in form.errors["__all__"]), form.errors
    for messages in form.errors.values():
        for message in messages:
            assert escape(message) in body, message
    return False


def _post(client, url, data, field, value):
    data = dict(data)
    data[field] = value
    response = client.post(url, data)
    return _assert_html_ok(response, field, value)


# -- HTML dialogs --------------------------------------------------------------------------

def _uniq(prefix):
    return f"{prefix}{next(_counter)}"


FORMS = {
    "datastore-add": ("/datastore/create/", lambda w: {
        "name": _uniq("ds"), "path": str(w / _uniq("p")), "schedule": "daily", "comment": "c"},
        ["name", "path", "schedule", "comment"]),
    "remote-add": ("/remotes/add/", lambda w: {
        "remote_id": _uniq("rem"), "provider": "other", "endpoint": "https://s3.example.com", "bucket": "bucket1",
        "region": "us-east-1", "access_key": "AK", "secret_key": "SK", "path_style": "on",
        "no_checksum_headers": "on", "min_storage_days": "0", "comment": ""},
        ["remote_id", "provider", "endpoint", "bucket", "region", "access_key", "secret_key", "tls_fingerprint",
         "min_storage_days", "ca_bundle", "comment"]),
    "remote-edit": ("/remotes/remote1/edit/", lambda w: {
        "provider": "other", "endpoint": "https://s3.example.com", "bucket": "bucket1", "region": "us-east-1",
        "access_key": "AK", "secret_key": "", "path_style": "on", "min_storage_days": "0"},
        ["endpoint", "bucket", "region", "access_key", "tls_fingerprint", "min_storage_days", "comment"]),
    "syncjob-add": ("/sync-jobs/add/", lambda w: {
        "id": _uniq("job"), "direction": "push", "store": "store1", "remote": "remote1",
        "remote_store": "pbs/store1", "schedule": "daily", "enabled": "on", "workers": "8"},
        ["id", "direction", "store", "remote", "remote_store", "ns", "max_depth", "schedule", "group_filter",
         "transfer_last", "rate_out", "burst_out", "workers", "comment"]),
    "traffic-control-add": ("/traffic-control/add/", lambda w: {
        "name": _uniq("rule"), "rate_out": "10MiB", "comment": ""},
        ["name", "rate_out", "burst_out", "timeframes", "remotes", "comment"]),
    "prune-job-add": ("/datastore/store1/prune-jobs/add/", lambda w: {
        "job_id": _uniq("pj"), "schedule": "daily", "keep_last": "3", "enabled": "on"},
        ["job_id", "ns", "max_depth", "schedule", "keep_last", "keep_daily", "keep_yearly", "comment"]),
    "verify-job-add": ("/datastore/store1/verify-jobs/add/", lambda w: {
        "job_id": _uniq("vj"), "schedule": "daily", "ignore_verified": "on", "enabled": "on"},
        ["job_id", "ns", "schedule", "outdated_after", "comment"]),
    "datastore-options": ("/datastore/store1/options/save/", lambda w: {"schedule": "daily", "comment": ""},
                          ["schedule", "comment"]),
    "user-add": ("/access/users/add/", lambda w: {
        "userid": _uniq("user"), "password": "password-123", "role": "Audit", "path": "/"},
        ["userid", "password", "role", "path"]),
    "permission-add": ("/access/permissions/add/", lambda w: {
        "path": "/datastore/store1", "user": "admin@pbs", "role": "Audit", "propagate": "on"},
        ["path", "user", "role"]),
    "token-add": ("/access/tokens/add/", lambda w: {"user": "admin@pbs", "name": _uniq("tok"), "comment": ""},
                  ["user", "name", "comment"]),
    "prune-now": ("/datastore/store1/prune/", lambda w: {"keep_last": "1", "ns": ""},
                  ["keep_last", "keep_daily", "ns"]),
    "encryption-generate": ("/datastore/store1/encryption/generate/", lambda w: {
        "kdf": "none", "passphrase": "", "confirm": "", "hint": ""}, ["kdf", "passphrase", "confirm", "hint"]),
    "remote-add-test": ("/remotes/add/test/", lambda w: {
        "remote_id": _uniq("rem"), "provider": "other", "endpoint": "http://127.0.0.1:9", "bucket": "bucket1",
        "region": "us-east-1", "access_key": "AK", "secret_key": "SK", "path_style": "on",
        "min_storage_days": "0"},
        ["remote_id", "provider", "endpoint", "bucket", "region", "access_key", "secret_key", "tls_fingerprint",
         "min_storage_days", "ca_bundle"]),
    "remote-edit-test": ("/remotes/remote1/edit/test/", lambda w: {
        "provider": "other", "endpoint": "http://127.0.0.1:9", "bucket": "bucket1", "region": "us-east-1",
        "access_key": "AK", "secret_key": "", "path_style": "on", "min_storage_days": "0"},
        ["endpoint", "bucket", "region", "access_key", "secret_key", "tls_fingerprint", "min_storage_days"]),
    "drill-add": ("/drills/add/", lambda w: {
        "id": _uniq("drill"), "remote": "remote1", "remote_store": "", "sample_size": "2", "schedule": "weekly",
        "comment": ""}, ["id", "remote", "remote_store", "sample_size", "schedule", "comment"]),
    "notification-add": ("/notifications/add/", lambda w: {
        "name": _uniq("n"), "kind": "email", "address": "admin@example.com", "when": "failure", "enabled": "on"},
        ["name", "kind", "address", "when", "worker_types", "worker_id", "comment"]),
    "notification-edit": ("/notifications/n1/edit/", lambda w: {
        "name": "n1", "kind": "email", "address": "admin@example.com", "when": "failure", "enabled": "on"},
        ["kind", "address", "when", "worker_types", "worker_id", "comment"]),
}
FORM_FIELDS = [(name, field) for name in sorted(FORMS) for field in FORMS[name][2]]


@pytest.mark.parametrize("name,field", FORM_FIELDS)
def test_form_rejects_bad_input_naming_the_field(name, field, admin_client, world):
    url, valid, _ = FORMS[name]

    @PER_FIELD
    @given(value=BAD)
    def run(value):
        if name == "datastore-add" and field == "path":
            value = _contained(world, value)
        _post(admin_client, url, valid(world), field, value)

    run()
    # Whatever was stored renders again.
    for page in ("/datastore/", "/remotes/", "/sync-jobs/", "/traffic-control/", "/access/", "/access/permissions/",
                 "/access/tokens/", "/datastore/store1/prune-gc/", "/datastore/store1/verify-jobs/",
                 "/datastore/store1/options/", "/drills/", "/notifications/", "/"):
        response = admin_client.get(page)
        assert response.status_code == 200, page


@pytest.mark.parametrize("field", ["username", "password", "realm"])
def test_login_form_rejects_bad_input_naming_the_field(field, client, admin_user, world):
    """The login form, anonymous: bad credentials are the form's error (not one field's), shown."""
    @PER_FIELD
    @given(value=BAD)
    def run(value):
        valid = {"username": "admin", "password": "admin-password-1", "realm": "pbs"}
        if _post(client, "/login/", valid, field, value):
            client.logout()

    run()


def test_valid_baselines_are_accepted(admin_client, world):
    """The fuzzing above starts from values that are accepted (else it would prove nothing)."""
    for name in ("datastore-add", "remote-add", "syncjob-add", "traffic-control-add", "prune-job-add",
                 "verify-job-add", "user-add", "permission-add", "token-add", "drill-add", "notification-add",
                 "notification-edit"):
        url, valid, _ = FORMS[name]
        response = admin_client.post(url, valid(world))
        assert response.status_code in (200, 204, 302), (name, response.status_code, response.context and response.context.get("form") and response.context.get("form").errors)
        if response.status_code == 200:
            form = response.context.get("form")
            assert not (form and form.errors), (name, form.errors)


def test_nul_byte_is_named_not_a_crash(admin_client, world):
    response = admin_client.post("/datastore/create/", {"name": "good1", "path": str(world / "a\x00b"),
                                                        "schedule": "daily"})
    assert response.status_code == 400
    assert "path" in response.context["form"].errors


# -- API -------------------------------------------------------------------------------------

def _assert_api_ok(response, field, value):
    assert response.status_code != 500, (field, value)
    body = response.content.decode("utf-8", "replace")
    assert "Traceback" not in body
    doc = json.loads(body)
    if response.status_code == 200:
        return True
    assert response.status_code in (400, 404, 409), (field, value, response.status_code, body)
    errors = doc.get("errors")
    assert errors, body
    if response.status_code == 400:
        assert isinstance(errors, dict) and all(isinstance(k, str) and k for k in errors), body
    return False


APIS = {
    "config/datastore": ("/api2/json/config/datastore", lambda w: {
        "name": _uniq("ads"), "path": str(w / _uniq("ap")), "gc-schedule": "daily", "comment": ""},
        ["name", "path", "gc-schedule", "comment", "verify-new"]),
    "config/remote": ("/api2/json/config/remote", lambda w: {
        "name": _uniq("arem"), "endpoint": "https://s3.example.com", "bucket": "bucket1", "region": "us-east-1",
        "access-key": "AK", "secret-key": "SK"},
        ["name", "endpoint", "bucket", "region", "access-key", "secret-key", "provider", "path-style",
         "min-storage-days", "fingerprint", "comment"]),
    "config/sync": ("/api2/json/config/sync", lambda w: {
        "id": _uniq("ajob"), "store": "store1", "remote": "remote1", "remote-store": "pbs/x", "schedule": "daily"},
        ["id", "store", "remote", "remote-store", "ns", "schedule", "rate-out", "burst-out", "group-filter",
         "max-depth", "transfer-last", "comment", "remove-vanished"]),
    "config/traffic-control": ("/api2/json/config/traffic-control", lambda w: {
        "name": _uniq("arule"), "rate-out": "10MiB"}, ["name", "rate-out", "burst-out", "timeframe", "comment"]),
    "prune": ("/api2/json/admin/datastore/store1/prune", lambda w: {"keep-last": "1", "dry-run": "1"},
              ["keep-last", "keep-daily", "ns", "dry-run", "backup-type"]),
    "verify": ("/api2/json/admin/datastore/store1/verify", lambda w: {"ignore-verified": "1"},
               ["ns", "outdated-after", "ignore-verified", "backup-time"]),
}


@pytest.mark.parametrize("name", sorted(APIS))
@pytest.mark.parametrize("encoding", ["json", "form"])
def test_api_rejects_bad_input_naming_the_field(name, encoding, admin_client, world, monkeypatch):
    url, valid, fields = APIS[name]

    @FUZZ
    @given(field=st.sampled_from(fields), value=st.one_of(BAD, st.integers(-2**70, 2**70), st.none(),
                                                          st.lists(st.text(max_size=5), max_size=3)))
    def run(field, value):
        if name == "config/datastore" and field == "path":
            value = _contained(world, value)
        data = valid(world)
        data[field] = value
        if encoding == "json":
            response = admin_client.post(url, json.dumps(data), content_type="application/json")
        else:
            form = {k: ("" if v is None else v if isinstance(v, list) else str(v)) for k, v in data.items()}
            response = admin_client.post(url, form)
        _assert_api_ok(response, field, value)

    run()
    for get in ("/api2/json/config/datastore", "/api2/json/config/remote", "/api2/json/config/sync",
                "/api2/json/config/traffic-control", "/api2/json/admin/sync"):
        assert admin_client.get(get).status_code == 200, get


def test_api_body_that_is_not_an_object(admin_client, world):
    for url in ("/api2/json/config/datastore", "/api2/json/config/remote", "/api2/json/config/sync",
                "/api2/json/config/traffic-control", "/api2/json/admin/datastore/store1/prune"):
        for body in ("[1,2]", "not json", "\x00", '"text"', "{\"name\": {\"a\": 1}}"):
            response = admin_client.post(url, body, content_type="application/json")
            assert response.status_code in (400, 200), (url, body, response.status_code)
            assert "Traceback" not in response.content.decode()


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["start", "limit", "typefilter", "running", "errors"]), BAD,
                              max_size=3))
def test_task_list_query_parameters(admin_client, params):
    response = admin_client.get("/api2/json/nodes/localhost/tasks", params)
    assert response.status_code in (200, 400), (params, response.status_code)
    if response.status_code == 400:
        assert set(json.loads(response.content)["errors"]) <= set(params)


@FUZZ
@given(query=st.dictionaries(st.sampled_from(["ns", "backup-type", "backup-id", "recursive", "start", "page",
                                              "type", "state", "keep_last", "group"]), BAD, max_size=3),
       url=st.sampled_from(["/api2/json/admin/datastore/store1/snapshots", "/api2/json/admin/datastore/store1/groups",
                            "/tasks/", "/datastore/store1/prune-simulate/", "/datastore/store1/prune-group/",
                            "/datastore/store1/content/", "/datastore/add/"]))
def test_get_query_parameters(admin_client, world, query, url):
    response = admin_client.get(url, query)
    assert response.status_code in (200, 400, 404), (url, query, response.status_code)
    assert "Traceback" not in response.content.decode("utf-8", "replace")


@pytest.mark.parametrize("method,url,body,field", [
    ("post", "/api2/json/config/remote", {"name": "big1", "endpoint": "https://s3.example.com", "bucket": "bucket1",
                                          "region": "us-east-1", "access-key": "AK", "secret-key": "SK",
                                          "min-storage-days": 10 ** 20}, "min-storage-days"),
    ("put", "/api2/json/config/remote/remote1", {"min-storage-days": 10 ** 20}, "min-storage-days"),
    ("post", "/api2/json/admin/datastore/store1/verify", {"ns": "../x"}, "ns"),
])
def test_found_by_fuzzing(admin_client, world, method, url, body, field):
    """Values that crashed (an integer too large for the column) or named the wrong field."""
    response = getattr(admin_client, method)(url, json.dumps(body), content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()


@pytest.mark.parametrize("query,field", [({"start": "x"}, "start"), ({"limit": "-1"}, "limit"),
                                         ({"start": "1e9"}, "start")])
def test_task_api_offsets_name_the_parameter(admin_client, query, field):
    response = admin_client.get("/api2/json/nodes/localhost/tasks", query)
    assert response.status_code == 400 and field in response.json()["errors"]


@pytest.mark.parametrize("method,url,body,field", [
    ("get", "/datastore/%00/", None, "path"),
    ("get", "/remotes/a%00b/", None, "path"),
    ("get", "/tasks/UPID%00/", None, "path"),
    ("get", "/tasks/?type=%00", None, "type"),
    ("get", "/api2/json/nodes/localhost/tasks?typefilter=a%00", None, "typefilter"),
    ("get", "/api2/json/config/remote/%00", None, "path"),
    ("post", "/api2/json/config/remote", {"name": "nul1", "endpoint": "https://s3.example.com", "bucket": "bucket1",
                                          "region": "us-east-1", "access-key": "AK", "secret-key": "SK",
                                          "comment": "a\x00b"}, "comment"),
    ("put", "/api2/json/config/remote/remote1", {"comment": "\x00"}, "comment"),
    ("post", "/api2/json/config/sync", {"id": "nul2", "store": "store1", "remote": "remote1",
                                        "comment": "\x00"}, "comment"),
])
def test_nul_bytes_in_urls_and_api_bodies_name_the_field(admin_client, world, method, url, body, field):
    """PostgreSQL cannot store a NUL byte: a NUL in a URL, a query or an API body is refused (400,
    naming the part) before any view looks it up or stores it."""
    if body is None:
        response = admin_client.get(url)
    else:
        response = getattr(admin_client, method)(url, json.dumps(body), content_type="application/json")
    assert response.status_code == 400, (url, response.status_code)
    text = response.content.decode()
    assert field in text and "NUL" in text, text
