"""Sync planning, GC and verify at scale: a synthetic datastore of millions of
small chunks (the chunk count of a ~10 TB store), synced to a loopback S3
server, then measured: requests, seconds and peak RSS of each operation.

    .venv/bin/python benchmarks/scale.py [--chunks 2500000] [--per-index 100000]
                                         [--server auto|moto|lite] [--work DIR] [--json out.json]

The datastore: `--chunks` distinct chunks of 48 bytes (raw blobs written
directly with the datastore engine's format code; one file each under
.chunks/), referenced by dynamic indexes of `--per-index` chunks, one finished
snapshot (manifest + .didx) per index in its own group. Small chunks are
valid: an index may reference chunks of any size.

The server (`--server auto` picks moto up to 50,000 chunks, else lite):
- moto: the moto server the tests use. The store is pushed to it for real
  first ("initial push").
- lite: benchmarks/s3lite.py. moto keeps ~3.7 KB per key and re-sorts the
  whole bucket for each LIST page: at 2.5 million keys it would need ~9 GB
  and about a day to list the bucket once. Pushing 2.5 million objects one
  PUT each would also take longer than the measurement. So the bucket is
  SEEDED instead: the server starts holding exactly the keys a completed push
  writes (marker, every chunk, every snapshot's index and manifest; sizes and
  MD5s of the same bytes, which GetObject reads from the datastore's files),
  and the push inventory is built by the first push, whose inventory is empty
  ("first run"), so it reconciles with a full listing and uploads nothing.
  The result is the state of a completed push: the bucket holds the store,
  the inventory knows every object.

Phases, each in its own child process (so its peak RSS is its own), requests
counted on the server side: by s3lite itself, in front of moto by a counting
proxy (tests/s3proxy.py, as benchmarks/sync.py):
  first push    the initial push (moto) or reconcile into the empty inventory (lite)
  zero-change   a push with nothing new: goal 1 request (the marker GET), < 10 s
  reconcile     a push forced to relist the prefix: goal 1 LIST per 1,000
                objects (+ the marker GET), < 2 min
  rclone lsf    the peer: `rclone lsf -R --fast-list` of the same prefix from
                the same server, the listing alone
  gc            garbage collection of the store (nothing to remove)
  verify        verify of every snapshot (reads every chunk once)
Goal for each pbsweb phase: peak RSS < 500 MB.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import blake3  # noqa: E402

from datastores.engine._fsutil import write_atomic  # noqa: E402
from datastores.engine.blob import encode_blob  # noqa: E402
from datastores.engine.datastore import Datastore, SnapshotRef  # noqa: E402
from datastores.engine.index import DynamicIndexWriter  # noqa: E402
from datastores.engine.manifest import MANIFEST_NAME, Manifest  # noqa: E402
from datastores.engine.report import Reporter  # noqa: E402

BUCKET = "pbsweb-scale"
PREFIX = "store"
T0 = 1_790_000_000
MiB = 1024 * 1024
KINDS = ("GET", "PUT", "HEAD", "LIST", "DELETE")
PHASES = ("first push", "zero-change", "reconcile", "rclone lsf", "gc", "verify")
_CHUNK = struct.Struct("<QQQQQQ")  # 48 bytes of chunk data


# -- building the datastore ------------------------------------------------------
def build_store(path: Path, nchunks: int, per_index: int, seed_file: Path) -> Datastore:
    """Write the synthetic datastore and the seed list of what a push uploads."""
    store = Datastore.create(path)
    croot = store.chunks.root
    for i in range(65536):
        os.makedirs(croot / f"{i:04x}", exist_ok=True)
    t = time.monotonic()
    with open(seed_file, "w") as seed:
        marker = (store.path / ".pbsweb-datastore.json").read_bytes()
        seed.write(f".pbsweb-datastore.json\t{len(marker)}\t{hashlib.md5(marker).hexdigest()}\n")
        n = g = 0
        while n < nchunks:
            count = min(per_index, nchunks - n)
            ref = SnapshotRef.make("", "host", f"scale{g:04d}", T0)
            sdir = store.snapshot_path(ref)
            sdir.mkdir(parents=True)
            store.set_owner("", "host", f"scale{g:04d}", "bench@pbs")
            writer = DynamicIndexWriter(sdir / "data.tar.didx", ctime=T0)
            lines = []
            for i in range(n, n + count):
                data = _CHUNK.pack(i, g, i ^ 0x5A5A, nchunks, per_index, T0)
                blob = encode_blob(data, compress=False)
                digest = blake3.blake3(data).digest()
                hx = digest.hex()
                rel = f".chunks/{hx[:4]}/{hx}"
                fd = os.open(f"{croot}/{hx[:4]}/{hx}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.write(fd, blob)
                os.close(fd)
                writer.add_chunk(digest, len(data))
                lines.append(f"{rel}\t{len(blob)}\t{hashlib.md5(blob).hexdigest()}\n")
            idx = writer.close()
            manifest = Manifest("host", f"scale{g:04d}", T0)
            manifest.add_file("data.tar.didx", idx.size, idx.csum)
            write_atomic(sdir / MANIFEST_NAME, manifest.to_blob())
            for name in ("data.tar.didx", MANIFEST_NAME):
                data = (sdir / name).read_bytes()
                lines.append(f"{ref.rel_dir}/{name}\t{len(data)}\t{hashlib.md5(data).hexdigest()}\n")
            seed.writelines(lines)
            n += count
            g += 1
            print(f"  built {n} chunks, {g} snapshots, {time.monotonic() - t:.0f}s", end="\r", flush=True)
    os.sync()
    print(f"\ndatastore: {nchunks} chunks in {g} snapshots, built in {time.monotonic() - t:.1f}s")
    return store


# -- the phases (child processes) --------------------------------------------------
class _Log(Reporter):
    def log(self, msg: str) -> None:
        print(f"    {msg}", file=sys.stderr, flush=True)

    def warn(self, msg: str) -> None:
        print(f"    WARN: {msg}", file=sys.stderr, flush=True)


def child(phase: str, work: Path, endpoint: str) -> dict:
    """Run one phase; returns what it measured (peak RSS of this process)."""
    out: dict = {}
    t = time.monotonic()
    if phase in ("first push", "zero-change", "reconcile"):
        from remotes.engine.client import RequestCounters, make_s3_client
        from remotes.engine.config import RemoteConfig
        from syncjobs.engine.bucket import Bucket
        from syncjobs.engine.inventory import Inventory
        from syncjobs.engine.push import PushOptions, push_sync
        store = Datastore(work / "store")
        counters = RequestCounters()
        cfg = RemoteConfig(id="scale", endpoint=endpoint, bucket=BUCKET, region="us-east-1",
                           access_key="testing", secret_key="testing", max_pool_connections=16)
        bucket = Bucket(make_s3_client(cfg, counters), BUCKET, PREFIX)
        with Inventory(work / "inventory" / "inv.sqlite") as inv:
            t = time.monotonic()
            res = push_sync(store, bucket, inv, PushOptions(workers=8, counters=counters, remove_vanished=True,
                                                            reconcile=phase == "reconcile"), _Log())
            out.update(ok=res.ok, reconciled=res.reconciled, summary=res.summary,
                       uploaded=res.objects_transferred, inventory_chunks=inv.chunk_count())
    elif phase == "gc":
        from datastores.engine.gc import garbage_collection
        st = garbage_collection(Datastore(work / "store"), _Log())
        out.update(ok=st.missing_chunks == 0, marked=st.marked_chunks, disk_chunks=st.disk_chunks,
                   removed=st.removed_chunks)
    elif phase == "verify":
        from datastores.engine.verify import verify_datastore
        job = verify_datastore(Datastore(work / "store"), _Log(), ignore_verified=False)
        out.update(ok=job.ok, chunks=sum(r.chunks_checked for r in job.results))
    elif phase == "rclone lsf":
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        env.update({"RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
                    "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint, "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": "testing",
                    "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": "testing", "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
                    "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true"})
        t = time.monotonic()
        proc = subprocess.run(["rclone", "lsf", "-R", "--fast-list", "--files-only",
                               f"bench:{BUCKET}/{PREFIX}"], env=env, stdout=subprocess.PIPE, check=True)
        out.update(ok=True, objects=proc.stdout.count(b"\n"))
        out["seconds"] = time.monotonic() - t
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["peak_rss_mb"] = ru.ru_maxrss / 1024
        out["cpu_seconds"] = ru.ru_utime + ru.ru_stime
        return out
    else:
        raise SystemExit(f"unknown phase {phase}")
    out["seconds"] = time.monotonic() - t
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out["peak_rss_mb"] = ru.ru_maxrss / 1024
    out["cpu_seconds"] = ru.ru_utime + ru.ru_stime  # the whole process, imports included
    return out


class LiteCounts:
    """The request counts s3lite keeps (the same interface as the proxy's)."""

    def __init__(self, url: str):
        self.url = url
        self.counts: dict = {}

    def reset_counts(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/_counts", data=b"", method="POST"), timeout=30)

    def read(self) -> None:
        with urllib.request.urlopen(f"{self.url}/_counts", timeout=30) as r:
            self.counts = json.loads(r.read())

    def stop(self) -> None:
        pass


def run_phase(phase: str, work: Path, proxy) -> dict:
    if proxy is not None:
        proxy.reset_counts()
    endpoint = proxy.url if proxy is not None else ""
    print(f"-- {phase}", flush=True)
    proc = subprocess.run([sys.executable, __file__, "--child", phase, "--work", str(work), "--endpoint", endpoint],
                          stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"phase {phase} failed (exit {proc.returncode})")
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    m["phase"] = phase
    if proxy is not None:
        if isinstance(proxy, LiteCounts):
            proxy.read()
        m.update({k: proxy.counts.get(k, 0) for k in KINDS})
        m["requests"] = sum(m[k] for k in KINDS)
    print(f"   {json.dumps(m)}", flush=True)
    return m


# -- servers ------------------------------------------------------------------------
def start_lite(work: Path, seed: Path):
    from tests.conftest import free_port, wait_for_port
    port = free_port()
    t = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "s3lite.py"), "--port", str(port),
                             "--bucket", BUCKET, "--prefix", PREFIX, "--root", str(work / "store"),
                             "--seed", str(seed)], start_new_session=True)
    wait_for_port(port, proc=proc, timeout=600)
    print(f"s3lite seeded and listening in {time.monotonic() - t:.1f}s")
    return proc, f"http://127.0.0.1:{port}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=2_500_000)
    ap.add_argument("--per-index", type=int, default=100_000, help="chunks per snapshot index")
    ap.add_argument("--server", choices=("auto", "moto", "lite"), default="auto")
    ap.add_argument("--work", help="work directory (kept; an existing store there is reused)")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help=f"comma-separated, in this order: {','.join(PHASES)} (default: all)")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.work), args.endpoint)))
        return 0
    server = args.server if args.server != "auto" else ("moto" if args.chunks <= 50_000 else "lite")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="pbsweb-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    seed = work / "seed.tsv"
    if (work / "store" / ".pbsweb-datastore.json").exists():
        print(f"reusing the datastore in {work / 'store'}")
    else:
        build_store(work / "store", args.chunks, args.per_index, seed)
    shutil.rmtree(work / "inventory", ignore_errors=True)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")

    from tests.s3proxy import S3Proxy
    results = []
    srv = proc = None
    wanted = [p.strip() for p in args.phases.split(",")]
    sync_phases = [p for p in ("first push", "zero-change", "reconcile", "rclone lsf") if p in wanted]
    if sync_phases and "first push" not in sync_phases:
        sync_phases.insert(0, "first push")  # it builds the inventory the others start from
    try:
        if sync_phases:
            if server == "moto":
                from tests.conftest import S3Server, make_test_client
                srv = S3Server(work)
                make_test_client(srv.url).create_bucket(Bucket=BUCKET)
                proxy = S3Proxy(srv.url)
            else:
                proc, url = start_lite(work, seed)
                proxy = LiteCounts(url)
            for phase in sync_phases:
                results.append(run_phase(phase, work, proxy))
            proxy.stop()
        for phase in ("gc", "verify"):
            if phase in wanted:
                results.append(run_phase(phase, work, None))
    finally:
        if srv is not None:
            srv.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    objects = args.chunks + 1 + 2 * -(-args.chunks // args.per_index)
    print(f"\n{args.chunks} chunks, {objects} objects in the bucket, server {server}, "
          f"{os.cpu_count()} cores (shared machine: figures are noisy)")
    print(f"{'phase':<12} " + " ".join(f"{k:>6}" for k in KINDS) +
          f" {'total':>6} {'seconds':>8} {'CPU s':>7} {'peak RSS MB':>12}")
    for r in results:
        reqs = " ".join(f"{r.get(k, '-'):>6}" for k in KINDS)
        print(f"{r['phase']:<12} {reqs} {r.get('requests', '-'):>6} {r['seconds']:>8.1f} "
              f"{r.get('cpu_seconds', 0):>7.1f} {r['peak_rss_mb']:>12.0f}")
    by = {r["phase"]: r for r in results}
    goals = {}
    if "reconcile" in by:
        rec = by["reconcile"]
        print(f"reconcile: {rec['LIST'] / (objects / 1000):.3f} LIST per 1,000 objects" +
              (f"; rclone lsf of the same prefix took {by['rclone lsf']['seconds'] / rec['seconds']:.2f}x "
               "as long (its listing alone)" if "rclone lsf" in by else ""))
        goals["reconcile <= 1 LIST per 1,000 objects (+1)"] = rec["LIST"] <= -(-objects // 1000) + 1
        goals["reconcile < 120 s"] = rec["seconds"] < 120
    if "zero-change" in by:
        goals["zero-change <= 1 request"] = by["zero-change"]["requests"] <= 1
        goals["zero-change < 10 s"] = by["zero-change"]["seconds"] < 10
    for p in ("zero-change", "reconcile", "gc", "verify"):
        if p in by:
            goals[f"{p} peak RSS < 500 MB"] = by[p]["peak_rss_mb"] < 500
    goals["all phases ok"] = all(r.get("ok", True) for r in results)
    for goal, ok in goals.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {goal}")
    if args.json:
        Path(args.json).write_text(json.dumps({"chunks": args.chunks, "server": server, "objects": objects,
                                               "results": results, "goals": goals}, indent=2))
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
