"""Ingest benchmark: back up and restore ~2 GiB of mixed data (plain and
encrypted) with the pbsweb engine, and the same data with restic if installed.

    .venv/bin/python benchmarks/ingest.py --size 512MiB [--keep] [--no-restic]

Data: about half random (incompressible) and half text (zstd ~0.25), with
whole-file duplicates and repeated blocks so dedup has something to find,
spread over files of many sizes.
MALLOC_* settings avoid page-fault storms from fresh 4 MiB buffers
(see tooling-notes.md); the script re-executes itself with them set.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MiB = 1024 * 1024
WORDS = ("backup server chunk index datastore prune verify sync bucket remote snapshot manifest "
         "namespace garbage collection encryption key fingerprint retention schedule task log "
         "the of and to in is for on with as by at from").split()


def parse_size(text: str) -> int:
    t = text.strip().lower()
    for suffix, mult in (("gib", 1 << 30), ("mib", 1 << 20), ("kib", 1 << 10), ("g", 1 << 30),
                         ("m", 1 << 20), ("k", 1 << 10), ("b", 1)):
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * mult)
    return int(t)


def text_block(rng: random.Random, n: int) -> bytes:
    # Zipf-ish word choice: compressible like real text/logs.
    weights = [1 / (i + 1) for i in range(len(WORDS))]
    out, size = [], 0
    while size < n:
        line = " ".join(rng.choices(WORDS, weights, k=12)) + f" {rng.randrange(10**6)}\n"
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def generate(root: Path, total: int, seed: int = 1) -> int:
    """Write `total` bytes of mixed files under root; returns bytes written."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    text_pool = text_block(rng, 8 * MiB)
    rand_pool = [os.urandom(MiB) for _ in range(4)]       # repeated random blocks
    written, i = 0, 0
    originals: list[tuple[Path, int]] = []   # random files that later files duplicate
    sizes = [4096, 100_000, MiB, 8 * MiB, 32 * MiB, 64 * MiB]
    while written < total:
        size = min(rng.choice(sizes), total - written)
        kind = i % 4
        d = root / f"dir{i % 7}" / f"sub{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"file{i:05d}.{['bin', 'txt', 'dup', 'log'][kind]}"
        if kind == 2 and originals:
            # a whole-file duplicate of an earlier random file (dedup finds it)
            src, n = originals[rng.randrange(len(originals))]
            size = min(n, total - written)
            with open(src, "rb") as fi, open(path, "wb") as fo:
                fo.write(fi.read(size))
            written += size
            i += 1
            continue
        with open(path, "wb") as f:
            left = size
            while left:
                k = min(left, MiB)
                if kind == 0:
                    f.write(os.urandom(k))                   # unique random
                elif kind == 2:
                    f.write(rand_pool[rng.randrange(4)][:k])  # repeated random
                else:
                    off = rng.randrange(len(text_pool) - k + 1)
                    f.write(text_pool[off:off + k])           # text, partly repeated
                left -= k
        if kind == 0 and size >= MiB:
            originals.append((path, size))
        written += size
        i += 1
    return written


