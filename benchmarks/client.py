"""Network backup benchmark: pbsweb-client over loopback TLS (real gunicorn) against the
local `manage.py backup`, and restic if installed, on the same data (benchmarks/ingest.py's
mix: about half random, half text, with duplicates).

    .venv/bin/python benchmarks/client.py --size 512MiB [--repeat 3] [--no-restic] [--keep]

Reports MiB/s of each backup and restore, and the share of bytes an unchanged re-run sends.
On a shared, loaded machine one run of each says little: the three backups (local, network,
restic) run interleaved --repeat times, each into a fresh store, and the medians and their
ratios are reported (and each round's ratios, to show the spread).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.ingest import generate, parse_size, settle  # noqa: E402

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
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds of the three backups")
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
        rounds = range(max(1, args.repeat))
        setup = [["migrate", "-v0"], ["firstrun"], ["user", "create", "bench@pbs"]]
        for r in rounds:
            setup += [["datastore", "create", f"local{r}", str(work / f"local{r}")],
                      ["datastore", "create", f"net{r}", str(work / f"net{r}")],
                      ["acl", "update", f"/datastore/net{r}", "DatastoreBackup", "--auth-id", "bench@pbs"]]
        for cmd in setup:
            subprocess.run(manage + cmd, env=env, cwd=REPO, check=True, capture_output=True)
        token = json.loads(subprocess.run(manage + ["user", "generate-token", "bench@pbs", "t", "--output-format",
                                                    "json"], env=env, cwd=REPO, check=True,
                                          capture_output=True, text=True).stdout)
        # a token holds what its own entries grant and its user holds too (PBS privilege separation)
        for r in rounds:
            subprocess.run(manage + ["acl", "update", f"/datastore/net{r}", "DatastoreBackup", "--auth-id",
                                     "bench@pbs!t"], env=env, cwd=REPO, check=True, capture_output=True)
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
        cenv.update(PBS_PASSWORD=token["value"], PBS_FINGERPRINT=fingerprint)

        def on(store):
            return {**cenv, "PBS_REPOSITORY": f"{token['tokenid']}@127.0.0.1:{port}:{store}"}
        client = [PY, "-m", "datastores.client"]
        restic = None if args.no_restic else shutil.which("restic")
        results = {"size_mib": size / MiB, "rounds": len(rounds)}
        local, net, rest, first = [], [], [], None
        for r in rounds:        # interleaved, so a burst of load from elsewhere hits all three alike
            t, _ = _timed(manage + ["backup", f"local{r}", "--type", "host", "--id", "bench", f"data.tar:{data}"], env)
            local.append(size / MiB / t)
            t, p = _timed(client + ["backup", f"data.tar:{data}", "--backup-id", "bench", "--output-format", "json"],
                          on(f"net{r}"))
            net.append(size / MiB / t)
            first = first or json.loads(p.stdout)
            if restic:
                renv = dict(os.environ, RESTIC_PASSWORD="bench-password", RESTIC_REPOSITORY=str(work / f"restic{r}"),
                            RESTIC_CACHE_DIR=str(work / "restic-cache"))
                subprocess.run([restic, "init"], env=renv, check=True, capture_output=True)
                t, _ = _timed([restic, "backup", "--quiet", str(data)], renv)
                rest.append(size / MiB / t)
        results["local_backup_mbs"] = statistics.median(local)
        results["net_backup_mbs"] = statistics.median(net)
        results["net_vs_local_backup"] = results["net_backup_mbs"] / results["local_backup_mbs"]
        results["rounds_net_vs_local"] = [round(n / x, 3) for n, x in zip(net, local)]
        if rest:
            results["restic_backup_mbs"] = statistics.median(rest)
            results["net_vs_restic_backup"] = results["net_backup_mbs"] / results["restic_backup_mbs"]
            results["rounds_net_vs_restic"] = [round(n / x, 3) for n, x in zip(net, rest)]

        time.sleep(1.1)
        t, p = _timed(client + ["backup", f"data.tar:{data}", "--backup-id", "bench", "--output-format", "json"],
                      on("net0"))
        again = json.loads(p.stdout)
        results["net_rerun_mbs"] = size / MiB / t
        results["net_rerun_sent_percent"] = 100 * again["sent_bytes"] / size

        snaps = json.loads(subprocess.run(manage + ["snapshots", "local0", "--output-format", "json"], env=env,
                                          cwd=REPO, check=True, capture_output=True, text=True).stdout)
        t, _ = _timed(manage + ["restore", "local0", snaps[0]["snapshot"], "data.tar", str(work / "r-local")], env)
        results["local_restore_mbs"] = size / MiB / t
        t, _ = _timed(client + ["restore", first["snapshot"], "data.tar", str(work / "r-net")], on("net0"))
        results["net_restore_mbs"] = size / MiB / t
        results["net_vs_local_restore"] = results["net_restore_mbs"] / results["local_restore_mbs"]
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}, indent=2))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
