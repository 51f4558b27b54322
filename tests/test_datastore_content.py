"""The Content tab: snapshots listed as a tree, Forget, Protect, Notes, downloads and the
catalog-driven file browser."""
import io
import json
import tarfile
from io import StringIO

import pytest
from django.core.management import call_command

from datastores.engine.datastore import Datastore as Eng
from datastores.services import create_datastore

pytestmark = pytest.mark.django_db

T1, T2 = 1764126000, 1764212400  # 2025-11-26T03:00:00Z, 2025-11-27T03:00:00Z
S1, S2 = "host/web01/2025-11-26T03:00:00Z", "host/web01/2025-11-27T03:00:00Z"


@pytest.fixture
def store(tmp_path):
    cfg = create_datastore("content1", str(tmp_path / "store"))
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (src / "big.bin").write_bytes(bytes(range(256)) * 4096)
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"disk image " * 100000)
    for t in (T1, T2):
        call_command("backup", "content1", "--id", "web01", f"root.tar:{src}", f"disk.img:{disk}",
                     "--backup-time", str(t), stdout=StringIO())
    return cfg, disk


def test_content_lists_snapshots_and_forget_removes_one(admin_client, store):
    cfg, _ = store
    page = admin_client.get("/datastore/content1/content/").content.decode()
    assert "host/web01" in page and S1 in page and S2 in page
    assert "Forget snapshot " + S1 in page and "root.tar" in page and "disk.img" in page
    response = admin_client.post(f"/datastore/content1/forget/{S1}", {"ns": ""})
    assert response.status_code == 302
    assert [r.name for r in Eng(cfg.path).list_snapshots()] == [S2]
    page = admin_client.get("/datastore/content1/content/").content.decode()
    assert f'data-snapshot="{S1}"' not in page and f'data-snapshot="{S2}"' in page
    assert f"Snapshot {S1} removed." in page


def test_protect_blocks_forget_and_notes_are_saved(admin_client, store):
    cfg, _ = store
    admin_client.post(f"/datastore/content1/protect/{S2}", {"ns": "", "protected": "true"})
    response = admin_client.post(f"/datastore/content1/forget/{S2}", {"ns": ""}, follow=True)
    assert "is protected" in response.content.decode()
    assert S2 in [r.name for r in Eng(cfg.path).list_snapshots()]
    dialog = admin_client.get(f"/datastore/content1/notes/{S2}", HTTP_HX_REQUEST="true").content.decode()
    assert "<dialog" in dialog and "Notes" in dialog and "<html" not in dialog
    admin_client.post(f"/datastore/content1/notes-save/{S2}", {"ns": "", "notes": "before the upgrade\nline 2"})
    eng = Eng(cfg.path)
    assert eng.load_manifest(eng.find_snapshot(S2)).notes == "before the upgrade\nline 2"
    page = admin_client.get("/datastore/content1/content/").content.decode()
    assert "before the upgrade" in page and "Unprotect" in page
    snaps = admin_client.get("/api2/json/admin/datastore/content1/snapshots").json()["data"]
    by_time = {s["backup-time"]: s for s in snaps}
    assert by_time[T2]["protected"] is True and by_time[T2]["comment"] == "before the upgrade"
    assert {f["filename"] for f in by_time[T2]["files"]} == {"root.tar.didx", "disk.img.fidx"}


def test_audit_user_sees_content_but_cannot_forget(audit_client, store):
    cfg, _ = store
    assert S1 in audit_client.get("/datastore/content1/content/").content.decode()
    assert audit_client.post(f"/datastore/content1/forget/{S1}", {"ns": ""}).status_code == 403
    assert len(Eng(cfg.path).list_snapshots()) == 2


