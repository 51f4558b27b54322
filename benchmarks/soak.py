"""Crash and fault soak: SIGKILL real engine processes at seeded kill points
and run syncs through seeded S3 fault rates, then check that nothing is
inconsistent and no data is lost.

    make soak   (or: .venv/bin/python benchmarks/soak.py [--points 24] [--seed N] [--ops backup,prune,gc,push,pull]
                                        [--fault-rates 0.02,0.05,0.10] [--fault-runs 2] [--json out.json])

The seed is CRASH_SEED from the environment, else taken from the clock; it is
printed, and --seed N / CRASH_SEED=N repeats a run. A kill point that did not
kill the process counts as a failure.

Kill campaign (harness: tests/soak/crashpoints.py): for each operation
(backup, prune + remove, garbage collection, push sync with remove-vanished,
pull sync) one uninterrupted calibration run counts its filesystem mutations
and S3 requests; then --points seeded kill points spread over the run (a
mutation, a request killed before or after the server executed it, a delay)
each kill a fresh child process. After each kill: datastore and bucket
consistency, then the same operation runs again and the end state must be
exact (push: plus a later backup + push that brings back the data whose
chunks the killed run deleted). Push additionally gets "targeted" kill points:
before and after each of its DeleteObjects requests.

Fault runs: push and pull of the same datastore through the proxy at each
--fault-rates rate (503 SlowDown, 500, 429, resets; push also truncated
bodies; a separate pull row includes truncated bodies), compared with what a
fault-free run must give, key by key and byte by byte, restores included.

Prints one table: operation, kill points, runs, killed, consistency failures,
data lost (must be 0), seconds; then the details of every failure.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datastores.engine.datastore import Datastore  # noqa: E402
from remotes.engine.client import make_s3_client  # noqa: E402
from remotes.engine.config import RemoteConfig  # noqa: E402
from syncjobs.engine.bucket import Bucket  # noqa: E402
from syncjobs.engine.inventory import Inventory  # noqa: E402
from syncjobs.engine.pull import PullOptions, pull_sync  # noqa: E402
from syncjobs.engine.push import PushOptions, push_sync  # noqa: E402
from tests.conftest import S3Server  # noqa: E402
from tests.soak.crashpoints import (BASE, PREFIX, SCENARIOS, SEED, Check, KillPoint, SoakEnv,  # noqa: E402
                                    calibrate, check_bucket, check_store, choose_kill_points,
                                    compare_bucket, run_case)

ALL_FAULTS = ("503", "500", "429", "reset", "truncate")
STATUS_AND_RESET = ("503", "500", "429", "reset")


class Row:
    def __init__(self, name: str, points: str):
        self.name, self.points = name, points
        self.runs = self.killed = self.failures = self.lost = 0
        self.seconds = 0.0
        self.details: list[str] = []

    def as_dict(self):
        return {k: getattr(self, k) for k in ("name", "points", "runs", "killed", "failures", "lost", "seconds")} \
            | {"details": self.details}


def run_kills(env, op: str, points: list[KillPoint], row: Row, verbose: bool) -> None:
    sc = SCENARIOS[op]()
    for kp in points:
        t = time.monotonic()
        res = run_case(sc, kp, env)
        row.runs += 1
        row.killed += int(res.killed)
        row.failures += res.consistency_failures or int(not res.killed)
        row.lost += res.data_lost
        row.seconds += time.monotonic() - t
        if not res.ok:
            row.details.append(res.describe())
        elif not res.killed:
            row.details.append(f"{op}: kill point {kp} did not kill the process")
        if verbose:
            print(f"  {op:6} {str(kp):32} killed={res.killed!s:5} ok={res.ok!s:5} "
                  f"{time.monotonic() - t:5.1f}s {res.detail}", flush=True)


def bucket_for(url, name, max_attempts=8):
    cfg = RemoteConfig(id="soak", endpoint=url, bucket=name, region="us-east-1", access_key="testing",
                       secret_key="testing", max_attempts=max_attempts, read_timeout=10, connect_timeout=5)
    return Bucket(make_s3_client(cfg), name, PREFIX)


def fault_run(env, rate: float, seed: int, pull_kinds, push_row: Row, pull_row: Row | None, work: Path):
    """Push the BASE store through faults, compare the bucket; pull it back through faults, compare."""
    try:
        _fault_run(env, rate, seed, pull_kinds, push_row, pull_row, work)
    except Exception as e:  # noqa: BLE001  (the machine, not the engine: e.g. /tmp full)
        push_row.details.append(f"harness error @{rate:.0%} seed {seed}: {type(e).__name__}: {str(e)[:300]}")


def _fault_run(env, rate: float, seed: int, pull_kinds, push_row: Row, pull_row: Row | None, work: Path):
    model = {s.rel_dir: s.expected() for s in BASE}
    d = work / f"faults-{uuid.uuid4().hex[:8]}"
    shutil.copytree(env.template(tuple(BASE)), d / "store")
    store = Datastore(d / "store")
    name = env.new_bucket()
    proxy = env.proxy
    t = time.monotonic()
    proxy.set_faults(rate=rate, kinds=ALL_FAULTS, seed=seed)
    chk = Check()
    try:
        with Inventory(d / "inv.sqlite") as inv:
            res = push_sync(store, bucket_for(proxy.url, name), inv, PushOptions(workers=4))
        if not res.ok:
            chk.problems.append(f"push reported errors: {res.summary}")
    except Exception as e:  # noqa: BLE001
        chk.problems.append(f"push failed: {type(e).__name__}: {e}")
    finally:
        proxy.clear_faults()
    chk.extend(check_bucket(bucket_for(env.moto_url, name), model))
    chk.extend(compare_bucket(env.s3, name, store))
    push_row.runs += 1
    push_row.failures += int(not chk.ok)
    push_row.lost += len(chk.lost)
    push_row.seconds += time.monotonic() - t
    if not chk.ok:
        push_row.details.append(f"push @{rate:.0%} seed {seed}: " + "; ".join(chk.problems + chk.lost)[:600])
    if pull_row is None or not chk.ok:
        shutil.rmtree(d, ignore_errors=True)
        return
    t = time.monotonic()
    target = Datastore.create(d / "pulled")
    proxy.set_faults(rate=rate, kinds=pull_kinds, seed=seed + 1)
    chk = Check()
    try:
        res = pull_sync(bucket_for(proxy.url, name), target, None, PullOptions(workers=4))
        if not res.ok:
            chk.problems.append(f"pull reported failures: {res.summary} {res.snapshots_failed}")
    except Exception as e:  # noqa: BLE001
        chk.problems.append(f"pull failed: {type(e).__name__}: {str(e)[:300]}")
    finally:
        proxy.clear_faults()
    # what was pulled must be right; everything must be there (a failed pull loses nothing
    # that was in the bucket, but it did not deliver it: counted as a failure, not as loss)
    chk.extend(check_store(target.path, model, (), d / "scratch"))
    missing = [rd for rd in model if rd not in {r.rel_dir for r in target.list_snapshots() if r.finished}]
    if missing and not chk.problems:
        chk.problems.append(f"{len(missing)} snapshots not pulled")
    pull_row.runs += 1
    pull_row.failures += int(not chk.ok)
    pull_row.lost += len(chk.lost)
    pull_row.seconds += time.monotonic() - t
    if not chk.ok:
        pull_row.details.append(f"pull @{rate:.0%} seed {seed}: " + "; ".join(chk.problems + chk.lost)[:600])
    shutil.rmtree(d, ignore_errors=True)


def print_table(rows: list[Row]) -> None:
    head = ("operation", "kill points", "runs", "killed", "consistency failures", "data lost", "seconds")
    cells = [head] + [(r.name, r.points, str(r.runs), str(r.killed), str(r.failures), str(r.lost),
                       f"{r.seconds:.0f}") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]

    def line(left, mid, right):
        return left + mid.join("─" * (w + 2) for w in widths) + right

    print(line("┌", "┬", "┐"))
    print("│" + "│".join(f" {c:<{w}} " for c, w in zip(head, widths)) + "│")
    print(line("├", "┼", "┤"))
    for c in cells[1:]:
        print("│" + "│".join(f" {v:<{w}} " if i < 2 else f" {v:>{w}} " for i, (v, w) in enumerate(zip(c, widths))) + "│")
    print(line("└", "┴", "┘"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=24, help="seeded kill points per operation (>= 20)")
    ap.add_argument("--seed", type=int, default=SEED, help="default: CRASH_SEED, else from the clock")
    ap.add_argument("--ops", default="backup,prune,gc,push,pull")
    ap.add_argument("--fault-rates", default="0.02,0.05,0.10")
    ap.add_argument("--fault-runs", type=int, default=2, help="seeded runs per fault rate")
    ap.add_argument("--no-targeted", action="store_true", help="skip push's DeleteObjects kill points")
    ap.add_argument("--json", help="write the table as JSON here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    print(f"soak seed {args.seed} (--seed {args.seed} or CRASH_SEED={args.seed} repeats it)", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="pbsweb-soak-"))
    server = S3Server(tmp)
    env = SoakEnv(server.url, tmp / "work")
    rows: list[Row] = []
    t_all = time.monotonic()
    try:
        for op in [o.strip() for o in args.ops.split(",") if o.strip()]:
            sc = SCENARIOS[op]()
            cal = calibrate(sc, env)
            points = choose_kill_points(sc, cal, args.points, args.seed)
            modes = sorted({p.mode for p in points})
            if not args.quiet:
                print(f"{op}: calibration {cal.events} fs mutations, {cal.requests} requests, "
                      f"{cal.seconds:.2f}s; {len(points)} kill points ({', '.join(modes)})", flush=True)
            row = Row(op, f"{len(points)} ({'/'.join(m.replace('request-', 'req-') for m in modes)})")
            run_kills(env, op, points, row, not args.quiet)
            rows.append(row)
            if op == "push" and not args.no_targeted:
                targeted = [KillPoint(m, n, "DELETE") for n in (1, 2, 3) for m in ("request-pre", "request-post")]
                row = Row("push (DeleteObjects-targeted)", f"{len(targeted)} (req-pre/req-post)")
                run_kills(env, op, targeted, row, not args.quiet)
                rows.append(row)
        rates = [float(r) for r in args.fault_rates.split(",") if r.strip()]
        for rate in rates:
            push_row = Row(f"push @{rate:.0%} faults", "-")
            pull_row = Row(f"pull @{rate:.0%} faults", "-")
            for i in range(args.fault_runs):
                fault_run(env, rate, args.seed * 1000 + i * 7 + int(rate * 100), STATUS_AND_RESET,
                          push_row, pull_row, env.workdir)
            rows += [push_row, pull_row]
            if not args.quiet:
                print(f"faults {rate:.0%}: push {push_row.failures}/{push_row.runs} failed, "
                      f"pull {pull_row.failures}/{pull_row.runs} failed", flush=True)
        if rates:
            rate = 0.05 if 0.05 in rates else rates[0]
            push_row = Row("push (no check)", "-")
            pull_row = Row(f"pull @{rate:.0%} incl. truncated bodies", "-")
            # a truncated body hits ~1 % of the GETs here: more runs, so some do
            for i in range(4 * args.fault_runs):
                fault_run(env, rate, args.seed * 2000 + i * 7, ALL_FAULTS, push_row, pull_row, env.workdir)
            rows.append(pull_row)
    finally:
        env.close()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"soak: seed {args.seed}, {sum(r.runs for r in rows)} runs in {time.monotonic() - t_all:.0f}s")
    print_table(rows)
    details = [d for r in rows for d in r.details]
    if details:
        print("\nfailures:")
        for d in details:
            print(d if len(d) < 3000 else d[:3000] + " …")
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_dict() for r in rows], indent=2))
    return 1 if any(r.failures or r.lost for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
