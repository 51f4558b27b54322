"""How fast the command line answers: the median wall time of commands that do little work,
against two anchors run in the same session (`python -c pass`, and `manage.py help` of a bare
`django-admin startproject` project: what any Django command costs).

    .venv/bin/python benchmarks/cli_start.py [--runs 15] [--compare OTHER_CHECKOUT] [--no-bytecode-cache]

Measured: `manage.py snapshots STORE`, `manage.py task list`, `manage.py remote list`, a
zero-change `manage.py sync-job run ID` (a datastore with one small backup, pushed once to a
moto S3 server), and the network client (`python -m datastores.client --help`, and `snapshots`
against a real gunicorn over loopback TLS). `--compare DIR` times the same commands from
another checkout (e.g. the commit before a change) in the same run, on the same data.
The commands run interleaved, round after round (`--hyperfine`: each in turn under hyperfine).

Python modules of the project are compiled once into a cache under the work directory
(PYTHONPYCACHEPREFIX), as on a server where `__pycache__` is writable;
`--no-bytecode-cache` keeps PYTHONDONTWRITEBYTECODE and so recompiles them on every start.
The machine's load is printed: on a shared machine compare ratios, not seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from datastores.client.http import format_fingerprint  # noqa: E402
from tests.conftest import S3Server, free_port, make_test_client, wait_for_port  # noqa: E402

PY = sys.executable


def must(cmd, env, cwd=REPO) -> str:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-2000:]}{proc.stdout[-2000:]}")
    return proc.stdout


def run_once(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{cmd} failed: {proc.stderr.decode()[-2000:]}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def time_interleaved(jobs: list[tuple[list[str], dict, Path]], runs: int, warmup: int) -> list[dict]:
    """Round after round, each command once: on a machine whose load changes from minute to
    minute every command meets the same load, so their ratios hold."""
    samples = [([], []) for _ in jobs]
    for round_ in range(warmup + runs):
        for (cmd, env, cwd), (walls, cpus) in zip(jobs, samples):
            wall, cpu = run_once(cmd, env, cwd)
            if round_ >= warmup:
                walls.append(wall)
                cpus.append(cpu)
    return [{"median": statistics.median(w), "min": min(w), "cpu": statistics.median(c)} for w, c in samples]


def time_hyperfine(cmd: list[str], env: dict, cwd: Path, runs: int, warmup: int, out: Path) -> dict:
    subprocess.run(["hyperfine", "-N", "--style", "none", "-w", str(warmup), "-r", str(runs),
                    "--export-json", str(out), " ".join(cmd)],
                   env=env, cwd=cwd, check=True, capture_output=True)
    r = json.loads(out.read_text())["results"][0]
    return {"median": r["median"], "min": r["min"], "cpu": r["user"] + r["system"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--compare", type=Path, default=None, help="another checkout to time the same commands from")
    ap.add_argument("--no-bytecode-cache", action="store_true")
    ap.add_argument("--hyperfine", action="store_true", help="time each command in turn with hyperfine")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    use_hyperfine = args.hyperfine and shutil.which("hyperfine")
    work = Path(tempfile.mkdtemp(prefix="pbsweb-cli-start-"))
    s3 = server = None
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY", "PBSWEB", "DJANGO"))}
        env.update(PBSWEB_DATA_DIR=str(work / "var"), DJANGO_SETTINGS_MODULE="pbsweb.settings")
        if not args.no_bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        manage = [PY, "manage.py"]
        src = work / "src"
        (src / "etc").mkdir(parents=True)
        (src / "etc" / "hostname").write_text("web01\n")
        (src / "data.bin").write_bytes(os.urandom(256 * 1024))
        s3 = S3Server(work)
        make_test_client(s3.url).create_bucket(Bucket="cli-start")
        for cmd in (["migrate", "-v0"], ["firstrun"], ["datastore", "create", "st1", str(work / "st1")],
                    ["backup", "st1", "--id", "web01", f"root.tar:{src}"],
                    ["remote", "create", "s3-bench", "--type", "s3", "--endpoint", s3.url, "--bucket", "cli-start",
                     "--region", "us-east-1", "--access-key", "testing", "--secret-key", "testing",
                     "--provider", "minio"],
                    ["sync-job", "create", "bench-job", "--store", "st1", "--remote", "s3-bench", "--remote-store", "st1"],
                    ["sync-job", "run", "bench-job"],
                    ["user", "create", "bench@pbs"],
                    ["acl", "update", "/datastore/st1", "DatastoreReader", "--auth-id", "bench@pbs"]):
            must(manage + cmd, env)
        token = json.loads(must(manage + ["user", "generate-token", "bench@pbs", "t", "--output-format", "json"], env))
        must(manage + ["acl", "update", "/datastore/st1", "DatastoreReader", "--auth-id", "bench@pbs!t"], env)
        port = free_port()
        server = subprocess.Popen([str(Path(PY).parent / "gunicorn"), "-c", "pbsweb/gunicorn_conf.py", "pbsweb.wsgi"],
                                  env={**env, "PBSWEB_PORT": str(port), "PBSWEB_BIND": "127.0.0.1"}, cwd=REPO,
                                  stdout=open(work / "gunicorn.log", "wb"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        wait_for_port(port, timeout=30, proc=server)
        der = ssl.PEM_cert_to_DER_cert((work / "var" / "proxy.pem").read_text())
        cenv = {k: v for k, v in env.items() if not k.startswith(("PBSWEB", "DJANGO"))}
        cenv.update(PBS_REPOSITORY=f"{token['tokenid']}@127.0.0.1:{port}:st1", PBS_PASSWORD=token["value"],
                    PBS_FINGERPRINT=format_fingerprint(der))
        must([PY, "-m", "datastores.client", "snapshots"], cenv)  # the server answers

        anchor = work / "anchor"
        anchor.mkdir()
        must([str(Path(PY).parent / "django-admin"), "startproject", "anchor", str(anchor)], env)
        aenv = {k: v for k, v in env.items() if k != "DJANGO_SETTINGS_MODULE"}

        # (label, argv, env, cwd, also from --compare)
        cases = [
            ("anchor: python -c pass", [PY, "-c", "pass"], env, REPO, False),
            ("anchor: bare Django manage.py help", [PY, "manage.py", "help"], aenv, anchor, False),
            ("manage.py help", manage + ["help"], env, REPO, True),
            ("manage.py snapshots st1", manage + ["snapshots", "st1"], env, REPO, True),
            ("manage.py task list", manage + ["task", "list"], env, REPO, True),
            ("manage.py remote list", manage + ["remote", "list"], env, REPO, True),
            ("manage.py sync-job run bench-job (zero-change)", manage + ["sync-job", "run", "bench-job"], env, REPO, True),
            ("pbsweb-client --help", [PY, "-m", "datastores.client", "--help"], cenv, REPO, True),
            ("pbsweb-client snapshots", [PY, "-m", "datastores.client", "snapshots"], cenv, REPO, True),
        ]
        jobs = []  # (label, tree, argv, env, cwd)
        for label, cmd, cenv_, cwd, comparable in cases:
            jobs.append((label, "this", cmd, cenv_, cwd))
            if comparable and args.compare is not None:
                jobs.append((label, "compare", cmd, cenv_, args.compare.resolve()))
        if use_hyperfine:
            results = [time_hyperfine(cmd, e, cwd, args.runs, args.warmup, work / f"hf-{i}.json")
                       for i, (_, _, cmd, e, cwd) in enumerate(jobs)]
        else:
            results = time_interleaved([(cmd, e, cwd) for _, _, cmd, e, cwd in jobs], args.runs, args.warmup)
        rows = [{"command": label, "tree": tree, **r} for (label, tree, *_), r in zip(jobs, results)]

        py = next(r for r in rows if r["command"].startswith("anchor: python"))
        dj = next(r for r in rows if r["command"].startswith("anchor: bare"))
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; timing: "
              f"{'hyperfine' if use_hyperfine else 'interleaved rounds'}, {args.runs} runs; bytecode cache "
              f"{'off' if args.no_bytecode_cache else 'on'}")
        print(f"{'command':48} {'tree':8} {'median s':>9} {'min s':>7} {'cpu s':>7} {'× py':>6} {'× django':>8} "
              f"{'compare/this':>12}")
        for r in rows:
            other = next((o for o in rows if o["command"] == r["command"] and o["tree"] == "compare"), None)
            speedup = f"{other['median'] / r['median']:12.2f}" if other and r["tree"] == "this" else ""
            print(f"{r['command']:48} {r['tree']:8} {r['median']:9.3f} {r['min']:7.3f} {r['cpu']:7.3f} "
                  f"{r['median'] / py['median']:6.1f} {r['median'] / dj['median']:8.2f} {speedup}")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
    finally:
        if server is not None:
            os.killpg(server.pid, 15)
            server.wait(timeout=15)
        if s3 is not None:
            s3.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
