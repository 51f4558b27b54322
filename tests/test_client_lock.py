"""A running client backup locks its group (docs/PROTOCOL.md §4): forget and prune of that
group, from the server's CLI or through the client, are refused with the exact reason and
remove nothing; once the backup has ended they work. And the client's progress line: shown,
rewritten in place, on a terminal; absent when the output is piped."""
import json
import os
import select
import subprocess
import sys
import time

import pytest

from tests.client_helpers import MiB, client, client_popen, net  # noqa: F401
from tests.conftest import REPO, service_env


LOCKED = "backup group host/web01 is locked by a running backup"


def _running_backup_sessions(net) -> list:
    sessions = net.store_path / ".sessions"
    return [p for p in sessions.iterdir() if p.is_dir()] if sessions.is_dir() else []


def _manage(*args):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=service_env(),
                          capture_output=True, text=True, timeout=120)


def test_running_backup_locks_its_group_against_forget_and_prune(net, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("first")
    power = net.user("host1@pbs", "DatastorePowerUser")
    env = net.env(*net.token(power, "h1"))
    first = json.loads(client("backup", f"root.tar:{src}", "--backup-id", "web01", "--output-format", "json",
                              env=env, check=0).stdout)["snapshot"]
    time.sleep(1.1)        # the next snapshot needs a later backup time (whole seconds)
    # A second backup of the group, slowed down: 8 MiB of random data at 1 MiB/s.
    (src / "big.bin").write_bytes(os.urandom(8 * MiB))
    slow = client_popen("backup", f"root.tar:{src}", "--backup-id", "web01", "--rate", "1MiB",
                        "--output-format", "json", env=env)
    try:
        deadline = time.monotonic() + 20
        while not _running_backup_sessions(net):
            assert slow.poll() is None and time.monotonic() < deadline, slow.communicate()
            time.sleep(0.1)

        # Through the client (the group's owner, who may prune it): 409 with the reason.
        res = client("forget", first, env=env, check=1)
        assert f"{LOCKED} (HTTP 409)" in res.stderr
        res = client("prune", "host/web01", "--keep-last", "1", env=env, check=1)
        assert f"{LOCKED} (HTTP 409)" in res.stderr
        # The server's CLI: the prune task fails naming the lock.
        res = _manage("prune", "netstore", "--keep-last", "1", "--group", "host/web01")
        assert res.returncode == 1, (res.stdout, res.stderr)
        assert f"skipping group host/web01: {LOCKED}" in res.stdout
        assert f"task failed: {LOCKED}; not pruned (try again when it has finished)" in res.stderr
        # Nothing was removed, and the backup is still running.
        assert [r.name for r in net.engine().list_snapshots()] == [first]
        assert slow.poll() is None, "the backup was meant to run during the refusals"
    finally:
        out, err = slow.communicate(timeout=60)
    assert slow.returncode == 0, err
    second = json.loads(out)["snapshot"]
    assert [r.name for r in net.engine().list_snapshots()] == [first, second]

    # The backup has ended: prune and forget work again.
    res = _manage("prune", "netstore", "--keep-last", "1", "--group", "host/web01")
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert [r.name for r in net.engine().list_snapshots()] == [second]
    client("forget", second, env=env, check=0)
    assert net.engine().list_snapshots() == []


def _read_all(fd, proc, timeout=60) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:        # EIO: the terminal's other side closed
                break
            if not data:
                break
            out += data
        elif proc.poll() is not None:
            break
    return out


def test_progress_line_on_a_terminal_not_in_a_pipe(net, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(2 * MiB))
    user = net.user("host1@pbs", "DatastoreBackup")
    env = net.env(*net.token(user, "h1"))
    args = [sys.executable, "-m", "datastores.client", "backup", f"root.tar:{src}", "--rate", "1MiB"]

    # On a pseudo-terminal: the progress line, rewritten in place with "\r" and erase-line.
    master, slave = os.openpty()
    proc = subprocess.Popen([*args, "--backup-id", "tty"], env=env, cwd=REPO, stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        shown = _read_all(master, proc).decode(errors="replace")
    finally:
        os.close(master)
    assert proc.wait(timeout=30) == 0, shown
    updates = shown.count("\r\x1b[K")
    assert updates >= 2, shown
    assert "\r\x1b[Ksent " in shown and " MiB/s); 0 chunks reused;" in shown, shown
    assert "backup host/tty/" in shown and "finished" in shown

    # Piped: the same backup prints its lines but no progress line and no control characters.
    res = client(*args[3:], "--backup-id", "piped", env=env, check=0)
    assert "finished" in res.stdout
    assert "\r" not in res.stdout + res.stderr and "\x1b" not in res.stdout + res.stderr
    assert "MiB/s); " not in res.stderr


def test_group_lock_in_the_engine(tmp_path):
    """Whoever holds a group's lock (here: another open file, as a backup session in another
    process), forget, removing the group and a local backup of the group are refused."""
    from datastores.engine.backup import run_backup
    from datastores.engine.datastore import Datastore
    from datastores.engine.errors import GroupLockedError
    store = Datastore.create(tmp_path / "store")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    ref = run_backup(store, "host", "web01", [("root.tar", src)], backup_time=1_700_000_000).ref
    fd = store.try_group_lock("", "host", "web01")
    assert fd is not None
    try:
        with pytest.raises(GroupLockedError, match=f"^{LOCKED}$"):
            store.remove_snapshot(ref)
        with pytest.raises(GroupLockedError, match=f"^{LOCKED}$"):
            store.remove_group("", "host", "web01")
        with pytest.raises(GroupLockedError, match=f"^{LOCKED}$"):
            run_backup(store, "host", "web01", [("root.tar", src)], backup_time=1_700_000_100)
        assert store.try_group_lock("", "host", "web01") is None
        # other groups are not affected
        run_backup(store, "host", "other", [("root.tar", src)], backup_time=1_700_000_000)
    finally:
        os.close(fd)
    store.remove_snapshot(ref)
    assert [r.name for r in store.list_snapshots()] == ["host/other/2023-11-14T22:13:20Z"]
