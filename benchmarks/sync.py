"""Sync benchmark: pbsweb push against `rclone sync` of the same datastore
directory, both to the same moto S3 server, each through its own counting
proxy (requests counted on the server side).

    .venv/bin/python benchmarks/sync.py --size 256MiB [--workers 8] [--change 0.01] [--json out.json]

Phases: initial sync, zero-change sync, and a sync after a new backup in
which `--change` of the image's 4 MiB chunks differ. For each: requests by
kind, bytes up/down, seconds, and the minimum (the objects that had to move).
rclone is configured through RCLONE_CONFIG_* variables and run without
AWS_CA_BUNDLE (see tooling-notes.md); it syncs the whole directory, so it
also carries local-only files (catalog, owner), which pbsweb leaves out.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datastores.engine.backup import run_backup  # noqa: E402
from datastores.engine.datastore import Datastore  # noqa: E402
from remotes.engine.client import RequestCounters, make_s3_client  # noqa: E402
from remotes.engine.config import RemoteConfig  # noqa: E402
from syncjobs.engine.bucket import Bucket  # noqa: E402
from syncjobs.engine.consistency import check_bucket_consistency  # noqa: E402
from syncjobs.engine.inventory import Inventory  # noqa: E402
from syncjobs.engine.push import PushOptions, push_sync  # noqa: E402
from tests.conftest import S3Server, make_test_client  # noqa: E402
from tests.s3proxy import S3Proxy  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
CHUNK = 4 * MiB
T0 = 1_790_000_000
KINDS = ("GET", "PUT", "HEAD", "LIST", "DELETE")
_LETTERS = bytes.maketrans(bytes(range(256)), (b"etaoinshrdlu \n.,") * 16)


def parse_size(text: str) -> int:
    t = text.strip().lower()
    for suffix, mult in (("gib", 1 << 30), ("mib", 1 << 20), ("kib", 1 << 10), ("g", 1 << 30),
                         ("m", 1 << 20), ("k", 1 << 10)):
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * mult)
    return int(t)


def block(seed: int) -> bytes:
    """1 MiB: random (incompressible) or letter soup (zstd ~0.6), by seed."""
    data = random.Random(seed).randbytes(MiB)
    return data.translate(_LETTERS) if seed % 2 else data


def write_image(path: Path, nblocks: int, changed: set[int], gen: int) -> None:
    with open(path, "wb") as f:
        for i in range(nblocks):
            f.write(block(i + (1_000_000 * gen if i // 4 in changed else 0)))


def object_count(store: Datastore) -> int:
    n = 1  # marker
    seen: set[str] = set()
    for ref in store.list_snapshots():
        n += sum(1 for f in os.listdir(store.path / ref.rel_dir)
                 if f.endswith((".blob", ".didx", ".fidx")) and f != "catalog.blob")
        seen |= store.chunk_digests(ref)
    return n + len(seen)


def rclone_env(proxy_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update({
        "RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ENDPOINT": proxy_url, "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": "testing",
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": "testing", "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
        "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
    })
    return env


def measure(proxy: S3Proxy, fn) -> dict:
    proxy.reset_counts()
    t = time.monotonic()
    fn()
    secs = time.monotonic() - t
    out = {k: proxy.counts.get(k, 0) for k in KINDS}
    out.update(requests=sum(out.values()), mib_up=proxy.bytes_up / MiB,
               mib_down=proxy.bytes_down / MiB, seconds=secs)
    return out


def bucket_overhead(bucket: Bucket, store: Datastore) -> dict:
    """What the bucket stores besides chunks (manifests, indexes, blobs), measured."""
    chunk_bytes = meta_bytes = meta_objects = 0
    for rel, size, _ in bucket.list(""):
        if rel.startswith(".chunks/"):
            chunk_bytes += size
        else:
            meta_bytes += size
            meta_objects += 1
    local = sum(p.stat().st_size for p in store.path.rglob("*") if p.is_file())
    return {"chunk_bytes": chunk_bytes, "meta_bytes": meta_bytes, "meta_objects": meta_objects,
            "meta_pct": 100 * meta_bytes / max(1, chunk_bytes),
            "bucket_vs_local": (chunk_bytes + meta_bytes) / max(1, local)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="2GiB", help="datastore data size (default 2GiB)")
    ap.add_argument("--workers", type=int, default=8, help="parallel uploads (rclone --transfers too)")
    ap.add_argument("--change", type=float, default=0.01, help="fraction of chunks changed (default 0.01)")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if not shutil.which("rclone"):
        print("rclone is not installed", file=sys.stderr)
        return 2
    size = parse_size(args.size)
    nblocks = max(4, size // MiB)
    work = Path(tempfile.mkdtemp(prefix="pbsweb-syncbench-"))
    server = S3Server(work)
    ours, theirs = S3Proxy(server.url), S3Proxy(server.url)
    results: list[dict] = []
    try:
        admin = make_test_client(server.url)
        admin.create_bucket(Bucket="pbsweb-bench")
        admin.create_bucket(Bucket="rclone-bench")
        store = Datastore.create(work / "store")
        img = work / "disk.img"
        etc = work / "etc"
        etc.mkdir()
        for i in range(20):
            (etc / f"file{i}.conf").write_bytes(block(10_000_000 + i)[: 4096 * (i + 1)])

        t = time.monotonic()
        write_image(img, nblocks, set(), 0)
        run_backup(store, "host", "bench", [("disk.img", img), ("etc.tar", etc)], backup_time=T0)
        print(f"datastore: {nblocks} MiB image + small tree, backed up in {time.monotonic() - t:.1f}s")

        counters = RequestCounters()
        cfg = RemoteConfig(id="bench", endpoint=ours.url, bucket="pbsweb-bench", region="us-east-1",
                           access_key="testing", secret_key="testing",
                           max_pool_connections=max(16, args.workers * 2))
        bucket = Bucket(make_s3_client(cfg, counters), "pbsweb-bench", "store")
        inventory = Inventory(work / "inventory" / "inv.sqlite")
        env = rclone_env(theirs.url)

        def push():
            res = push_sync(store, bucket, inventory, PushOptions(workers=args.workers, counters=counters))
            assert res.ok, res.snapshots_failed

        def rclone():
            subprocess.run(["rclone", "sync", str(store.path), "bench:rclone-bench/store",
                            "--transfers", str(args.workers), "--checkers", str(args.workers), "-q"],
                           env=env, check=True)

        def phase(name: str, minimum: int):
            for tool, proxy, fn in (("pbsweb", ours, push), ("rclone", theirs, rclone)):
                m = measure(proxy, fn)
                m.update(phase=name, tool=tool, minimum=minimum)
                results.append(m)

        phase("initial", object_count(store))
        phase("zero-change", 0)
        nchunks = -(-nblocks // 4)
        k = max(1, round(nchunks * args.change))
        changed = set(random.Random(7).sample(range(nchunks), k))
        before = object_count(store)
        write_image(img, nblocks, changed, 1)
        run_backup(store, "host", "bench", [("disk.img", img), ("etc.tar", etc)], backup_time=T0 + 3600)
        phase(f"{args.change:.0%} change ({k} chunks)", object_count(store) - before)

        report = check_bucket_consistency(bucket)
        assert report.ok, report.problems
        overhead = bucket_overhead(bucket, store)
    finally:
        ours.stop()
        theirs.stop()
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")

    head = f"{'phase':<24} {'tool':<7} " + " ".join(f"{k:>6}" for k in KINDS) + \
        f" {'total':>6} {'min':>6} {'MiB up':>8} {'seconds':>8} {'MiB/s':>7}"
    print(f"\n--size {args.size}, {args.workers} workers\n" + head)
    for r in results:
        rate = r["mib_up"] / r["seconds"] if r["seconds"] else 0
        print(f"{r['phase']:<24} {r['tool']:<7} " + " ".join(f"{r[k]:>6}" for k in KINDS) +
              f" {r['requests']:>6} {r['minimum']:>6} {r['mib_up']:>8.1f} {r['seconds']:>8.2f} {rate:>7.1f}")
    print(f"\nbucket: {overhead['chunk_bytes'] / MiB:.1f} MiB in chunks, {overhead['meta_bytes'] / KiB:.1f} KiB "
          f"in {overhead['meta_objects']} manifests/indexes/blobs: metadata overhead "
          f"{overhead['meta_pct']:.3f}% (the PBS guide budgets 15-25%); bucket/local size "
          f"{overhead['bucket_vs_local']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"size": args.size, "workers": args.workers,
                                               "results": results, "overhead": overhead}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
