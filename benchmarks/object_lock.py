"""Object Lock extension cost: requests and time of a push run whose locks all need extending.

    .venv/bin/python benchmarks/object_lock.py [--chunks 10000] [--workers 8]

A moto server (which enforces Object Lock) behind the counting proxy. A small datastore is
pushed with a 30-day lock; then `--chunks` more locked chunk objects are put in the bucket and
counted as referenced by the datastore's snapshots (building a real datastore of 10,000 4 MiB
chunks would take 40 GiB). Runs: day 5 (nothing due), day 25 (every lock due), day 26.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datastores.engine.backup import run_backup  # noqa: E402
from datastores.engine.datastore import Datastore  # noqa: E402
from remotes.engine.client import RequestCounters  # noqa: E402
from syncjobs.engine import push as push_module  # noqa: E402
from syncjobs.engine.bucket import Bucket  # noqa: E402
from syncjobs.engine.inventory import Inventory, chunk_rel  # noqa: E402
from syncjobs.engine.push import PushOptions, push_sync  # noqa: E402
from tests.conftest import S3Server, make_test_client  # noqa: E402
from tests.s3proxy import S3Proxy  # noqa: E402

DAY = 86400


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lockbench-"))
    server = S3Server(tmp)
    proxy = S3Proxy(server.url)
    try:
        admin = make_test_client(server.url)
        name = f"lock-{uuid.uuid4().hex[:8]}"
        admin.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        store = Datastore.create(tmp / "store")
        src = tmp / "src"
        src.mkdir()
        (src / "a.bin").write_bytes(os.urandom(1 << 20))
        run_backup(store, "host", "web01", [("root.tar", src)], backup_time=1_790_000_000)
        client = make_test_client(proxy.url)
        counters = RequestCounters()
        counters.attach(client)
        bucket = Bucket(client, name, "store")
        inv = Inventory(tmp / "inv.sqlite")
        now = time.time()

        def push(day):
            proxy.reset_counts()
            t = time.monotonic()
            res = push_sync(store, bucket, inv, PushOptions(lock_days=30, workers=args.workers,
                                                            counters=counters, now=lambda: now + day * DAY,
                                                            reconcile_interval_days=None))
            return res, time.monotonic() - t, dict(proxy.counts)

        push(0)
        extra = [os.urandom(32).hex() for _ in range(args.chunks)]
        until = datetime.fromtimestamp(int(now + 30 * DAY) + 1, timezone.utc)
        with ThreadPoolExecutor(16) as pool:
            versions = list(pool.map(lambda d: bucket.put_locked(chunk_rel(d), b"x", until, "governance")[1], extra))
        inv.add_chunks((d, now, 1) for d in extra)
        inv.set_locks("chunks", [(d, until.timestamp(), v) for d, v in zip(extra, versions)])
        original = push_module._Pusher._referenced_chunks

        def with_extra(self, exclude=frozenset()):
            refs = original(self, exclude)  # a DigestSet of binary digests
            for d in extra:
                refs.add(bytes.fromhex(d))
            return refs
        push_module._Pusher._referenced_chunks = with_extra
        for day in (5, 25, 26):
            res, secs, counts = push(day)
            print(f"day {day}: {res.locks_extended} locks extended, requests "
                  f"{', '.join(f'{k}={v}' for k, v in sorted(counts.items()) if v)} "
                  f"(total {sum(counts.values())}), {secs:.1f}s")
    finally:
        proxy.stop()
        server.stop()


if __name__ == "__main__":
    main()
