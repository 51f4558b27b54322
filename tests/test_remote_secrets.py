"""The S3 secret key is stored encrypted and never shown: grep the SQLite file,
every file under the data directory (task logs, CA files), every page, the API
JSON and the CLI output for it after using it everywhere."""
import io
import json
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from pbsweb import secretbox
from tests.conftest import read_bytes_elsewhere
from pbsweb.models import Task
from remotes.models import Remote

pytestmark = pytest.mark.django_db(transaction=True)  # committed, so it is in the database file

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def secret_key_file(settings):
    secretbox.ensure_key()
    settings.PBSWEB_REMOTE_TEST_TIMEOUT = 2


def cli(*args) -> str:
    out = io.StringIO()
    try:
        call_command("remote", *args, stdout=out)
    except CommandError as exc:
        out.write(str(exc))
    return out.getvalue()


def test_secret_never_leaves_encrypted_storage(admin_client, s3_server, s3_bucket):
    secrets = {name: f"{name}-{uuid.uuid4().hex}" for name in ("form", "edited", "cli", "api", "apiput")}
    outputs = []

    # Add via the form, Test Connection in the dialog (with the wrong secret too), edit.
    form = {"remote_id": "web1", "provider": "minio", "endpoint": s3_server.url, "bucket": s3_bucket,
            "region": "us-east-1", "access_key": "testing", "secret_key": secrets["form"], "path_style": "on"}
    outputs.append(admin_client.post("/remotes/add/test/", {**form, "write_probe": "on"}, **HTMX))
    outputs.append(admin_client.post("/remotes/add/test/", {**form, "bucket": "Bad!"}, **HTMX))
    outputs.append(admin_client.post("/remotes/add/", {**form, "bucket": "x"}))  # bad input: re-rendered form
    assert admin_client.post("/remotes/add/", form).status_code == 302
    outputs.append(admin_client.post("/remotes/web1/edit/", {**form, "secret_key": secrets["edited"]}, follow=True))
    outputs.append(admin_client.post("/remotes/web1/edit/test/", {**form, "secret_key": ""}, **HTMX))
    # The saved remote's Test button, with a secret that works on moto.
    Remote.objects.filter(remote_id="web1").update(secret_key_encrypted=secretbox.encrypt_secret("testing"))
    outputs.append(admin_client.post("/remotes/web1/test/", {"write_probe": "on"}, **HTMX))
    Remote.objects.filter(remote_id="web1").update(secret_key_encrypted=secretbox.encrypt_secret(secrets["edited"]))

    # CLI and API.
    outputs.append(cli("create", "cli1", "--type", "s3", "--endpoint", s3_server.url, "--bucket", s3_bucket,
                       "--region", "us-east-1", "--access-key", "testing", "--secret-key", secrets["cli"]))
    outputs.append(cli("test", "cli1", "--write", "--probe"))
    created = admin_client.post("/api2/json/config/remote", json.dumps({
        "name": "api1", "type": "s3", "endpoint": s3_server.url, "bucket": s3_bucket, "region": "us-east-1",
        "access-key": "testing", "secret-key": secrets["api"]}), content_type="application/json")
    assert created.status_code == 200, created.content
    outputs.append(created)
    outputs.append(admin_client.put("/api2/json/config/remote/api1", json.dumps({"secret-key": secrets["apiput"]}),
                                    content_type="application/json"))
    outputs.append(admin_client.post("/api2/json/config/remote/api1/test", json.dumps({"write": True}),
                                     content_type="application/json"))
    assert Remote.objects.get(remote_id="api1").secret_key == secrets["apiput"]
    assert Remote.objects.get(remote_id="cli1").secret_key == secrets["cli"]

    # Every page and answer that shows a remote.
    for url in ("/remotes/", "/remotes/web1/", "/remotes/cli1/", "/remotes/api1/", "/tasks/",
                "/api2/json/config/remote", "/api2/json/config/remote/web1", "/api2/json/nodes/localhost/tasks"):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        outputs.append(response)
    outputs.append(admin_client.get("/remotes/web1/edit/", **HTMX))
    for task in Task.objects.all():
        outputs.append(admin_client.get(f"/tasks/{task.upid}/"))
        outputs.append(admin_client.get(f"/api2/json/nodes/localhost/tasks/{task.upid}/log"))
    for name in ("web1", "cli1", "api1"):
        outputs.append(cli("show", name))
        outputs.append(cli("show", name, "--output-format", "json"))
    outputs.append(cli("list", "--output-format", "json"))
    assert Task.objects.filter(worker_type="remotetest").count() >= 6

    texts = [o if isinstance(o, str) else o.content.decode() for o in outputs]
    stored_token = Remote.objects.get(remote_id="cli1").secret_key_encrypted
    connection.close()  # let SQLite write everything to its files
    files = [p for p in Path(settings.DATA_DIR).rglob("*") if p.is_file()]
    db_files = [p for p in files if "sqlite3" in p.name]
    assert db_files and any(p.suffix == ".log" or "tasks" in p.parts for p in files)
    # Control: the database files do hold the remotes (the encrypted token is found).
    contents = {p: read_bytes_elsewhere(p) for p in files}
    assert any(stored_token.encode() in contents[p] for p in db_files)
    for name, secret in secrets.items():
        for text in texts:
            assert secret not in text, name
        for path in files:
            assert secret.encode() not in contents[path], (name, path)
        for task in Task.objects.all():
            assert secret not in json.dumps(task.arguments), name
