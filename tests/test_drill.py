"""Restore drills against the moto bucket behind the counting proxy: a drill
downloads every chunk of the snapshots it checks exactly once, restores one
archive to a scratch directory, records its egress on the remote, and turns
red naming the key of a corrupt or missing object. Pages and CLI show it."""
import random
from pathlib import Path

import pytest
from django.conf import settings

from datastores.engine.backup import run_backup
from datastores.engine.datastore import Datastore as EngineStore
from datastores.models import Datastore
from remotes.models import RemoteUsage
from syncjobs.drills import drill_status, pick_snapshots, remotes_never_passed
from syncjobs.models import DrillJob, DrillRun
from tests.s3proxy import s3proxy  # noqa: F401  (fixture)
from tests.test_restore_fresh_install import (PASSPHRASE, T0, cli_error, corrupt, give_store_key, make_keyfile,
                                              make_remote, make_tree, push, run_cli)

MiB = 1024 * 1024


def _img(path: Path, seeds) -> Path:
    path.write_bytes(b"".join(random.Random(s).randbytes(MiB) for s in seeds))
    return path


@pytest.fixture
def pushed(tmp_path, s3proxy, s3_bucket, db):
    """host/web01: 4 snapshots (trees); host/db01: 1 snapshot (an 8 MiB image), pushed to 'backups'."""
    path = tmp_path / "ds-store1"
    engine = EngineStore.create(path)
    refs = []
    for i in range(4):
        src = make_tree(tmp_path / f"src-{i}", seed=i)
        refs.append(run_backup(engine, "host", "web01", [("root.tar", src)], backup_time=T0 + i * 3600).ref)
    img = _img(tmp_path / "disk.img", range(100, 108))
    refs.append(run_backup(engine, "host", "db01", [("disk.img", img)], backup_time=T0 + 100).ref)
    Datastore.objects.create(name="store1", path=str(path))
    make_remote(s3proxy.url, s3_bucket)
    push()
    s3proxy.reset_counts()
    return engine, refs


def _chunk_key(d):
    return f"backups/.chunks/{d[:4]}/{d}"


def test_drill_ok_gets_each_chunk_once_and_records_egress(pushed, s3proxy, admin_client):
    engine, refs = pushed
    out = run_cli("drill", "run", "s3-test", "--sample", "1", "--seed", "7")
    assert "TASK OK" in out
    assert f"restored backups/{refs[3].rel_dir}/root.tar.didx to a scratch directory" in out  # newest, smallest
    assert "size matches the manifest" in out
    assert "Summary: 3 snapshots" in out
    down, get_count = s3proxy.bytes_down, s3proxy.counts["GET"]
    chunk_gets = [k for k in s3proxy.keys("GET") if "/.chunks/" in k]

    # which snapshots: the newest of each group + one seeded sample of web01's older three
    from syncjobs.remote_content import list_snapshots, make_bucket
    from remotes.models import Remote
    remote = Remote.objects.get(remote_id="s3-test")
    picked = pick_snapshots(list_snapshots(make_bucket(remote, remote.client(), "backups")).snapshots, 1, 7)
    assert len(picked) == 3
    picked_dirs = {p.rel_dir for p in picked}
    assert refs[3].rel_dir in picked_dirs and refs[4].rel_dir in picked_dirs

    s3proxy_gets = len(chunk_gets)
    expected = {_chunk_key(d) for r in refs if r.rel_dir in picked_dirs for d in engine.chunk_digests(r)}
    assert len(chunk_gets) == len(set(chunk_gets)) == len(expected), "each chunk GET exactly once"
    assert set(chunk_gets) == expected
    assert s3proxy.counts["PUT"] == 0 and s3proxy.counts["DELETE"] == 0

    run = DrillRun.objects.get()
    assert run.ok and run.snapshots == 3 and run.chunks == s3proxy_gets
    assert run.bytes_downloaded == down
    usage = RemoteUsage.objects.get(task_upid=run.task_upid)
    assert usage.bytes_down == run.bytes_downloaded and usage.get == get_count
    assert not any((Path(settings.DATA_DIR) / "drill-scratch").iterdir()), "scratch removed"

    st = drill_status("s3-test")
    assert st["ok"] and st["ever_passed"] and st["text"].startswith("last verified restore: ")
    assert st["text"].endswith(", 3 snapshots, OK")
    assert "s3-test" not in remotes_never_passed()
    assert st["text"] in admin_client.get("/drills/").content.decode()
    assert st["text"] in admin_client.get("/remotes/s3-test/content/").content.decode()
    listing = run_cli("drill", "list")
    assert "s3-test" in listing and "OK" in listing


