"""Encryption keys: `key create/show`, encrypted backup and restore (the wrong key fails clearly),
and the datastore's Encryption tab (generate, fingerprint, download, paper key, warning)."""
import json
import os
import stat
import subprocess
import sys

import pytest

from datastores.models import Datastore
from datastores.services import create_datastore
from tests.conftest import REPO, service_env

T1 = 1764126000
S1 = "host/sec/2025-11-26T03:00:00Z"
PASS = "correct horse battery"


def cli(*args, passphrase=None):
    env = service_env()
    env.pop("PBSWEB_KEY_PASSPHRASE", None)
    if passphrase is not None:
        env["PBSWEB_KEY_PASSPHRASE"] = passphrase
    return subprocess.run([sys.executable, "manage.py", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.django_db(transaction=True)
def test_key_create_encrypted_backup_and_restore(tmp_path):
    key = tmp_path / "my.key"
    other = tmp_path / "other.key"
    made = cli("key", "create", key, passphrase=PASS)
    assert made.returncode == 0, made.stderr
    assert "fingerprint:" in made.stdout and PASS not in made.stdout + made.stderr
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert PASS not in key.read_text()
    again = cli("key", "create", key, passphrase=PASS)
    assert again.returncode == 2 and "already exists" in again.stderr
    short = cli("key", "create", tmp_path / "short.key", passphrase="abc")
    assert short.returncode == 2 and "passphrase" in short.stderr and not (tmp_path / "short.key").exists()
    noprompt = cli("key", "create", tmp_path / "np.key")
    assert noprompt.returncode == 2 and "PBSWEB_KEY_PASSPHRASE" in noprompt.stderr
    assert cli("key", "create", other, "--kdf", "none").returncode == 0
    bad_kdf = cli("key", "create", tmp_path / "k3", "--kdf", "pbkdf9")
    assert bad_kdf.returncode == 2 and "kdf" in bad_kdf.stderr
    shown = cli("key", "show", key, "--output-format", "json")
    info = json.loads(shown.stdout)
    fingerprint = info["fingerprint"]
    assert info["kdf"] == "scrypt" and fingerprint in made.stdout and "data" not in info

    create_datastore("secstore", str(tmp_path / "store"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "secret.txt").write_text("top secret payroll\n" * 1000)
    wrong_pass = cli("backup", "secstore", "--id", "sec", f"root.tar:{src}", "--keyfile", key,
                     "--backup-time", T1, passphrase="not the passphrase")
    assert wrong_pass.returncode == 2 and "wrong passphrase" in wrong_pass.stderr
    done = cli("backup", "secstore", "--id", "sec", f"root.tar:{src}", "--keyfile", key, "--backup-time", T1,
               passphrase=PASS)
    assert done.returncode == 0, done.stderr
    assert "encrypted" in done.stdout and PASS not in done.stdout
    chunks = [p for p in (tmp_path / "store" / ".chunks").glob("*/*")]
    assert chunks and all(b"top secret" not in p.read_bytes() for p in chunks)

    listing = json.loads(cli("snapshots", "secstore", "--output-format", "json").stdout)
    assert listing[0]["encrypted"] is True and listing[0]["fingerprint"] == fingerprint

    no_key = cli("restore", "secstore", S1, "root.tar", tmp_path / "r0")
    assert no_key.returncode == 2 and "encrypted" in no_key.stderr and fingerprint in no_key.stderr
    wrong = cli("restore", "secstore", S1, "root.tar", tmp_path / "r1", "--keyfile", other)
    assert wrong.returncode == 2 and "wrong key" in wrong.stderr and "Traceback" not in wrong.stderr
    assert not (tmp_path / "r1").exists()
    right = cli("restore", "secstore", S1, "root.tar", tmp_path / "r2", "--keyfile", key, passphrase=PASS)
    assert right.returncode == 0, right.stderr
    assert (tmp_path / "r2" / "secret.txt").read_text() == (src / "secret.txt").read_text()


@pytest.mark.django_db
def test_encryption_tab_generates_key(admin_client, tmp_path, settings):
    cfg = create_datastore("enctab1", str(tmp_path / "store"))
    key_path = cfg.key_path
    key_path.unlink(missing_ok=True)
    try:
        page = admin_client.get("/datastore/enctab1/encryption/").content.decode()
        assert "unrecoverable" in page and "Generate Key" in page and "<strong>" in page
        bad = admin_client.post("/datastore/enctab1/encryption/generate/", {
            "kdf": "scrypt", "passphrase": "longenough", "confirm": "different"})
        assert bad.status_code == 400 and "confirm" in bad.context["form"].errors
        assert 'id="key-dialog" open' in bad.content.decode() and "longenough" not in bad.content.decode()
        assert not key_path.exists()
        ok = admin_client.post("/datastore/enctab1/encryption/generate/", {
            "kdf": "scrypt", "passphrase": PASS, "confirm": PASS, "hint": "the usual"}, follow=True)
        html = ok.content.decode()
        cfg = Datastore.objects.get(name="enctab1")
        assert cfg.key_fingerprint and cfg.key_fingerprint in html and "unrecoverable" in html
        assert PASS not in html
        assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
        assert PASS not in cfg.key_passphrase and cfg.crypt_config().fingerprint == cfg.key_fingerprint
        download = admin_client.get("/datastore/enctab1/encryption/download/")
        assert json.loads(b"".join(download.streaming_content))["fingerprint"] == cfg.key_fingerprint
        paper = admin_client.get("/datastore/enctab1/encryption/paperkey/").content.decode()
        assert "BEGIN PBSWEB BACKUP KEY" in paper and cfg.key_fingerprint in paper and PASS not in paper
        twice = admin_client.post("/datastore/enctab1/encryption/generate/", {"kdf": "none"})
        assert twice.status_code == 400 and "never replaced" in twice.content.decode()
    finally:
        key_path.unlink(missing_ok=True)
