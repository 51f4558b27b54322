"""A client killed at seeded points of a backup, and a TCP connection dropped mid-chunk:
no snapshot becomes visible, the server ends the session's task in ERROR, the next backup
works, and GC after the grace period leaves no orphan chunk."""
import json
import os
import random
import time

import pytest

from tests.client_helpers import (DroppingProxy, chunk_files, client, client_popen, kill_group, net,  # noqa: F401
                                  wait_task_end)

pytestmark = pytest.mark.django_db(transaction=True)
MiB = 1024 * 1024
DAY = 86400


def _sources(tmp_path, seed):
    rnd = random.Random(seed)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "one.bin").write_bytes(rnd.randbytes(12 * MiB))
    (b / "two.bin").write_bytes(rnd.randbytes(12 * MiB))
    return a, b


def _wait_for(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def _session_files(store_path, name):
    return list((store_path / ".sessions").glob(f"*/{name}"))


def _assert_no_orphans_after_gc(net):
    from datastores.engine.gc import garbage_collection
    eng = net.engine()
    # A finished session's writer registration goes within a second (its opening process
    # releases it); while it lives GC rightly keeps every chunk younger than it.
    _wait_for(lambda: not eng.running_writers(), timeout=10)
    garbage_collection(eng, now=time.time() + 3 * DAY)
    referenced = set()
    for ref in eng.list_snapshots():
        assert ref.finished, ref
        referenced |= eng.chunk_digests(ref)
    assert chunk_files(net.store_path) == referenced


def test_killed_client_and_dropped_connection_leave_nothing(net, tmp_path):
    from pbsweb.models import Task
    user = net.user("host1@pbs", "DatastoreBackup")
    token = net.token(user, "h1")
    env = net.env(*token)
    a, b = _sources(tmp_path, seed=11)
    args = ("backup", f"first.tar:{a}", f"second.tar:{b}", "--backup-id", "web01", "--rate", "4MiB")

    # Seeded kill points: right after the session opened, mid-upload, after an index closed.
    points = [("session.json", 1), ("uploads", 2), ("archives", 1)]
    random.Random(5).shuffle(points)
    for name, lines in points:
        proc = client_popen(*args, env=env)

        def reached(name=name, lines=lines):
            return any(name == "session.json" or len(p.read_text().splitlines()) >= lines
                       for p in _session_files(net.store_path, name))
        _wait_for(reached)
        kill_group(proc)
        task = wait_task_end({"worker_type": "backup"})
        assert task.state == Task.ERROR and "no request from the client" in task.status, (name, task.status)
        assert net.engine().list_snapshots() == [], name
        _wait_for(lambda: not _session_files(net.store_path, "session.json"), timeout=10)

    # A connection cut in the middle of a chunk upload.
    proxy = DroppingProxy(net.server.port, limit=5 * MiB)
    try:
        res = client(*args[:-2], env=net.env(*token, port=proxy.port), check=1)
    finally:
        proxy.close()
    assert proxy.cut.is_set() and f"127.0.0.1:{proxy.port}" in res.stderr, res.stderr
    task = wait_task_end({"worker_type": "backup"})
    assert task.state == Task.ERROR
    assert net.engine().list_snapshots() == []

    # The next backup (of changed data) works, and GC leaves only chunks of finished snapshots.
    (a / "one.bin").write_bytes(random.Random(12).randbytes(12 * MiB))
    out = json.loads(client(*args[:-2], "--output-format", "json", env=env, check=0).stdout)
    [ref] = net.engine().list_snapshots()
    assert ref.name == out["snapshot"] and ref.finished
    orphans_before_gc = chunk_files(net.store_path) - net.engine().chunk_digests(ref)
    assert orphans_before_gc, "the killed sessions uploaded chunks the finished snapshot does not use"
    _assert_no_orphans_after_gc(net)
    target = tmp_path / "restored"
    client("restore", out["snapshot"], "second.tar", target, env=env, check=0)
    assert (target / "two.bin").read_bytes() == (b / "two.bin").read_bytes()
    _wait_for(lambda: all(n.startswith("group-") for n in os.listdir(net.store_path / ".sessions")), timeout=10)


def test_server_killed_mid_session(net, tmp_path):
    import signal

    from pbsweb.models import Task
    from tests.client_helpers import NetServer
    user = net.user("host1@pbs", "DatastoreBackup")
    token = net.token(user, "h1")
    a, b = _sources(tmp_path, seed=21)
    proc = client_popen("backup", f"first.tar:{a}", "--backup-id", "web01", "--rate", "2MiB", env=net.env(*token))
    _wait_for(lambda: any(len(p.read_text().splitlines()) >= 2 for p in _session_files(net.store_path, "uploads")))
    os.killpg(net.server.proc.pid, signal.SIGKILL)
    net.server.proc.wait(timeout=10)
    proc.communicate(timeout=60)
    assert proc.returncode == 1
    net.server = NetServer(tmp_path / "gunicorn2.log")
    try:
        out = json.loads(client("backup", f"second.tar:{b}", "--backup-id", "web01", "--output-format", "json",
                                env=net.env(*token), check=0).stdout)
        dead = Task.objects.filter(worker_type="backup").order_by("id").first()
        assert dead.state == Task.ERROR and dead.status == "the server process serving the session ended"
        [ref] = net.engine().list_snapshots()
        assert ref.name == out["snapshot"]
        assert chunk_files(net.store_path) - net.engine().chunk_digests(ref), "the dead session left chunks"
        _assert_no_orphans_after_gc(net)
    finally:
        net.server.stop()
