"""The command line starts without the libraries it does not use (docs/DESIGN.md §1, "A fast
command line"): a command that lists a table imports no Celery and no boto3; the network client
imports no cryptography or compression before it needs them. Checked on the modules a real
subprocess imported (`python -X importtime`), never on timings; benchmarks/cli_start.py times them."""
import re
import subprocess
import sys

import pytest
from django.core.management import call_command

from datastores.engine.backup import run_backup
from datastores.engine.datastore import Datastore as EngineStore
from datastores.models import Datastore
from tests.conftest import REPO, free_port, service_env

# The task queue (Celery and its transport) and the S3 client (boto3, s3transfer, botocore's
# client and HTTP layer): loaded by the worker, the web server and a command that talks to a bucket.
QUEUE_AND_S3 = ("celery", "kombu", "billiard", "boto3", "s3transfer", "botocore.session", "botocore.client",
                "botocore.httpsession", "urllib3.connectionpool")
# Encryption, compression and hashing of chunks, and TLS: what the client's own work needs.
CLIENT_WORK = ("cryptography", "zstandard", "blake3", "django", "datastores.engine.crypto")


def imported_modules(argv: list[str], env: dict) -> tuple[set[str], subprocess.CompletedProcess]:
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    names = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", proc.stderr, re.M))
    assert names, proc.stderr[-2000:]
    return names, proc


def loaded(names: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == r or n.startswith(r + ".") for r in roots))


@pytest.mark.django_db(transaction=True)
def test_listing_commands_import_no_celery_and_no_s3_client(tmp_path):
    engine = EngineStore.create(tmp_path / "store")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "hostname").write_text("web01\n")
    run_backup(engine, "host", "web01", [("root.tar", tmp_path / "src")], backup_time=1_790_000_000)
    Datastore.objects.create(name="store1", path=str(tmp_path / "store"))

    outputs = {}
    for argv in (["snapshots", "store1"], ["task", "list"], ["remote", "list"]):
        names, proc = imported_modules(["manage.py", *argv], service_env())
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert loaded(names, QUEUE_AND_S3) == [], argv
        outputs[argv[0]] = proc.stdout
    assert "host/web01/2026-09-21T14:13:20Z" in outputs["snapshots"]
    assert "│ name │ type │ endpoint │ bucket │" in outputs["remote"]


def test_client_help_and_connect_import_no_crypto_or_compression():
    env = {k: v for k, v in service_env().items() if not k.startswith(("PBSWEB", "DJANGO"))}
    names, proc = imported_modules(["-m", "datastores.client", "--help"], env)
    assert proc.returncode == 0 and "usage:" in proc.stdout
    assert loaded(names, CLIENT_WORK + ("ssl", "http.client")) == []

    # `snapshots` needs TLS and HTTP (the server is not there), still no chunk codec.
    env.update(PBS_REPOSITORY=f"root@pam@127.0.0.1:{free_port()}:store1", PBS_PASSWORD="x")
    names, proc = imported_modules(["-m", "datastores.client", "snapshots"], env)
    assert proc.returncode == 1 and "cannot connect" in proc.stderr
    assert loaded(names, CLIENT_WORK) == []


def test_system_checks_pass():
    """The project's commands skip Django's system checks (pbsweb.cli.BaseCommand): run them here."""
    call_command("check", fail_level="WARNING")
