"""pbsweb-client against the real HTTPS server: back up a tree, restore it byte-identical
(modes, mtimes, symlinks), change 1% and back up again (only new chunks are sent, as the
client and the server's task log both say), --pattern, --exclude, listing, status."""
import json
import os
import time

import pytest

from tests.client_helpers import MiB, chunk_files, client, make_tree, net, task_log, tree_state  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def test_backup_restore_identical_then_incremental_sends_only_new_chunks(net, tmp_path):
    user = net.user("host1@pbs", "DatastoreBackup")
    env = net.env(*net.token(user, "h1"))
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    before = tree_state(src)

    out = json.loads(client("backup", f"root.tar:{src}", "--backup-id", "web01", "--output-format", "json",
                            env=env, check=0).stdout)
    assert out["previous"] is None and out["sent_chunks"] >= 5 and out["reused_chunks"] == 0
    snap1 = out["snapshot"]
    eng = net.engine()
    [ref] = eng.list_snapshots()
    assert ref.name == snap1 and ref.finished
    assert eng.get_owner("", "host", "web01") == "host1@pbs!h1"
    # The process that opened the session removes its directory within a second.
    deadline = time.monotonic() + 5
    while list((net.store_path / ".sessions").glob("*/session.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list((net.store_path / ".sessions").glob("*/session.json"))

    target = tmp_path / "restored"
    res = client("restore", snap1, "root.tar", target, env=env, check=0)
    assert "restored" in res.stdout
    assert tree_state(target) == before

    # Change ~1% (one spot in the 12 MiB random file) and back up again.
    with open(src / "random.bin", "r+b") as f:
        f.seek(5 * MiB)
        f.write(b"X" * 200_000)
    chunks_before = chunk_files(net.store_path)
    time.sleep(1.1)        # the next snapshot needs a later backup time
    text = client("backup", f"root.tar:{src}", "--backup-id", "web01", env=env, check=0).stdout
    total_chunks = int(text.split(" chunks: ")[0].rsplit(", ", 1)[1])
    new = int(text.split(" chunks: ")[1].split(" new")[0])
    assert 1 <= new <= 3 and total_chunks >= 6, text
    assert "reused (not sent)" in text
    added = chunk_files(net.store_path) - chunks_before
    assert len(added) == new

    from pbsweb.models import Task
    task = Task.objects.filter(worker_type="backup").order_by("-id").first()
    log = task_log(task.upid)
    assert f"{new} new" in log and f"{total_chunks - new} reused" in log and "not sent" in log
    assert log.rstrip().endswith("TASK OK") and task.state == "ok"
    assert "previous snapshot host/web01/" in log
    assert task.store == "netstore" and task.result["new"] == new

    # The session is in the task history like any task, with its log.
    from django.contrib.auth import get_user_model
    from django.test import Client
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root@pbs", password="pw-1234567"))
    page = admin.get(f"/tasks/{task.upid}/").content.decode()
    assert "Backup netstore:host/web01" in page
    assert "reused" in admin.get(f"/tasks/{task.upid}/log/").content.decode()

    # Listing, pattern restore, status.
    snaps = json.loads(client("snapshots", "--output-format", "json", env=env, check=0).stdout)
    assert [s["snapshot"] for s in snaps][0] == snap1 and len(snaps) == 2
    groups = json.loads(client("list", "--output-format", "json", env=env, check=0).stdout)
    assert groups == [{"backup-type": "host", "backup-id": "web01", "owner": "host1@pbs!h1",
                       "backup-count": 2, "last-backup": groups[0]["last-backup"]}]
    part = tmp_path / "part"
    client("restore", snap1, "root.tar", part, "--pattern", "etc/*", env=env, check=0)
    assert sorted(p.name for p in part.iterdir()) == ["etc"]
    assert (part / "etc" / "f3").read_bytes() == (src / "etc" / "f3").read_bytes()
    st = json.loads(client("status", "--output-format", "json", env=env, check=0).stdout)
    assert st["store"] == "netstore" and st["total"] > 0


def test_exclude_image_and_catalog(net, tmp_path):
    user = net.user("host2@pbs", "DatastoreBackup")
    env = net.env("host2@pbs", "pw-1234567")            # password instead of a token
    src = tmp_path / "src"
    (src / "keep").mkdir(parents=True)
    (src / "keep" / "a.txt").write_text("a")
    (src / "cache").mkdir()
    (src / "cache" / "big.tmp").write_bytes(b"x" * 1000)
    img = tmp_path / "disk.raw"
    img.write_bytes(bytes(range(256)) * 40000)
    out = json.loads(client("backup", f"root.tar:{src}", f"disk.img:{img}", "--exclude", "cache",
                            "--backup-id", "h2", "--output-format", "json", env=env, check=0).stdout)
    snap = out["snapshot"]
    assert user.username == net.engine().get_owner("", "host", "h2")
    target = tmp_path / "r"
    client("restore", snap, "root.tar", target, env=env, check=0)
    assert sorted(p.name for p in target.iterdir()) == ["keep"]
    client("restore", snap, "disk.img", tmp_path / "disk.out", env=env, check=0)
    assert (tmp_path / "disk.out").read_bytes() == img.read_bytes()
    dump = client("catalog", "dump", snap, env=env, check=0).stdout
    assert '"root.tar/keep/a.txt" 1' in dump and "cache" not in dump
    client("catalog", "rebuild", snap, env=env, check=0)
    assert '"root.tar/keep/a.txt" 1' in client("catalog", "dump", snap, env=env, check=0).stdout

    # --rate: 3 MiB of random data at 1 MiB/s takes about 3 s.
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "r.bin").write_bytes(os.urandom(3 * MiB))
    t0 = time.monotonic()
    client("backup", f"root.tar:{slow}", "--backup-id", "slow", "--rate", "1MiB", env=env, check=0)
    assert time.monotonic() - t0 >= 2.5
