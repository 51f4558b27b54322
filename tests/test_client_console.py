"""The console side of network backups: Datastore → Summary → Show Connection Information
(repository string and certificate fingerprint, as PBS) and each group's owner in Content."""
import hashlib
import ssl
from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db


def test_connection_information_and_owner(admin_client, tmp_path, settings):
    from django.core.management import call_command

    from datastores.engine.backup import run_backup
    from datastores.services import create_datastore
    call_command("firstrun", stdout=open("/dev/null", "w"))
    cfg = create_datastore("store1", str(tmp_path / "store"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    run_backup(cfg.engine(), "host", "web01", [("root.tar", src)], owner="host1@pbs!h1")

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "pbs.example"]  # as firstrun finds this host's names
    page = admin_client.get("/datastore/store1/", HTTP_HOST="pbs.example:8007").content.decode()
    der = ssl.PEM_cert_to_DER_cert(Path(settings.TLS_CERT_FILE).read_text())
    fingerprint = ":".join(f"{b:02x}" for b in hashlib.sha256(der).digest())
    assert "Show Connection Information" in page
    assert '<td class="mono" id="connection-repository">admin@pbs@pbs.example:8007:store1</td>' in page
    assert f'<td class="mono" id="connection-fingerprint">{fingerprint}</td>' in page

    content = admin_client.get("/datastore/store1/content/").content.decode()
    assert "<td>host1@pbs!h1</td>" in content