def test_downloads_and_file_browser(admin_client, store):
    cfg, disk = store
    img = admin_client.get(f"/datastore/content1/download/{S1}?file=disk.img.fidx")
    assert img.status_code == 200 and b"".join(img.streaming_content) == disk.read_bytes()
    tar = admin_client.get(f"/datastore/content1/download/{S1}?file=root.tar.didx")
    with tarfile.open(fileobj=io.BytesIO(b"".join(tar.streaming_content))) as tf:
        assert tf.extractfile("etc/hosts").read() == b"127.0.0.1 localhost\n"
    manifest = admin_client.get(f"/datastore/content1/download/{S1}?file=index.json.blob")
    assert json.loads(manifest.content)["backup-id"] == "web01"
    assert admin_client.get(f"/datastore/content1/download/{S1}?file=../../etc/passwd").status_code == 400

    root = admin_client.get(f"/datastore/content1/browse/{S1}?archive=root.tar").content.decode()
    assert "etc/" in root and "big.bin" in root
    etc = admin_client.get(f"/datastore/content1/browse/{S1}?archive=root.tar&dir=etc").content.decode()
    assert "hosts" in etc and "path=etc/hosts" in etc
    one = admin_client.get(f"/datastore/content1/download-file/{S1}?archive=root.tar&path=etc/hosts")
    assert b"".join(one.streaming_content) == b"127.0.0.1 localhost\n"
    missing = admin_client.get(f"/datastore/content1/download-file/{S1}?archive=root.tar&path=nope")
    assert missing.status_code == 400 and b"no file" in missing.content
    assert admin_client.get("/datastore/content1/browse/host/web01/2030-01-01T00:00:00Z").status_code == 404


def test_namespaces_show_as_tree_levels(admin_client, tmp_path):
    create_datastore("nsstore1", str(tmp_path / "store"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("in a namespace")
    call_command("backup", "nsstore1", "--id", "app", "--ns", "prod/eu", f"root.tar:{src}",
                 "--backup-time", str(T1), stdout=StringIO())
    out = StringIO()
    call_command("snapshots", "nsstore1", "--ns", "prod", "--output-format", "json", stdout=out)
    assert [(s["ns"], s["snapshot"]) for s in json.loads(out.getvalue())] == [
        ("prod/eu", "host/app/2025-11-26T03:00:00Z")]
    page = admin_client.get("/datastore/nsstore1/content/").content.decode()
    assert "Namespace <strong>prod</strong>" in page and "Namespace <strong>prod/eu</strong>" in page
    assert page.index("prod/eu</strong>") < page.index('data-snapshot="host/app/2025-11-26T03:00:00Z"')
    call_command("restore", "nsstore1", "host/app/2025-11-26T03:00:00Z", "root.tar", str(tmp_path / "out"),
                 "--ns", "prod/eu", stdout=StringIO())
    assert (tmp_path / "out" / "f").read_text() == "in a namespace"
    r = admin_client.post("/datastore/nsstore1/forget/host/app/2025-11-26T03:00:00Z", {"ns": "prod/eu"})
    assert r.status_code == 302 and Eng(tmp_path / "store").list_snapshots() == []


def test_catalog_rebuild_brings_the_file_browser_back(admin_client, store):
    cfg, _ = store
    eng = Eng(cfg.path)
    (eng.snapshot_path(eng.find_snapshot(S1)) / "catalog.blob").unlink()
    page = admin_client.get(f"/datastore/content1/browse/{S1}?archive=root.tar").content.decode()
    assert "no catalog" in page and "Rebuild Catalog" in page
    out = StringIO()
    call_command("catalog", "rebuild", "content1", S1, stdout=out)
    assert "TASK OK" in out.getvalue()
    page = admin_client.get(f"/datastore/content1/browse/{S1}?archive=root.tar").content.decode()
    assert "big.bin" in page and "Rebuild Catalog" not in page


def test_api_groups_status_and_forget(admin_client, store):
    cfg, _ = store
    groups = admin_client.get("/api2/json/admin/datastore/content1/groups").json()["data"]
    assert groups == [{"backup-type": "host", "backup-id": "web01", "backup-count": 2, "last-backup": T2,
                       "files": [], "owner": "root@pam"}]
    status = admin_client.get("/api2/json/admin/datastore/content1/status").json()["data"]
    assert status["snapshots"] == 2 and status["total"] > 0
    assert admin_client.get("/api2/json/admin/datastore/content1/namespace").json()["data"] == [{"ns": ""}]
    r = admin_client.delete(f"/api2/json/admin/datastore/content1/snapshots?backup-type=host&backup-id=web01"
                            f"&backup-time={T1}")
    assert r.status_code == 200 and [x.name for x in Eng(cfg.path).list_snapshots()] == [S2]
    r = admin_client.delete("/api2/json/admin/datastore/content1/snapshots?backup-type=host")
    assert r.status_code == 400 and "backup-time" in r.json()["errors"]
