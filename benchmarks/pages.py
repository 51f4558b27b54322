#!/usr/bin/env python3
"""Page speed with a big history: the task list with 100,000 tasks and a task
whose log has 1,000,000 lines. Targets: list < 150 ms, log opens < 100 ms.

Runs against a throwaway data directory and SQLite database:
    .venv/bin/python benchmarks/pages.py [--tasks 100000] [--log-lines 1000000]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def timed(fn, repeat=15):
    fn()  # warm caches and template loading
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples), min(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--log-lines", type=int, default=1_000_000)
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="pbsweb-bench-")
    os.environ["PBSWEB_DATA_DIR"] = data_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pbsweb.settings")
    import django
    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    from pbsweb.models import Task
    from pbsweb.upid import new_upid

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    admin = get_user_model().objects.create_superuser("bench@pbs", password="x")
    now = timezone.now()
    types = ["syncjob", "backup", "prune", "garbage_collection", "verify"]
    t0 = time.perf_counter()
    batch = []
    for i in range(args.tasks):
        start = now - timezone.timedelta(minutes=i)
        upid = new_upid("bench", types[i % 5], f"job{i % 97}", "root@pam", int(start.timestamp()))
        batch.append(Task(upid=str(upid), node="bench", worker_type=upid.worker_type, worker_id=upid.worker_id,
                          user="root@pam", starttime=start, endtime=start + timezone.timedelta(seconds=30),
                          state=Task.ERROR if i % 50 == 0 else Task.OK, status="OK"))
        if len(batch) == 5000:
            Task.objects.bulk_create(batch)
            batch = []
    Task.objects.bulk_create(batch)
    print(f"created {args.tasks} tasks in {time.perf_counter() - t0:.1f}s")

    big = Task.objects.order_by("-starttime").first()
    path = big.log_path
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(path, "w") as f:
        line = "2026-11-26T02:00:00+00:00: upload chunk 0123456789abcdef0123456789abcdef (4.00 MiB)\n"
        f.write(line * args.log_lines)
    print(f"wrote a {args.log_lines}-line log ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f}s")

    client = Client()
    client.force_login(admin)

    def get(url):
        def fetch():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
        return fetch

    results = [
        ("task list, first page", "/tasks/", 150),
        ("task list, page 1000", "/tasks/?page=1000", 150),
        ("task list, errors only", "/tasks/?state=errors", 150),
        ("task list, type filter", "/tasks/?type=syncjob", 150),
        (f"task viewer, {args.log_lines}-line log", f"/tasks/{big.upid}/", 100),
        ("live log poll at the end", f"/tasks/{big.upid}/log/?start={path.stat().st_size}", 100),
        ("dashboard", "/", 150),
    ]
    print(f"\n{'page':45} {'median ms':>10} {'best ms':>8} {'target':>7}")
    failed = False
    for name, url, target in results:
        median, best = timed(get(url))
        mark = "ok" if median < target else "SLOW"
        failed |= median >= target
        print(f"{name:45} {median:10.1f} {best:8.1f} {target:6}  {mark}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
