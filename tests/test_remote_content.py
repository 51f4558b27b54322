"""Remote → Content: what a bucket holds, read from markers and manifests (no
chunk downloaded); the CLI `remote content`; the Restore archive dialog with
its key choice (a datastore's key or an uploaded key file + passphrase) and
its field-named errors; a restore started from the page runs on a real Celery
worker and brings back the bytes."""
import json
import re
import random
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from datastores.engine.backup import run_backup
from datastores.engine.datastore import Datastore as EngineStore
from datastores.models import Datastore
from pbsweb.models import Task
from tests.s3proxy import s3proxy  # noqa: F401  (fixture)
from tests.test_restore_fresh_install import (PASSPHRASE, T0, cli_error, give_store_key, make_keyfile, make_remote,
                                              make_tree, push, run_cli, tree_state)

MiB = 1024 * 1024
PLAIN = "host/web01/2026-09-21T14:13:20Z"
SECRET = "host/vault/2026-09-21T14:30:00Z"


def _bucket_with_two_stores(tmp_path, endpoint, bucket, s3_client):
    """store1 -> 'backups' (a plain tree at the root, an encrypted image in namespace prod),
    store2 -> 'other'; plus a top-level prefix that is no datastore."""
    keyfile = tmp_path / "vault-key.json"
    crypt = make_keyfile(keyfile)
    e1 = EngineStore.create(tmp_path / "ds1")
    src = make_tree(tmp_path / "src")
    run_backup(e1, "host", "web01", [("root.tar", src)], backup_time=T0)
    e1.create_namespace("prod")
    img = tmp_path / "vault.img"
    img.write_bytes(random.Random(5).randbytes(2 * MiB))
    run_backup(e1, "host", "vault", [("disk.img", img)], ns="prod", crypt=crypt, backup_time=T0 + 1000)
    ds1 = Datastore.objects.create(name="store1", path=str(tmp_path / "ds1"))
    e2 = EngineStore.create(tmp_path / "ds2")
    run_backup(e2, "ct", "100", [("root.tar", make_tree(tmp_path / "src2", seed=9))], backup_time=T0)
    Datastore.objects.create(name="store2", path=str(tmp_path / "ds2"))
    remote = make_remote(endpoint, bucket)
    push("store1", prefix="backups", job="push-1")
    push("store2", prefix="other", job="push-2")
    s3_client.put_object(Bucket=bucket, Key="random/readme.txt", Body=b"not a datastore")
    return ds1, remote, crypt, keyfile, src, img


@pytest.fixture
def two_stores(tmp_path, s3proxy, s3_client, s3_bucket, db):
    return _bucket_with_two_stores(tmp_path, s3proxy.url, s3_bucket, s3_client)


def test_content_page_reads_manifests_only(two_stores, s3proxy, admin_client, audit_user):
    ds1, remote, crypt, keyfile, src, img = two_stores
    s3proxy.reset_counts()
    html = admin_client.get("/remotes/s3-test/content/").content.decode()
    assert "?remote_store=backups" in html and "?remote_store=other" in html and "random" not in html
    assert "No restore drill has verified this remote yet" in html

    html = admin_client.get("/remotes/s3-test/content/?remote_store=backups").content.decode()
    assert PLAIN in html and SECRET.split("/", 2)[2] in html and "prod/host/vault" in html
    assert crypt.fingerprint in html and "Restore root.tar" in html and "Restore disk.img" in html
    assert "2.00 MiB" in html  # the image's size from its manifest
    assert "Pull into a datastore" in html and "remote_store=backups" in html
    html = admin_client.get("/remotes/s3-test/content/?remote_store=backups&ns=prod").content.decode()
    assert "host/vault" in html and PLAIN not in html
    # browsing downloaded no chunk and wrote nothing
    assert not [k for k in s3proxy.keys("GET") if "/.chunks/" in k]
    assert s3proxy.counts["PUT"] == s3proxy.counts["DELETE"] == 0

    err = admin_client.get("/remotes/s3-test/content/?remote_store=nope").content.decode()
    assert "the bucket has no datastore under prefix &#x27;nope&#x27;" in err
    assert admin_client.get("/remotes/missing/content/").status_code == 404
    assert 'href="/remotes/s3-test/content/"' in admin_client.get("/remotes/s3-test/").content.decode()

    audit = Client()
    audit.force_login(audit_user)
    page = audit.get("/remotes/s3-test/content/?remote_store=backups")
    assert page.status_code == 200 and PLAIN in page.content.decode()
    assert "Restore root.tar" not in page.content.decode()
    assert audit.get(f"/remotes/s3-test/content/restore/?remote_store=backups&snapshot={PLAIN}").status_code == 403
    assert audit.post("/remotes/s3-test/content/restore/", {"remote_store": "backups"}).status_code == 403


