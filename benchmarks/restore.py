"""Restore benchmark: pbsweb local restore against `restic restore` of the same
data in the same run, plain and encrypted, and backup against `restic backup`
(the ingest goal: backup stays at least 2x restic).

    .venv/bin/python benchmarks/restore.py [--size 512MiB] [--files 4000] [--repeat 3] [--keep]

Data sets:
- mixed: the benchmarks/ingest.py data (--size, half random, half text);
- tree: --files small files (0-64 KiB) in nested directories, a few hard
  links, plus large files (2 x 48 MiB random, 1 x 32 MiB text).

Restores alternate between the tools (--repeat rounds; the median counts: a
shared, loaded machine gives single runs a wide spread). Every timed run is
a child process (`--child`): peak RSS comes from wait4(); MB/s is the data's
size over the engine call's time (interpreter start excluded; restic is
timed from spawn to exit). Each restore is compared with
the source (content, modes, hard links) and must be identical. Results go to
var/benchmarks/restore.json as rows for benchmarks/table.py.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MiB = 1024 * 1024
RESTIC = shutil.which("restic") or "/usr/bin/restic"
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824"}


# -- data ---------------------------------------------------------------------------------

def make_small_tree(root: Path, files: int, seed: int = 5) -> int:
    from ingest import text_block
    rng = random.Random(seed)
    text = text_block(rng, 4 * MiB)
    total = 0
    for i in range(files):
        d = root / f"d{i % 20:02d}" / f"s{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.choice((0, 100, 1000, 4096, 10_000, 30_000, 65_536))
        if i % 2:
            data = rng.randbytes(size)
        else:
            off = rng.randrange(len(text) - size)
            data = text[off:off + size]
        p = d / f"f{i:05d}.dat"
        p.write_bytes(data)
        total += size
        if i % 200 == 0:        # a few hard links
            os.link(p, d / f"f{i:05d}.link")
    big = root / "big"
    big.mkdir()
    for i in range(2):
        with open(big / f"random{i}.bin", "wb") as f:
            for _ in range(48):
                f.write(os.urandom(MiB))
        total += 48 * MiB
    with open(big / "text.log", "wb") as f:
        for _ in range(8):
            f.write(text)
    total += 32 * MiB
    return total


def settle() -> None:
    os.sync()
    time.sleep(0.5)


def tree_state(root: Path) -> dict:
    """path -> (type, mode, size, mtime, content digest, hard-link group) for comparison."""
    import blake3
    out, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISREG(st.st_mode):
                h = blake3.blake3()
                with open(p, "rb") as f:
                    while b := f.read(4 * MiB):
                        h.update(b)
                group = inodes.setdefault(st.st_ino, rel) if st.st_nlink > 1 else ""
                out[rel] = ("f", stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns // 1000,
                            h.hexdigest(), group)
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            else:
                out[rel] = ("d", stat.S_IMODE(st.st_mode))
    return out


# -- child processes ----------------------------------------------------------------------

def child(argv: list[str]) -> None:
    """Run one engine operation and print {"seconds": …}."""
    from datastores.engine.backup import run_backup
    from datastores.engine.crypto import CryptConfig
    from datastores.engine.datastore import Datastore
    from datastores.engine.restore import restore_archive
    op, store_path = argv[0], argv[1]
    store = Datastore(store_path)
    key = os.environ.get("BENCH_KEY")        # a throwaway key, kept out of argv
    crypt = CryptConfig(bytes.fromhex(key)) if key else None
    t = time.perf_counter()
    if op == "backup":
        res = run_backup(store, "host", "bench", [("data.tar", argv[2])], crypt=crypt)
        out = {"ref": str(res.ref)}
    else:
        ref = store.list_snapshots()[-1]
        restore_archive(store, ref, "data.tar", argv[2], crypt=crypt)
        out = {}
    out["seconds"] = time.perf_counter() - t
    print(json.dumps(out))


def spawn(cmd: list[str], env=None) -> tuple[float, float, str]:
    """Like run_child, reaping the child with wait4 so its own peak RSS is known."""
    t = time.perf_counter()
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        p = subprocess.Popen(cmd, stdout=so, stderr=se, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        so.seek(0)
        se.seek(0)
        out, err = so.read().decode(), se.read().decode()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({p.returncode}): {err[-2000:]}")
    return wall, ru.ru_maxrss / 1024, out


def pbsweb(op: str, store: Path, key: str, path: Path) -> tuple[float, float]:
    env = dict(os.environ, **MALLOC_ENV, BENCH_KEY=key)
    _, rss, out = spawn([sys.executable, __file__, "--child", op, str(store), str(path)], env)
    return json.loads(out.strip().splitlines()[-1])["seconds"], rss


# -- one data set -------------------------------------------------------------------------

def bench_set(label: str, data: Path, size: int, work: Path, repeat: int, backup: bool) -> list[dict]:
    from datastores.engine.datastore import Datastore
    ref_state = tree_state(data)
    rows = []
    renv = dict(os.environ, RESTIC_PASSWORD="bench-password", RESTIC_REPOSITORY=str(work / f"restic-{label}"),
                RESTIC_CACHE_DIR=str(work / "restic-cache"))
    subprocess.run([RESTIC, "init"], env=renv, check=True, capture_output=True)
    settle()
    rb_wall, rb_rss, _ = spawn([RESTIC, "backup", "--quiet", str(data)], renv)
    mb = size / MiB
    modes = {}
    for mode in ("plain", "encrypted"):
        store = Datastore.create(work / f"store-{label}-{mode}")
        key = os.urandom(32).hex() if mode == "encrypted" else ""
        settle()
        b_s, b_rss = pbsweb("backup", store.path, key, data)
        modes[mode] = (store, key)
        if backup:
            rows.append(dict(operation=f"backup {label} {mb:.0f} MiB ({mode})", pbsweb_mbps=mb / b_s,
                             peer="restic backup", peer_mbps=mb / rb_wall, ratio=rb_wall / b_s,
                             notes=f"peak RSS {b_rss:.0f} vs {rb_rss:.0f} MiB"))
    restic_times, restic_rss = [], 0.0
    times = {m: [] for m in modes}
    peak = {m: 0.0 for m in modes}
    for r in range(repeat):
        for mode, (store, key) in modes.items():
            out = work / f"out-{label}-{mode}"
            settle()
            s, rss = pbsweb("restore", store.path, key, out)
            if r == 0:
                assert tree_state(out) == ref_state, f"pbsweb {mode} restore of {label} differs from the source"
            shutil.rmtree(out)
            times[mode].append(s)
            peak[mode] = max(peak[mode], rss)
        out = work / f"restic-out-{label}"
        settle()
        s, rss, _ = spawn([RESTIC, "restore", "latest", "--target", str(out)], renv)
        if r == 0:
            assert tree_state(out / str(data).lstrip("/")) == ref_state, f"restic restore of {label} differs"
        shutil.rmtree(out)
        restic_times.append(s)
        restic_rss = max(restic_rss, rss)
    peer_s = statistics.median(restic_times)
    for mode, ts in times.items():
        s = statistics.median(ts)
        rows.append(dict(operation=f"restore {label} {mb:.0f} MiB ({mode})", pbsweb_mbps=mb / s,
                         peer="restic restore", peer_mbps=mb / peer_s, ratio=peer_s / s,
                         notes=f"byte-identical; median of {len(ts)}; peak RSS {peak[mode]:.0f} vs "
                               f"{restic_rss:.0f} MiB"))
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    from ingest import generate, parse_size
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="512MiB", help="mixed data size (default 512MiB)")
    ap.add_argument("--files", type=int, default=4000, help="small files in the tree data set (default 4000)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="restores per tool, alternating; the median time counts (default 3)")
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--out", default=str(ROOT / "var" / "benchmarks" / "restore.json"))
    args = ap.parse_args()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="pbsweb-restore-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        mixed = work / "mixed"
        size = generate(mixed, parse_size(args.size))
        tree = work / "tree"
        tree_size = make_small_tree(tree, args.files)
        rows = bench_set("mixed", mixed, size, work, args.repeat, backup=True)
        rows += bench_set(f"tree-{args.files}-files", tree, tree_size, work, args.repeat, backup=False)
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{'operation':<42}{'pbsweb MB/s':>12}{'peer MB/s':>11}{'ratio':>7}  notes")
    for r in rows:
        print(f"{r['operation']:<42}{r['pbsweb_mbps']:>12.1f}{r['peer_mbps']:>11.1f}{r['ratio']:>7.2f}  {r['notes']}")
    print(f"(machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; rows written to {out})")


if __name__ == "__main__":
    main()
