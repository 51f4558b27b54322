"""The one JSON API layer (pbsweb.api.endpoint): every /api2/json/ route goes through it, bad
bodies are refused naming `body`, and every error has the shape {"errors": {field: message}}.

The route list comes from the URL resolver, so a route added later is covered (and a route
that bypasses the layer fails test_every_api_route_goes_through_the_layer)."""
import json
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from pbsweb.api import SAFE_METHODS
from remotes.models import Remote

pytestmark = pytest.mark.django_db


# The backup and reader protocol (docs/PROTOCOL.md) is not the JSON API: binary chunk bodies,
# token or password auth on every request, its own session errors.
PROTOCOL_VIEWS = "datastores.protocol"


def api_routes():
    """(url, view) of every JSON API route under /api2/json/, path parameters filled with 'x1y'."""
    out = []

    def walk(patterns, prefix):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                out.append((re.sub(r"<(?:\w+:)?\w+>", "x1y", "/" + prefix + str(p.pattern)), p.callback))

    walk(get_resolver().url_patterns, "")
    return [(url, view) for url, view in out
            if url.startswith("/api2/json/") and view.__module__ != PROTOCOL_VIEWS]


MUTATING = [(url, method) for url, view in api_routes() for method in sorted(getattr(view, "api_methods", ()))
            if method not in SAFE_METHODS]


def test_every_api_route_goes_through_the_layer():
    routes = api_routes()
    assert len(routes) >= 20
    assert [url for url, view in routes if not hasattr(view, "api_methods")] == []
    assert len(MUTATING) >= 15  # POST/PUT/DELETE of datastores, remotes, sync jobs, rules, tasks


@pytest.mark.parametrize("url,method", MUTATING)
@pytest.mark.parametrize("body,says", [("not json", "not valid JSON"), ('{"a": 1', "not valid JSON"),
                                       ("[1, 2]", "expected a JSON object"), ('"text"', "expected a JSON object"),
                                       (b"\xff\xfe", "not valid JSON")])
def test_bad_json_to_every_mutating_route_is_400_naming_body(admin_client, url, method, body, says):
    response = getattr(admin_client, method.lower())(url, body, content_type="application/json")
    assert response.status_code == 400, (url, method, response.status_code, response.content)
    errors = response.json()["errors"]
    assert list(errors) == ["body"] and says in errors["body"], errors


def test_error_shapes(admin_client, audit_user):
    from django.test import Client
    audit_client = Client()
    audit_client.force_login(audit_user)
    Remote.objects.create(remote_id="remote1", endpoint="https://s3.example.com", bucket="bucket1",
                          region="us-east-1", access_key="AK")
    missing = admin_client.get("/api2/json/config/remote/nope")
    assert missing.status_code == 404 and missing.json()["errors"] == {"remote": "remote 'nope' does not exist"}
    assert admin_client.get("/api2/json/config/sync/nope").json()["errors"] == {
        "id": "sync job 'nope' does not exist"}
    bad = admin_client.post("/api2/json/nodes/localhost/tasks", "{}", content_type="application/json")
    assert bad.status_code == 405 and "method" in bad.json()["errors"] and bad["Allow"] == "GET, HEAD"
    denied = audit_client.put("/api2/json/config/remote/remote1", "{}", content_type="application/json")
    assert denied.status_code == 403
    assert denied.json()["errors"] == {"permission": "permission check failed: Remote.Modify on /remote/remote1"}
    unknown = admin_client.put("/api2/json/config/remote/remote1", json.dumps({"colour": "red"}),
                               content_type="application/json")
    assert unknown.status_code == 400 and unknown.json()["errors"] == {"colour": "unknown parameter"}
    boolean = admin_client.put("/api2/json/config/remote/remote1", json.dumps({"path-style": "perhaps"}),
                               content_type="application/json")
    assert boolean.status_code == 400 and list(boolean.json()["errors"]) == ["path-style"]
    bad_count = admin_client.get("/api2/json/nodes/localhost/tasks", {"limit": "-3"})
    assert bad_count.status_code == 400 and list(bad_count.json()["errors"]) == ["limit"]


def test_datastore_api_refuses_bad_json_it_used_to_ignore(admin_client, tmp_path):
    """The datastores API took malformed JSON as no parameters (a prune without dry-run!)."""
    from datastores.services import create_datastore
    create_datastore("store1", str(tmp_path / "store1"))
    response = admin_client.post("/api2/json/admin/datastore/store1/prune", '{"keep-last": 1, "dry-run": tru',
                                 content_type="application/json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["body"]
    created = admin_client.post("/api2/json/config/datastore", "name=store2", content_type="application/json")
    assert created.status_code == 400 and list(created.json()["errors"]) == ["body"]
    from datastores.models import Datastore
    assert list(Datastore.objects.values_list("name", flat=True)) == ["store1"]


def test_remote_in_use_is_a_conflict(admin_client, tmp_path):
    from datastores.services import create_datastore
    from syncjobs.models import SyncJob
    store = create_datastore("store1", str(tmp_path / "store1"))
    remote = Remote.objects.create(remote_id="remote1", endpoint="https://s3.example.com", bucket="bucket1",
                                   region="us-east-1", access_key="AK")
    SyncJob.objects.create(job_id="job1", store=store, remote=remote, remote_store="store1")
    response = admin_client.delete("/api2/json/config/remote/remote1")
    assert response.status_code == 409 and "sync job 'job1'" in response.json()["errors"]["id"]
    response = admin_client.delete("/api2/json/config/datastore/store1")
    assert response.status_code == 409 and "sync job 'job1'" in response.json()["errors"]["name"]
    assert Remote.objects.filter(remote_id="remote1").exists()


def test_sync_job_delete_parameter_of_any_shape(admin_client, tmp_path):
    from datastores.services import create_datastore
    from syncjobs.models import SyncJob
    store = create_datastore("store1", str(tmp_path / "store1"))
    remote = Remote.objects.create(remote_id="remote1", endpoint="https://s3.example.com", bucket="bucket1",
                                   region="us-east-1", access_key="AK")
    SyncJob.objects.create(job_id="job1", store=store, remote=remote, remote_store="store1", comment="c")
    url = "/api2/json/config/sync/job1"
    for bad, field in ((5, "5"), ({"a": 1}, "delete"), ([["x"]], "['x']"), ("colour", "colour")):
        response = admin_client.put(url, json.dumps({"delete": bad}), content_type="application/json")
        assert response.status_code == 400 and list(response.json()["errors"]) == [field], (bad, response.content)
    response = admin_client.put(url, json.dumps({"delete": ["comment"]}), content_type="application/json")
    assert response.status_code == 200 and SyncJob.objects.get().comment == ""
