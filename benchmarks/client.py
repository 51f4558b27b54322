"""Network backup benchmark: pbsweb-client over loopback TLS (real gunicorn) against the
local `manage.py backup`, and restic if installed, on the same data (benchmarks/ingest.py's
mix: about half random, half text, with duplicates).

    .venv/bin/python benchmarks/client.py --size 512MiB [--no-restic] [--keep]

Reports MiB/s of each backup and restore, and the share of bytes an unchanged re-run sends.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.ingest import generate, parse_size, run_restic, settle  # noqa: E402

MiB = 1024 * 1024
PY = sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(cmd, env, **kw) -> tuple[float, subprocess.CompletedProcess]:
    settle()
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, **kw)
    elapsed = time.monotonic() - t0
    if proc.returncode:
        raise SystemExit(f"{cmd[:4]} failed: {proc.stderr[-2000:]}{proc.stdout[-2000:]}")
    return elapsed, proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="512MiB")
    ap.add_argument("--no-restic", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    size = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="pbsweb-client-bench-"))
    server = None
    try:
        data = work / "data"
        size = generate(data, size)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY"))}
        env.update(PBSWEB_DATA_DIR=str(work / "var"), DJANGO_SETTINGS_MODULE="pbsweb.settings")
        manage = [PY, "manage.py"]
        for cmd in (["migrate", "-v0"], ["firstrun"], ["datastore", "create", "local", str(work / "local")],
                    ["datastore", "create", "net", str(work / "net")], ["user", "create", "bench@pbs"],
                    ["acl", "update", "/datastore/net", "DatastoreBackup", "--auth-id", "bench@pbs"]):
            subprocess.run(manage + cmd, env=env, cwd=REPO, check=True, capture_output=True)
        token = json.loads(subprocess.run(manage + ["user", "generate-token", "bench@pbs", "t", "--output-format",
                                                    "json"], env=env, cwd=REPO, check=True,
                                          capture_output=True, text=True).stdout)
        # a token holds what its own entries grant and its user holds too (PBS privilege separation)
        subprocess.run(manage + ["acl", "update", "/datastore/net", "DatastoreBackup", "--auth-id", "bench@pbs!t"],
                       env=env, cwd=REPO, check=True, capture_output=True)
        port = _free_port()
        server = subprocess.Popen([str(Path(PY).parent / "gunicorn"), "-c", "pbsweb/gunicorn_conf.py", "pbsweb.wsgi"],
                                  env={**env, "PBSWEB_PORT": str(port), "PBSWEB_BIND": "127.0.0.1"}, cwd=REPO,
                                  stdout=open(work / "gunicorn.log", "wb"), stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        der = ssl.PEM_cert_to_DER_cert((work / "var" / "proxy.pem").read_text())
        fingerprint = ":".join(f"{b:02x}" for b in hashlib.sha256(der).digest())
        cenv = {k: v for k, v in env.items() if not k.startswith(("PBSWEB", "DJANGO"))}
        cenv.update(PBS_REPOSITORY=f"{token['tokenid']}@127.0.0.1:{port}:net", PBS_PASSWORD=token["value"],
                    PBS_FINGERPRINT=fingerprint)
        client = [PY, "-m", "datastores.client"]
        results = {"size_mib": size / MiB}

        t, _ = _timed(manage + ["backup", "local", "--type", "host", "--id", "bench", f"data.tar:{data}"], env)
        results["local_backup_mbs"] = size / MiB / t
        t, p = _timed(client + ["backup", f"data.tar:{data}", "--backup-id", "bench", "--output-format", "json"], cenv)
        first = json.loads(p.stdout)
        results["net_backup_mbs"] = size / MiB / t
        time.sleep(1.1)
        t, p = _timed(client + ["backup", f"data.tar:{data}", "--backup-id", "bench", "--output-format", "json"], cenv)
        again = json.loads(p.stdout)
        results["net_rerun_mbs"] = size / MiB / t
        results["net_rerun_sent_percent"] = 100 * again["sent_bytes"] / size

        snaps = json.loads(subprocess.run(manage + ["snapshots", "local", "--output-format", "json"], env=env,
                                          cwd=REPO, check=True, capture_output=True, text=True).stdout)
        t, _ = _timed(manage + ["restore", "local", snaps[0]["snapshot"], "data.tar", str(work / "r-local")], env)
        results["local_restore_mbs"] = size / MiB / t
        t, _ = _timed(client + ["restore", first["snapshot"], "data.tar", str(work / "r-net")], cenv)
        results["net_restore_mbs"] = size / MiB / t
        results["net_vs_local_backup"] = results["net_backup_mbs"] / results["local_backup_mbs"]
        results["net_vs_local_restore"] = results["net_restore_mbs"] / results["local_restore_mbs"]
        if not args.no_restic:
            r = run_restic(data, work, size)
            if r:
                results["restic_backup_mbs"] = r["backup_mbs"]
                results["net_vs_restic_backup"] = results["net_backup_mbs"] / r["backup_mbs"]
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}, indent=2))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
