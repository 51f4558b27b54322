"""Pull benchmark: pbsweb pull from a bucket into an empty datastore and
pbsweb restore straight from the bucket, against `rclone copy --transfers 8`
of the same prefix, all from the same moto S3 server in the same run.

    .venv/bin/python benchmarks/pull.py [--size 512MiB] [--workers 8] [--rounds 3] [--keep]

Data: benchmarks/ingest.py's mixed files, backed up into a datastore and
pushed to the bucket (prefix `store`). Then, timed, each from the server
directly (no proxy in the way):
- pull into an empty datastore (every object verified: check_chunk);
- restore of the archive straight from the bucket into a directory
  (compared with the source data afterwards, untimed);
- `rclone copy --transfers 8` of the prefix into an empty directory (bytes
  only: rclone checks each object's MD5 against its ETag, nothing more).
MB/s is the prefix's stored bytes per second (MiB/s, the same bytes for all
three: the snapshot has one archive, which names every chunk); the ratio is
pbsweb's rate over rclone's. pbsweb counts its requests itself; rclone's
are counted in a second, untimed copy through a counting proxy. CPU seconds
(this process or rclone, and the moto server's) are shown too: on a loaded
machine they vary less than wall time.
Rows go to var/benchmarks/pull.json for benchmarks/table.py.
The machine is shared: run the peer in the same run and read the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import generate, parse_size  # noqa: E402
from benchmarks.sync import rclone_env  # noqa: E402
from datastores.engine.backup import run_backup  # noqa: E402
from datastores.engine.datastore import Datastore  # noqa: E402
from remotes.engine.client import RequestCounters, make_s3_client  # noqa: E402
from remotes.engine.config import RemoteConfig  # noqa: E402
from syncjobs.engine.bucket import Bucket  # noqa: E402
from syncjobs.engine.inventory import Inventory  # noqa: E402
from syncjobs.engine.pull import PullOptions, pull_sync, restore_from_bucket  # noqa: E402
from syncjobs.engine.push import PushOptions, push_sync  # noqa: E402
from tests.conftest import S3Server, make_test_client  # noqa: E402
from tests.s3proxy import S3Proxy  # noqa: E402

MiB = 1024 * 1024
BUCKET = "pull-bench"
PREFIX = "store"
OUT = ROOT / "var" / "benchmarks" / "pull.json"


def rclone_copy(url: str, target: Path, transfers: int) -> None:
    subprocess.run(["rclone", "copy", f"bench:{BUCKET}/{PREFIX}", str(target),
                    "--transfers", str(transfers), "-q"], env=rclone_env(url), check=True)


def settle() -> None:
    os.sync()
    time.sleep(0.5)


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process and its finished children (rclone)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def timed(server_pid: int, fn, *args, **kwargs):
    """((wall seconds of fn(*args, **kwargs), (its CPU seconds, the S3 server's
    CPU seconds meanwhile)), what fn returned)."""
    settle()
    c0, s0 = own_cpu(), proc_cpu(server_pid)
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    secs = time.perf_counter() - t
    return (secs, (own_cpu() - c0, proc_cpu(server_pid) - s0)), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="512MiB", help="data size (default 512MiB)")
    ap.add_argument("--workers", type=int, default=8, help="pbsweb parallel GETs (default 8)")
    ap.add_argument("--transfers", type=int, default=8, help="rclone --transfers (default 8)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds of each, best kept (default 3)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if not shutil.which("rclone"):
        print("rclone is not installed", file=sys.stderr)
        return 2
    size = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="pbsweb-pullbench-"))
    server = S3Server(work)
    rows: list[dict] = []
    try:
        admin = make_test_client(server.url)
        admin.create_bucket(Bucket=BUCKET)
        data = work / "data"
        size = generate(data, size)
        store = Datastore.create(work / "store")
        res = run_backup(store, "host", "bench", [("data.tar", data)])
        counters = RequestCounters()
        cfg = RemoteConfig(id="pull-bench", endpoint=server.url, bucket=BUCKET, region="us-east-1",
                           access_key="testing", secret_key="testing")
        bucket = Bucket(make_s3_client(cfg, counters), BUCKET, PREFIX)
        pushed = push_sync(store, bucket, Inventory(work / "inv.sqlite"), PushOptions(counters=counters))
        assert pushed.ok, pushed.snapshots_failed
        stored = sum(s for _, s, _ in bucket.list(""))
        nobj = sum(1 for _ in bucket.list(""))
        print(f"{size / MiB:.0f} MiB of data; the bucket prefix holds {nobj} objects, {stored / MiB:.1f} MiB")

        best: dict[str, tuple[float, dict, str, tuple]] = {}
        pid = server.proc.pid

        def keep(name: str, timing: tuple, req: dict, note: str) -> None:
            secs, cpu = timing
            print(f"  round {rnd + 1}: {name} {secs:.2f} s (CPU {cpu[0]:.2f} s, server CPU {cpu[1]:.2f} s)")
            if name not in best or secs < best[name][0]:
                best[name] = (secs, req, note, cpu)

        for rnd in range(args.rounds):
            # rclone
            dest = work / f"rclone-{rnd}"
            keep("rclone", timed(pid, rclone_copy, server.url, dest, args.transfers)[0], {}, "")
            shutil.rmtree(dest)

            # pull into an empty datastore
            target = Datastore.create(work / f"pulled-{rnd}")
            counters.reset()
            timing, r = timed(pid, pull_sync, bucket, target,
                              options=PullOptions(workers=args.workers, counters=counters))
            assert r.ok and r.snapshots_synced, (r.snapshots_failed, r.summary)
            keep("pull", timing, counters.snapshot(),
                 f"{r.chunks_transferred} chunks verified (check_chunk) and written")
            shutil.rmtree(target.path)

            # restore straight from the bucket
            out = work / f"restored-{rnd}"
            counters.reset()
            timing, _ = timed(pid, restore_from_bucket, bucket, res.ref.rel_dir, "data.tar", out,
                              workers=args.workers)
            req = counters.snapshot()
            same = subprocess.run(["diff", "-rq", str(data), str(out)], capture_output=True).returncode == 0
            assert same, f"restore from the bucket differs from the source data ({out})"
            keep("restore", timing, req, f"{size / MiB:.0f} MiB restored, identical to the source")
            shutil.rmtree(out)

        # rclone's requests: one more copy through a counting proxy (not timed)
        proxy = S3Proxy(server.url)
        try:
            rclone_copy(proxy.url, work / "rclone-count", args.transfers)
            rclone_req = {k: proxy.counts.get(k, 0) for k in ("GET", "LIST", "HEAD")}
        finally:
            proxy.stop()
        rclone_req["requests"] = sum(rclone_req.values())
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")

    load = os.getloadavg()[0]
    rc_secs = best["rclone"][0]
    rc_mbps = stored / MiB / rc_secs
    print(f"\n{args.size} data, {stored / MiB:.1f} MiB stored in {nobj} objects; pbsweb {args.workers} workers, "
          f"rclone --transfers {args.transfers}; best of {args.rounds}; load average {load:.1f} "
          f"on {os.cpu_count()} CPUs (a shared machine: read the ratios)")
    print(f"{'operation':<28}{'seconds':>9}{'MiB/s':>8}{'requests':>10}{'ratio':>7}{'CPU s':>7}{'server CPU s':>14}")
    rc_cpu = best["rclone"][3]
    print(f"{'rclone copy':<28}{rc_secs:>9.2f}{rc_mbps:>8.1f}{rclone_req['requests']:>10}{'':>7}"
          f"{rc_cpu[0]:>7.2f}{rc_cpu[1]:>14.2f}")
    for name, label in (("pull", "pull into an empty datastore"), ("restore", "restore from the bucket")):
        secs, req, note, cpu = best[name]
        mbps = stored / MiB / secs
        if name == "restore":
            note += f" ({size / MiB / secs:.0f} MiB/s of restored data)"
        ratio = mbps / rc_mbps
        print(f"{label:<28}{secs:>9.2f}{mbps:>8.1f}{req.get('requests', 0):>10}{ratio:>7.2f}"
              f"{cpu[0]:>7.2f}{cpu[1]:>14.2f}")
        rows.append({"operation": f"{label} (S3, {args.size})", "pbsweb_mbps": round(mbps, 1),
                     "peer": f"rclone copy --transfers {args.transfers}", "peer_mbps": round(rc_mbps, 1),
                     "ratio": round(ratio, 2),
                     "notes": f"{note}; requests pbsweb {req.get('requests', 0)} "
                              f"({req.get('GET', 0)} GET, {req.get('LIST', 0)} LIST), rclone "
                              f"{rclone_req['requests']} ({rclone_req['GET']} GET, {rclone_req['LIST']} LIST, "
                              f"{rclone_req['HEAD']} HEAD); CPU s pbsweb {cpu[0]:.2f}, rclone {rc_cpu[0]:.2f}; "
                              f"MiB/s of the {stored / MiB:.0f} MiB stored; best of {args.rounds}; "
                              f"load average {load:.1f} on {os.cpu_count()} CPUs"})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"rows written to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
