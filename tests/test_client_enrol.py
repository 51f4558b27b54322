"""A host is enrolled by a script: `manage.py user create`, `user generate-token` (secret
printed once), `acl update`; then the client backs up with that token. Bad arguments exit 2."""
import json
import subprocess
import sys

import pytest

from tests.client_helpers import client, net  # noqa: F401
from tests.conftest import REPO, service_env

pytestmark = pytest.mark.django_db(transaction=True)


def manage(*args, check=None):
    proc = subprocess.run([sys.executable, "manage.py", *map(str, args)], cwd=REPO, env=service_env(),
                          capture_output=True, text=True, timeout=120)
    if check is not None:
        assert proc.returncode == check, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def test_enrol_a_host_from_the_command_line(net, tmp_path):
    manage("user", "create", "host9@pbs", check=0)
    token = json.loads(manage("user", "generate-token", "host9@pbs", "backup", "--output-format", "json",
                              check=0).stdout)
    assert token["tokenid"] == "host9@pbs!backup" and len(token["value"]) > 20
    text = manage("user", "list", check=0).stdout
    assert "host9@pbs" in text and "backup" in text and token["value"] not in text

    env = net.env(token["tokenid"], token["value"])
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    res = client("backup", f"root.tar:{src}", "--backup-id", "h9", env=env, check=1)
    assert "no privilege on /datastore/netstore (HTTP 403)" in res.stderr

    manage("acl", "update", "/datastore/netstore", "DatastoreBackup", "--auth-id", "host9@pbs", check=0)
    # a token holds only what its own entries grant too (PBS privilege separation)
    res = client("backup", f"root.tar:{src}", "--backup-id", "h9", env=env, check=1)
    assert "no privilege on /datastore/netstore (HTTP 403)" in res.stderr
    manage("acl", "update", "/datastore/netstore", "DatastoreBackup", "--auth-id", "host9@pbs!backup", check=0)
    acl = json.loads(manage("acl", "list", "--output-format", "json", check=0).stdout)
    for ugid in ("host9@pbs", "host9@pbs!backup"):
        assert {"path": "/datastore/netstore", "ugid": ugid, "roleid": "DatastoreBackup", "propagate": True} in acl
    client("backup", f"root.tar:{src}", "--backup-id", "h9", env=env, check=0)
    assert net.engine().get_owner("", "host", "h9") == "host9@pbs!backup"

    # Bad input: exit 2 naming the field, nothing written.
    assert manage("user", "create", "nobody", check=2).stderr.strip().endswith(
        "userid: 'nobody' is not USER@REALM (letters, digits, '.', '_', '-')")
    assert "realm 'pam' does not exist" in manage("user", "create", "x@pam", check=2).stderr
    assert "userid: 'host9@pbs' already exists" in manage("user", "create", "host9@pbs", check=2).stderr
    assert "password: at least 8" in manage("user", "create", "y@pbs", "--password", "short", check=2).stderr
    assert "role: 'Boss'" in manage("acl", "update", "/", "Boss", "--auth-id", "host9@pbs", check=2).stderr
    assert "path: 'datastore'" in manage("acl", "update", "datastore", "Audit", "--auth-id", "host9@pbs",
                                         check=2).stderr
    res = manage("acl", "update", "/", "Audit", "--auth-id", "host9@pbs!nosuch", check=2)
    assert "auth-id: token 'host9@pbs!nosuch' does not exist" in res.stderr
    assert "name: token 'host9@pbs!backup' already exists" in manage(
        "user", "generate-token", "host9@pbs", "backup", check=2).stderr

    manage("user", "remove", "host9@pbs", check=0)
    res = client("snapshots", env=env, check=1)
    assert "invalid API token (HTTP 401)" in res.stderr
