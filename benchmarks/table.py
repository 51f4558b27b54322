"""Print one table of every benchmark's rows: pbsweb against its peer (restic,
rclone, ...), with ratios. The last step of `make benchmark`.

    .venv/bin/python benchmarks/table.py [--dir var/benchmarks]

Each benchmark script writes its rows to var/benchmarks/<script>.json: a list
of {"operation": str, "pbsweb_mbps": float, "peer": str, "peer_mbps": float,
"ratio": float, "notes": str}; ratio > 1 means pbsweb is faster. Rows of a
file older than an hour are marked "stale" (from an earlier run).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ("operation", "pbsweb_mbps", "peer", "peer_mbps", "ratio", "notes")


def load(directory: Path) -> list[tuple[str, dict]]:
    rows = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            print(f"{path}: unreadable ({e}); skipped", file=sys.stderr)
            continue
        if not isinstance(data, list):
            print(f"{path}: not a list of rows; skipped", file=sys.stderr)
            continue
        stale = time.time() - path.stat().st_mtime > 3600
        for row in data:
            if not isinstance(row, dict) or any(f not in row for f in FIELDS):
                print(f"{path}: a row lacks one of {', '.join(FIELDS)}; skipped", file=sys.stderr)
                continue
            if stale:
                row = dict(row, notes=("stale; " + str(row["notes"])).rstrip("; "))
            rows.append((path.stem, row))
    return rows


def render(rows: list[tuple[str, dict]]) -> str:
    head = ("script", "operation", "pbsweb MB/s", "peer", "peer MB/s", "ratio", "notes")
    body = [(script, str(r["operation"]), f"{float(r['pbsweb_mbps']):.1f}", str(r["peer"]),
             f"{float(r['peer_mbps']):.1f}", f"{float(r['ratio']):.2f}x", str(r["notes"])) for script, r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    right = {2, 4, 5}

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(head), "  ".join("-" * w for w in widths)]
    out += [line(b) for b in body]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=str(ROOT / "var" / "benchmarks"))
    args = ap.parse_args()
    rows = load(Path(args.dir))
    if not rows:
        print(f"no benchmark results in {args.dir}")
        return
    print()
    print("pbsweb against its peers (ratio = pbsweb MB/s / peer MB/s; the peer ran in the same run)")
    print(render(rows))


if __name__ == "__main__":
    main()