def test_drill_red_after_corruption_names_the_key(pushed, s3proxy, s3_client, s3_bucket, admin_client):
    engine, refs = pushed
    run_cli("drill", "create", "weekly-drill", "--remote", "s3-test", "--remote-store", "backups", "--sample", "0")
    job = DrillJob.objects.get()
    assert job.schedule == "weekly" and job.next_run is not None
    assert "TASK OK" in run_cli("drill", "run", "s3-test", "--remote-store", "backups")
    job.refresh_from_db()
    assert job.last_ok and job.last_snapshots == 2

    victim = _chunk_key(sorted(engine.chunk_digests(refs[3]))[0])
    corrupt(s3_client, s3_bucket, victim)
    err = cli_error("drill", "run", "s3-test", "--remote-store", "backups")
    assert err.returncode == 1 and victim in str(err) and "restore drill failed" in str(err)
    job.refresh_from_db()
    assert job.last_ok is False and victim in job.last_message
    st = drill_status("s3-test")
    assert not st["ok"] and st["ever_passed"] and victim in st["text"]
    page = admin_client.get("/drills/").content.decode()
    assert "FAILED" in page and victim in page
    assert victim in admin_client.get("/remotes/s3-test/content/").content.decode()
    assert victim in run_cli("drill", "list") and "FAILED" in run_cli("drill", "list")

    # a missing object is named too
    missing = f"backups/{refs[4].rel_dir}/disk.img.fidx"
    s3_client.delete_object(Bucket=s3_bucket, Key=missing)
    err = cli_error("drill", "run", "s3-test", "--remote-store", "backups")
    assert f"{missing}: object is missing" in str(err)


def test_drill_encrypted_uses_the_servers_key(tmp_path, s3_server, s3_bucket, db):
    keyfile = tmp_path / "k.json"
    crypt = make_keyfile(keyfile)
    engine = EngineStore.create(tmp_path / "ds")
    run_backup(engine, "host", "web01", [("root.tar", make_tree(tmp_path / "src"))], crypt=crypt, backup_time=T0)
    ds = Datastore.objects.create(name="store1", path=str(tmp_path / "ds"))
    make_remote(s3_server.url, s3_bucket)
    push()
    # no key on this server: chunks are checked by CRC, the restore step is skipped (a warning)
    out = run_cli("drill", "run", "s3-test")
    assert "restore step skipped" in out and "TASK WARNINGS" in out
    give_store_key(ds, keyfile, PASSPHRASE)
    out = run_cli("drill", "run", "s3-test")
    assert "TASK OK" in out and "restored backups/host/web01" in out


