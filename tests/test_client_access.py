"""Who may do what over the client protocol, as PBS: the exact refusals, and two hosts
backing up to one store at once, each seeing only its own groups."""
import json

import pytest

from tests.client_helpers import client, client_popen, net  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def _tree(tmp_path, name="src", text="hello"):
    src = tmp_path / name
    src.mkdir()
    (src / "a.txt").write_text(text)
    return src


def test_refusals(net, tmp_path):
    src = _tree(tmp_path)
    backup_user = net.user("host1@pbs", "DatastoreBackup")
    backup_env = net.env(*net.token(backup_user, "h1"))
    snap = json.loads(client("backup", f"root.tar:{src}", "--backup-id", "web01", "--output-format", "json",
                             env=backup_env, check=0).stdout)["snapshot"]

    # Wrong certificate fingerprint: both fingerprints, nothing sent.
    wrong = "00:" * 31 + "00"
    res = client("snapshots", env={**backup_env, "PBS_FINGERPRINT": wrong}, check=1)
    assert f"expected {wrong}" in res.stderr and net.server.fingerprint in res.stderr

    # Wrong token secret: 401.
    res = client("snapshots", env={**backup_env, "PBS_PASSWORD": "not-the-secret"}, check=1)
    assert "authentication failed: invalid API token (HTTP 401)" in res.stderr
    res = client("snapshots", env=net.env("host1@pbs", "wrong-password"), check=1)
    assert "authentication failed: wrong user name or password (HTTP 401)" in res.stderr

    # Another owner's group: 403 with the reason.
    other = net.user("host2@pbs", "DatastoreBackup")
    other_env = net.env(*net.token(other, "h2"))
    res = client("backup", f"root.tar:{src}", "--backup-id", "web01", env=other_env, check=1)
    assert "backup group host/web01 belongs to host1@pbs!h1, not to host2@pbs!h2 (HTTP 403)" in res.stderr
    res = client("restore", snap, "root.tar", tmp_path / "x", env=other_env, check=1)
    assert "belongs to host1@pbs!h1, not to host2@pbs!h2 (HTTP 403)" in res.stderr
    assert json.loads(client("snapshots", "--output-format", "json", env=other_env, check=0).stdout) == []

    # A reader may restore but not back up.
    reader = net.user("reader@pbs", "DatastoreReader")
    reader_env = net.env(*net.token(reader, "r"))
    res = client("backup", f"root.tar:{src}", "--backup-id", "rd", env=reader_env, check=1)
    assert "permission check failed: a backup needs Datastore.Backup on /datastore/netstore (HTTP 403)" in res.stderr
    client("restore", snap, "root.tar", tmp_path / "by-reader", env=reader_env, check=0)
    assert (tmp_path / "by-reader" / "a.txt").read_text() == "hello"

    # The backup token is append-only: it can neither forget nor prune.
    res = client("forget", snap, env=backup_env, check=1)
    assert ("permission check failed: forget needs Datastore.Modify, or Datastore.Prune on your own group "
            "(Datastore.Backup is append-only) (HTTP 403)") in res.stderr
    res = client("prune", "host/web01", "--keep-last", "0", env=backup_env, check=1)
    assert "prune needs Datastore.Modify" in res.stderr
    assert len(net.engine().list_snapshots()) == 1

    # A power user prunes its own groups only.
    power = net.user("power@pbs", "DatastorePowerUser")
    power_env = net.env(*net.token(power, "p"))
    res = client("forget", snap, env=power_env, check=1)
    assert "belongs to host1@pbs!h1, not to power@pbs!p (HTTP 403)" in res.stderr
    psnap = json.loads(client("backup", f"root.tar:{src}", "--backup-id", "pw", "--output-format", "json",
                              env=power_env, check=0).stdout)["snapshot"]
    client("forget", psnap, env=power_env, check=0)
    assert [r.name for r in net.engine().list_snapshots()] == [snap]

    # Bad arguments: exit 2 naming the field.
    res = client("backup", f"root.tar:{src}", "--rate", "fast", env=backup_env, check=2)
    assert "rate: 'fast'" in res.stderr
    res = client("snapshots", env={**backup_env, "PBS_REPOSITORY": "nohost"}, check=2)
    assert "repository:" in res.stderr


def test_two_hosts_back_up_at_once_and_see_only_their_groups(net, tmp_path):
    envs, procs = [], []
    for n in (1, 2):
        user = net.user(f"host{n}@pbs", "DatastoreBackup")
        envs.append(net.env(*net.token(user, f"t{n}")))
        src = tmp_path / f"src{n}"
        src.mkdir()
        (src / "big.bin").write_bytes(bytes([n]) * (3 << 20) + __import__("os").urandom(6 << 20))
        procs.append(client_popen("backup", f"root.tar:{src}", "--backup-id", f"host{n}",
                                  "--output-format", "json", env=envs[-1]))
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    for n, env in ((1, envs[0]), (2, envs[1])):
        groups = json.loads(client("list", "--output-format", "json", env=env, check=0).stdout)
        assert [g["backup-id"] for g in groups] == [f"host{n}"]
        assert groups[0]["owner"] == f"host{n}@pbs!t{n}"
    assert sorted(r.backup_id for r in net.engine().list_snapshots()) == ["host1", "host2"]