def settle() -> None:
    """Flush dirty pages before a timed phase, so no run pays for the previous one's writeback."""
    os.sync()
    time.sleep(0.5)


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_pbsweb(data: Path, work: Path, encrypted: bool, size: int) -> dict:
    from datastores.engine.backup import run_backup
    from datastores.engine.crypto import CryptConfig
    from datastores.engine.datastore import Datastore
    from datastores.engine.restore import restore_archive

    store = Datastore.create(work / ("store-enc" if encrypted else "store"))
    crypt = CryptConfig.generate() if encrypted else None
    settle()
    t = time.perf_counter()
    res = run_backup(store, "host", "bench", [("data.tar", data)], crypt=crypt)
    backup_s = time.perf_counter() - t
    t = time.perf_counter()
    res2 = run_backup(store, "host", "bench", [("data.tar", data)], crypt=crypt,
                      backup_time=int(time.time()) + 1)
    rerun_s = time.perf_counter() - t
    out = work / ("restore-enc" if encrypted else "restore")
    settle()
    t = time.perf_counter()
    restore_archive(store, res.ref, "data.tar", out, crypt=crypt)
    restore_s = time.perf_counter() - t
    ok = subprocess.run(["diff", "-rq", str(data), str(out)], capture_output=True).returncode == 0
    shutil.rmtree(out)
    settle()
    return {"backup_s": backup_s, "backup_mbs": size / MiB / backup_s,
            "rerun_s": rerun_s, "rerun_mbs": size / MiB / rerun_s, "rerun_new_chunks": res2.chunks_new,
            "restore_s": restore_s, "restore_mbs": size / MiB / restore_s,
            "stored_mib": du(store.path / ".chunks") / MiB, "chunks": res.chunks_new + res.chunks_reused,
            "identical": ok}


def run_restic(data: Path, work: Path, size: int) -> dict | None:
    restic = shutil.which("restic")
    if not restic:
        return None
    env = dict(os.environ, RESTIC_PASSWORD="bench-password", RESTIC_REPOSITORY=str(work / "restic"),
               RESTIC_CACHE_DIR=str(work / "restic-cache"))
    subprocess.run([restic, "init"], env=env, check=True, capture_output=True)
    settle()
    t = time.perf_counter()
    subprocess.run([restic, "backup", "--quiet", str(data)], env=env, check=True, capture_output=True)
    backup_s = time.perf_counter() - t
    out = work / "restic-restore"
    settle()
    t = time.perf_counter()
    subprocess.run([restic, "restore", "latest", "--target", str(out)], env=env, check=True, capture_output=True)
    restore_s = time.perf_counter() - t
    ok = subprocess.run(["diff", "-rq", str(data), str(out) + str(data)], capture_output=True).returncode == 0
    shutil.rmtree(out)
    return {"backup_s": backup_s, "backup_mbs": size / MiB / backup_s, "restore_s": restore_s,
            "restore_mbs": size / MiB / restore_s, "stored_mib": du(work / "restic") / MiB, "identical": ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="2GiB", help="amount of test data (default 2GiB)")
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--no-restic", action="store_true")
    ap.add_argument("--json", action="store_true", help="print results as JSON")
    args = ap.parse_args()
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="33554432", MALLOC_TRIM_THRESHOLD_="1073741824")
        os.execve(sys.executable, [sys.executable] + sys.argv, env)

    size = parse_size(args.size)
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="pbsweb-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = work / "data"
        t = time.perf_counter()
        size = generate(data, size)
        print(f"generated {size / MiB:.0f} MiB in {time.perf_counter() - t:.1f} s under {data}")
        os.sync()
        results = {"size_mib": size / MiB, "cpus": os.cpu_count()}
        results["pbsweb_plain"] = run_pbsweb(data, work, False, size)
        results["pbsweb_encrypted"] = run_pbsweb(data, work, True, size)
        if not args.no_restic:
            results["restic"] = run_restic(data, work, size)
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            print(f"{'run':<18}{'backup MB/s':>12}{'re-run MB/s':>13}{'restore MB/s':>14}{'stored MiB':>12}  identical")
            for k in ("pbsweb_plain", "pbsweb_encrypted", "restic"):
                r = results.get(k)
                if r:
                    print(f"{k:<18}{r['backup_mbs']:>12.1f}{r.get('rerun_mbs', float('nan')):>13.1f}"
                          f"{r['restore_mbs']:>14.1f}{r['stored_mib']:>12.1f}  {r['identical']}")
            if results.get("restic"):
                rs = results["restic"]
                for k in ("pbsweb_plain", "pbsweb_encrypted"):
                    r = results[k]
                    print(f"{k} / restic: backup {r['backup_mbs'] / rs['backup_mbs']:.2f}x, "
                          f"restore {r['restore_mbs'] / rs['restore_mbs']:.2f}x")
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