def test_drill_dialog_cli_bad_input_and_never_passed_flag(tmp_path, s3_server, s3_bucket, admin_client,
                                                          audit_user):
    from django.test import Client
    audit_client = Client()
    audit_client.force_login(audit_user)
    make_remote(s3_server.url, s3_bucket)
    make_remote(s3_server.url, s3_bucket, remote_id="other-remote")
    assert set(remotes_never_passed()) == {"s3-test", "other-remote"}
    page = admin_client.get("/drills/").content.decode()
    assert "Never passed a restore drill: other-remote, s3-test" in page
    assert "never verified" in run_cli("drill", "list")

    bad = admin_client.post("/drills/add/", {"id": "-x", "remote": "nope", "schedule": "every blue moon",
                                             "sample_size": "-1"})
    assert bad.status_code == 400
    html = bad.content.decode()
    for field in ("id", "remote", "schedule", "sample_size"):
        assert f'data-field="{field}"' in html, field
    assert not DrillJob.objects.exists()
    ok = admin_client.post("/drills/add/", {"id": "nightly", "remote": "s3-test", "remote_store": "",
                                            "sample_size": "3", "schedule": "daily", "enabled": "on"})
    assert ok.status_code == 302
    job = DrillJob.objects.get()
    assert (job.remote.remote_id, job.sample_size, job.schedule) == ("s3-test", 3, "daily")
    assert "nightly" in admin_client.get("/drills/").content.decode()
    assert audit_client.get("/drills/").status_code == 200
    assert audit_client.post("/drills/nightly/run/").status_code == 403
    assert audit_client.post("/drills/add/", {"id": "x1x"}).status_code == 403

    for args, flag in [(("drill", "run", "nope"), "remote:"), (("drill", "run", "s3-test", "--sample", "abc"), "--sample:"),
                       (("drill", "create", "nightly", "--remote", "s3-test"), "id:"),
                       (("drill", "create", "d2x", "--remote", "nope"), "--remote:"),
                       (("drill", "create", "d2x", "--remote", "s3-test", "--schedule", "never ever"), "--schedule:"),
                       (("drill", "create", "d2x", "--remote", "s3-test", "--remote-store", "a b"), "--remote-store:"),
                       (("drill", "run", "s3-test", "--remote-store", "../x"), "--remote-store:"),
                       (("drill", "remove", "nope"), "id:")]:
        err = cli_error(*args)
        assert err.returncode == 2 and str(err).startswith(flag), (args, str(err))
    # one vocabulary: --store is a local datastore (sync-job); a bucket prefix is --remote-store
    for args in (("drill", "run", "s3-test", "--store", "backups"),
                 ("drill", "create", "d2x", "--remote", "s3-test", "--store", "backups")):
        err = cli_error(*args)
        assert err.returncode == 2 and str(err).startswith("--store:") and "--remote-store" in str(err), str(err)
    assert DrillJob.objects.get().job_id == "nightly"
    # an empty bucket: the drill fails saying so
    err = cli_error("drill", "run", "s3-test")
    assert err.returncode == 1 and "holds no datastore" in str(err)
    assert admin_client.post("/drills/nightly/remove/").status_code == 302
    assert not DrillJob.objects.exists()


@pytest.mark.browser
def test_drill_add_and_run_now_in_browser(admin_user, web_server, celery_worker, page, tmp_path,
                                          s3_server, s3_bucket):
    import re

    from playwright.sync_api import expect

    from tests.conftest import browser_login
    engine = EngineStore.create(tmp_path / "ds")
    run_backup(engine, "host", "web01", [("root.tar", make_tree(tmp_path / "src"))], backup_time=T0)
    Datastore.objects.create(name="store1", path=str(tmp_path / "ds"))
    make_remote(s3_server.url, s3_bucket)
    push()
    browser_login(page, web_server)
    page.goto(f"{web_server.url}/drills/")
    expect(page.locator(".drill-remotes")).to_contain_text("never verified")
    page.get_by_role("button", name="Add", exact=True).click()
    dialog = page.locator("dialog.drill-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#id_schedule")).to_have_value("weekly")
    dialog.locator("#id_id").fill("x")
    dialog.locator("#id_remote").select_option("s3-test")
    dialog.get_by_role("button", name="Add").click()
    expect(page.locator('dialog.drill-dialog .field-error[data-field="id"]')).to_contain_text("3-32 characters")
    page.locator("dialog.drill-dialog #id_id").fill("weekly-drill")
    page.locator("dialog.drill-dialog").get_by_role("button", name="Add").click()
    row = page.locator('#drill-grid tr[data-id="weekly-drill"]')
    expect(row).to_contain_text("never run")
    row.click()
    page.get_by_role("button", name="Run now").click()
    page.wait_for_url(re.compile(r".*/tasks/UPID.*"))
    expect(page.locator("body")).to_contain_text("TASK OK", timeout=60000)
    page.goto(f"{web_server.url}/drills/")
    expect(page.locator('#drill-grid tr[data-id="weekly-drill"]')).to_contain_text("OK: 1 snapshots")
    expect(page.locator(".drill-remotes")).to_contain_text("last verified restore:")
    page.screenshot(path="test-output/drills.png", full_page=True)
