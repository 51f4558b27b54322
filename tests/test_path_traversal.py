"""Path traversal: `..`, absolute paths and encoded slashes in namespaces, archive names, snapshot
names, remote-store prefixes, datastore paths, file-browser paths and download URLs are refused
with a clear message; nothing outside the store is read or written.

A canary file sits beside the datastore (and /etc/passwd is on every machine): no answer may
contain either, and no file may appear outside the store's directory."""
import io
import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from pbsweb import secretbox

pytestmark = pytest.mark.django_db

CANARY = "CANARY-7f3e9a-outside-the-store"
TRAVERSALS = [
    "..", "../..", "../../..", "../canary.txt", "../../canary.txt", "/etc/passwd", "//etc/passwd",
    "a/../../..", "./../..", "..%2f..%2fcanary.txt", "%2e%2e/%2e%2e", "%2e%2e%2f%2e%2e%2f", "..\\..\\canary.txt",
    "....//....//", "ns/../../..", "\x00../", "..\x00", "%00../", "ns/a/../../../..", "/", "~", "~root",
]


@pytest.fixture
def world(tmp_path, settings):
    """store1 at tmp/store1 with one snapshot host/h1/<time> holding root.tar (with a catalog)."""
    from datastores.services import create_datastore
    secretbox.ensure_key()
    settings.DATA_DIR = tmp_path / "data"
    (tmp_path / "canary.txt").write_text(CANARY)
    create_datastore("store1", str(tmp_path / "store1"))
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "inside.txt").write_text("inside the backup")
    call_command("backup", "store1", "--id", "h1", f"root.tar:{src}", "--backup-time", "1767225600",
                 stdout=io.StringIO())
    from datastores.models import Datastore
    eng = Datastore.objects.get(name="store1").engine()
    ref = eng.list_snapshots("")[0]
    return {"tmp": tmp_path, "snapshot": ref.name, "files": _outside(tmp_path)}


def _outside(tmp):
    """Every file under tmp except inside the store and the data dir (those may change)."""
    out = set()
    for dirpath, _, files in os.walk(tmp):
        rel = Path(dirpath).relative_to(tmp)
        if rel.parts[:1] in (("store1",), ("data",)):
            continue
        out.update(str(Path(dirpath) / f) for f in files)
    return out


def _no_leak(response, what):
    body = response.content if not getattr(response, "streaming", False) else b"".join(response.streaming_content)
    text = body.decode("utf-8", "replace")
    assert response.status_code < 500, (what, response.status_code)
    assert CANARY not in text and "root:x:0:0" not in text, what
    assert "Traceback" not in text, what
    return text


@pytest.mark.parametrize("bad", TRAVERSALS)
def test_web_refuses_traversal_everywhere(admin_client, world, bad):
    snap = world["snapshot"]
    q = quote(bad, safe="")
    urls = [
        # namespaces
        f"/api2/json/admin/datastore/store1/snapshots?ns={q}",
        f"/api2/json/admin/datastore/store1/groups?ns={q}",
        f"/datastore/store1/prune-simulate/?keep_last=1&ns={q}",
        f"/datastore/store1/notes/{snap}?ns={q}",
        # snapshot names (path part), raw and encoded
        f"/datastore/store1/notes/{bad}",
        f"/datastore/store1/notes/{q}",
        f"/datastore/store1/download/{bad}?file=root.tar.didx",
        f"/datastore/store1/download/host/h1/{q}?file=root.tar.didx",
        f"/datastore/store1/browse/{q}",
        # archive / file names of a download
        f"/datastore/store1/download/{snap}?file={q}",
        f"/datastore/store1/download/{snap}?file={q}.blob",
        f"/datastore/store1/download/{snap}?file={q}.tar.didx",
        # the file browser and single-file download
        f"/datastore/store1/browse/{snap}?archive=root.tar&dir={q}",
        f"/datastore/store1/browse/{snap}?archive={q}&dir=.",
        f"/datastore/store1/download-file/{snap}?archive=root.tar&path={q}",
        f"/datastore/store1/download-file/{snap}?archive=root.tar&path=sub/{q}",
        f"/datastore/store1/download-file/{snap}?archive={q}.tar&path=sub/inside.txt",
        # store names in URLs
        f"/datastore/{q}/",
        f"/api2/json/admin/datastore/{q}/snapshots",
        f"/api2/json/config/datastore/{q}",
        f"/remotes/{q}/",
        f"/api2/json/config/remote/{q}",
        f"/tasks/{q}/log/download/",
    ]
    for url in urls:
        response = admin_client.get(url)
        text = _no_leak(response, url)
        if response.status_code == 200 and "download" in url:
            # a download that answered must be a file of the snapshot, not of the machine
            assert "inside the backup" in text or text.strip().startswith("{") or text == "", (url, text[:200])
    assert _outside(world["tmp"]) == world["files"]


@pytest.mark.parametrize("bad", ["..", "../x", "a/../b", "/abs", "ns/../..", "..%2f", "a//b", "a/./b", ".", "\x00"])
def test_namespace_fields_refuse_traversal_with_a_message(admin_client, world, bad):
    for url, data in (("/datastore/store1/prune-jobs/add/", {"job_id": "pj1", "schedule": "daily", "ns": bad}),
                      ("/datastore/store1/verify-jobs/add/", {"job_id": "vj1", "schedule": "daily", "ns": bad})):
        response = admin_client.post(url, data)
        assert response.status_code == 400, (url, bad)
        assert "ns" in response.context["form"].errors
    for url, body in (("/api2/json/admin/datastore/store1/prune", {"ns": bad, "keep-last": 1, "dry-run": True}),
                      ("/api2/json/admin/datastore/store1/verify", {"ns": bad})):
        response = admin_client.post(url, json.dumps(body), content_type="application/json")
        assert response.status_code == 400 and "ns" in response.json()["errors"], (url, bad, response.content)
    assert _outside(world["tmp"]) == world["files"]