def test_cli_remote_content(two_stores):
    ds1, remote, crypt, keyfile, src, img = two_stores
    text = run_cli("remote", "content", "s3-test")
    assert text.splitlines()[0].startswith("┌") and "│ snapshot" in text
    assert f"backups: {PLAIN}" in text and "other: ct/100/" in text
    assert f"yes ({crypt.fingerprint})" in text
    items = json.loads(run_cli("remote", "content", "s3-test", "--remote-store", "backups", "--output-format", "json"))
    by_name = {i["snapshot"]: i for i in items}
    assert set(by_name) == {PLAIN, "host/vault/2026-09-21T14:30:00Z"}
    vault = by_name["host/vault/2026-09-21T14:30:00Z"]
    assert vault["ns"] == "prod" and vault["encrypted"] and vault["fingerprint"] == crypt.fingerprint
    assert vault["files"][0]["filename"] == "disk.img.fidx" and vault["files"][0]["size"] == 2 * MiB
    assert not by_name[PLAIN]["encrypted"] and by_name[PLAIN]["fingerprint"] is None
    assert {i["remote-store"] for i in items} == {"backups"}  # as sync-job calls the prefix
    prod = json.loads(run_cli("remote-content", "s3-test", "--remote-store", "backups", "--ns", "prod",
                              "--output-format", "json"))
    assert [i["snapshot"] for i in prod] == ["host/vault/2026-09-21T14:30:00Z"]
    for args, field in [(("remote", "content", "nope"), "id:"),
                        (("remote", "content", "s3-test", "--remote-store", "nope"), "--remote-store:"),
                        (("remote", "content", "s3-test", "--store", "backups"), "--store:"),
                        (("remote", "content", "s3-test", "--ns", "../etc"), "--ns:")]:
        err = cli_error(*args)
        assert err.returncode == 2 and str(err).startswith(field), str(err)


def _post_restore(client, data, files=None):
    payload = dict(data)
    payload.update(files or {})
    return client.post("/remotes/s3-test/content/restore/", payload)


def test_restore_dialog_errors_name_their_field(two_stores, tmp_path, admin_client):
    ds1, remote, crypt, keyfile, src, img = two_stores
    rd = "ns/prod/" + SECRET
    dialog = admin_client.get(f"/remotes/s3-test/content/restore/?remote_store=backups&snapshot={rd}&archive=disk.img")
    html = dialog.content.decode()
    assert dialog.status_code == 200 and crypt.fingerprint in html and "upload a key file" in html
    base = {"remote_store": "backups", "snapshot": rd, "archive": "disk.img", "target": str(tmp_path / "out.img")}

    def errors(resp):
        assert resp.status_code == 400, resp.status_code
        return resp.content.decode()

    assert 'data-field="target"' in errors(_post_restore(admin_client, {**base, "target": "relative/path"}))
    assert 'data-field="key_source"' in errors(_post_restore(admin_client, {**base, "key_source": ""}))
    html = errors(_post_restore(admin_client, {**base, "key_source": "upload"}))
    assert 'data-field="keyfile"' in html and "upload its key file" in html
    wrong = tmp_path / "wrong.json"
    make_keyfile(wrong)
    html = errors(_post_restore(admin_client, {**base, "key_source": "upload", "passphrase": PASSPHRASE},
                                {"keyfile": SimpleUploadedFile("k.json", wrong.read_bytes())}))
    assert 'data-field="keyfile"' in html and "wrong key" in html and crypt.fingerprint in html
    html = errors(_post_restore(admin_client, {**base, "key_source": "upload", "passphrase": "nope nope"},
                                {"keyfile": SimpleUploadedFile("k.json", keyfile.read_bytes())}))
    assert 'data-field="passphrase"' in html and "wrong passphrase" in html
    assert str(tmp_path) not in html.split("wrong passphrase", 1)[1][:200]  # no server temp path leaks
    # a datastore whose key is another one
    give_store_key(ds1, wrong)
    html = errors(_post_restore(admin_client, {**base, "key_source": "store:store1"}))
    assert 'data-field="key_source"' in html and "wrong key" in html
    html = errors(_post_restore(admin_client, {**base, "snapshot": "host/nothing/2026-01-01T00:00:00Z"}))
    assert "does not exist" in html
    assert PASSPHRASE not in html
    assert not Task.objects.filter(worker_type="reader").exists()
    assert not list(Path(settings.DATA_DIR).glob("restore-keys/*.key"))