@pytest.mark.parametrize("bad", ["../x", "/abs/prefix", "a/../../b", "..", "a/..", "%2e%2e/x", "a\\..\\b", "a//b"])
def test_remote_store_prefix_refuses_traversal(admin_client, world, bad):
    from remotes.models import Remote
    from syncjobs.models import SyncJob
    Remote.objects.create(remote_id="remote1", endpoint="https://s3.example.com", bucket="bucket1",
                          region="us-east-1", access_key="AK", secret_key="SK")
    response = admin_client.post("/api2/json/config/sync", json.dumps({
        "id": "job1", "store": "store1", "remote": "remote1", "remote-store": bad}), content_type="application/json")
    if response.status_code == 200:  # a leading '/' is dropped: the prefix stays inside the bucket
        stored = SyncJob.objects.get().remote_store
        assert bad.startswith("/") and not stored.startswith("/") and ".." not in stored.split("/"), stored
        return
    assert response.status_code == 400, (bad, response.content)
    assert "remote-store" in response.json()["errors"]
    assert not SyncJob.objects.exists()


@pytest.mark.parametrize("bad,message", [
    ("relative/store", "absolute"),
    ("../store", "absolute"),
    ("{tmp}/store1/inner", "inside"),
    ("{tmp}/store1/../store1", "already used"),
    ("{tmp}/store1/.chunks", "inside"),
    ("{tmp}", "contains"),
    ("{tmp}/canary.txt", "not a directory"),
    ("/etc", "not empty"),
])
def test_datastore_path_refuses_escapes(admin_client, world, bad, message):
    from datastores.models import Datastore
    path = bad.format(tmp=world["tmp"])
    response = admin_client.post("/api2/json/config/datastore", json.dumps({"name": "store2", "path": path}),
                                 content_type="application/json")
    assert response.status_code == 400, (path, response.content)
    assert message in response.json()["errors"]["path"], response.json()
    assert Datastore.objects.count() == 1
    assert _outside(world["tmp"]) == world["files"]
    assert (world["tmp"] / "canary.txt").read_text() == CANARY


@pytest.mark.parametrize("argv,field", [
    (["backup", "store1", "--id", "h2", "--ns", "../..", "root.tar:{src}"], "ns"),
    (["backup", "store1", "--id", "../h2", "root.tar:{src}"], "id"),
    (["backup", "store1", "--id", "h2", "../../evil.tar:{src}"], "archive"),
    (["backup", "store1", "--id", "h2", "/tmp/evil.tar:{src}"], "archive"),
    (["backup", "store1", "--type", "../host", "--id", "h2", "root.tar:{src}"], "type"),
    (["snapshots", "store1", "--ns", "../../.."], "ns"),
    (["restore", "store1", "host/../../../etc", "root.tar", "{tmp}/out"], "snapshot"),
    (["restore", "store1", "{snap}", "../../canary.txt", "{tmp}/out"], "archive"),
    (["restore", "store1", "{snap}", "/etc/passwd", "{tmp}/out"], "archive"),
    (["catalog", "rebuild", "store1", "host/h1/../../../x"], "snapshot"),
    (["verify", "store1", "--ns", "a/../.."], "ns"),
    (["prune", "store1", "--keep-last", "1", "--ns", ".."], "ns"),
])
def test_cli_refuses_traversal(world, argv, field):
    tmp = world["tmp"]
    argv = [a.format(src=tmp / "src", tmp=tmp, snap=world["snapshot"]) for a in argv]
    out = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command(*argv, stdout=out, stderr=io.StringIO())
    assert info.value.returncode == 2, (argv, str(info.value))
    assert field in str(info.value).lower(), (argv, str(info.value))
    assert CANARY not in out.getvalue()
    assert _outside(tmp) == world["files"] and not (tmp / "out").exists()


@pytest.mark.parametrize("member,kind", [
    ("../escaped.txt", "file"), ("/tmp/abs-escaped.txt", "file"), ("a/../../escaped.txt", "file"),
    ("link", "symlink-then-write"), ("hard", "hardlink"),
])
def test_restore_of_a_hostile_tar_stays_in_the_target(tmp_path, member, kind):
    """An archive whose members say ../, / or go through links cannot write outside the target."""
    import tarfile

    from datastores.engine.errors import DatastoreError
    from datastores.engine.report import Reporter
    from datastores.engine.restore import _extract_tar

    class Stream(io.BytesIO):
        size = 0

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        def add_file(name, data=b"evil"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if kind == "file":
            add_file(member)
        elif kind == "symlink-then-write":
            info = tarfile.TarInfo("link")
            info.type, info.linkname = tarfile.SYMTYPE, str(tmp_path)
            tf.addfile(info)
            add_file("link/escaped.txt")
        else:
            info = tarfile.TarInfo("hard")
            info.type, info.linkname = tarfile.LNKTYPE, str(tmp_path / "canary.txt")
            tf.addfile(info)
    (tmp_path / "canary.txt").write_text(CANARY)
    stream = Stream(buf.getvalue())
    stream.size = len(buf.getvalue())
    before = {str(p) for p in tmp_path.rglob("*")}
    with pytest.raises(DatastoreError) as info:
        _extract_tar(stream, tmp_path / "target", Reporter())
    assert "refused" in str(info.value) or "escape" in str(info.value)
    assert {str(p) for p in tmp_path.rglob("*")} == before
    assert not Path("/tmp/abs-escaped.txt").exists()
    assert (tmp_path / "canary.txt").read_text() == CANARY