def _wait(upid, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = Task.objects.get(upid=upid)
        if not task.running:
            return task
        time.sleep(0.3)
    raise AssertionError(f"task {upid} did not finish")


def test_restore_from_page_on_celery_worker(celery_worker, tmp_path, s3_server, s3_client, s3_bucket, admin_client):
    ds1, remote, crypt, keyfile, src, img = _bucket_with_two_stores(tmp_path, s3_server.url, s3_bucket, s3_client)
    rd = "ns/prod/" + SECRET
    # an uploaded key file + passphrase
    resp = _post_restore(admin_client, {"remote_store": "backups", "snapshot": rd, "archive": "disk.img",
                                        "target": str(tmp_path / "vault-restored.img"), "key_source": "upload",
                                        "passphrase": PASSPHRASE},
                         {"keyfile": SimpleUploadedFile("vault-key.json", keyfile.read_bytes())})
    assert resp.status_code == 302 and resp["Location"].startswith("/tasks/UPID:")
    task = _wait(Task.objects.get(worker_type="reader").upid)
    log = open(task.log_path).read()
    assert task.state == Task.OK, log + celery_worker.log_path.read_text()[-3000:]
    assert (tmp_path / "vault-restored.img").read_bytes() == img.read_bytes()
    assert PASSPHRASE not in log and PASSPHRASE not in json.dumps(task.arguments)
    assert not list(Path(settings.DATA_DIR).glob("restore-keys/*.key")), "the uploaded key is not kept"
    # the plain tree, no key
    resp = _post_restore(admin_client, {"remote_store": "backups", "snapshot": PLAIN, "archive": "root.tar",
                                        "target": str(tmp_path / "tree")})
    assert resp.status_code == 302
    task = _wait(Task.objects.filter(worker_type="reader").order_by("-id").first().upid)
    assert task.state == Task.OK
    assert tree_state(tmp_path / "tree") == tree_state(src)
    # with a datastore's key
    give_store_key(ds1, keyfile)
    resp = _post_restore(admin_client, {"remote_store": "backups", "snapshot": rd, "archive": "disk.img",
                                        "target": str(tmp_path / "again.img"), "key_source": "store:store1"})
    assert resp.status_code == 302
    task = _wait(Task.objects.filter(worker_type="reader").order_by("-id").first().upid)
    assert task.state == Task.OK and (tmp_path / "again.img").read_bytes() == img.read_bytes()


@pytest.mark.browser
def test_content_in_browser_pull_dialog_and_restore(admin_user, web_server, celery_worker, page, tmp_path,
                                                    s3_server, s3_client, s3_bucket):
    from playwright.sync_api import expect

    from tests.conftest import browser_login
    ds1, remote, crypt, keyfile, src, img = _bucket_with_two_stores(tmp_path, s3_server.url, s3_bucket, s3_client)
    browser_login(page, web_server)
    page.goto(f"{web_server.url}/remotes/s3-test/")
    page.locator(".tabs").get_by_role("link", name="Content").click()
    page.get_by_role("link", name="backups").click()
    expect(page.locator(f'tr[data-snapshot="{PLAIN}"]')).to_contain_text("No")
    expect(page.locator(f'tr[data-snapshot="ns/prod/{SECRET}"]')).to_contain_text(crypt.fingerprint)
    page.screenshot(path="test-output/remote-content.png", full_page=True)

    # Pull into a datastore: the pull dialog, prefilled
    page.locator("table.remote-stores tr.selected").get_by_text("Pull into a datastore").click()
    dialog = page.locator("dialog.syncjob-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".window-title")).to_contain_text("Pull Direction")
    expect(dialog.locator("#id_remote")).to_have_value("s3-test")
    expect(dialog.locator("#id_remote_store")).to_have_value("backups")
    dialog.get_by_role("button", name="Cancel").click()

    # Restore archive: a bad target first (shown under its field), then a real one
    page.locator(f'tr[data-snapshot="{PLAIN}"]').get_by_text("Restore root.tar").click()
    dialog = page.locator("dialog.restore-dialog")
    expect(dialog).to_be_visible()
    page.screenshot(path="test-output/remote-restore-dialog.png")
    dialog.locator("#id_target").fill("not/absolute")
    dialog.get_by_role("button", name="Restore").click()
    expect(page.locator('dialog.restore-dialog .field-error[data-field="target"]')).to_contain_text("absolute")
    page.locator("dialog.restore-dialog #id_target").fill(str(tmp_path / "browser-restore"))
    page.locator("dialog.restore-dialog").get_by_role("button", name="Restore").click()
    page.wait_for_url(re.compile(r".*/tasks/UPID.*"))
    expect(page.locator("body")).to_contain_text("TASK OK", timeout=60000)
    assert tree_state(tmp_path / "browser-restore") == tree_state(src)
