"""Pieces shared by push and pull: the result record, the bounded parallel
map, and human-readable sizes."""
from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def fmt_rate(nbytes: float, seconds: float) -> str:
    return f"{nbytes / max(seconds, 1e-6) / 1024**2:.1f} MiB/s"


def fmt_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


@dataclass
class SyncResult:
    direction: str                      # "push" | "pull"
    snapshots_synced: list[str] = field(default_factory=list)
    snapshots_unchanged: int = 0
    snapshots_failed: list[tuple[str, str]] = field(default_factory=list)  # (snapshot, error)
    snapshots_removed: list[str] = field(default_factory=list)
    objects_transferred: int = 0        # uploaded (push) or downloaded (pull)
    bytes_transferred: int = 0
    chunks_transferred: int = 0
    chunks_skipped: int = 0             # already on the target
    objects_deleted: int = 0
    deferred_chunks: int = 0
    deferred_bytes: int = 0
    deferred_until: float | None = None
    deferred_snapshots: list[str] = field(default_factory=list)  # vanished, removal waits for a lock
    deferred_files: int = 0             # other files whose deletion waits for a lock
    locks_extended: int = 0             # Object Lock retentions extended (one request each)
    reconciled: bool = False
    no_snapshot_warning: str = ""       # pull: chunk objects but no snapshot manifest
    requests: dict = field(default_factory=dict)
    elapsed: float = 0.0
    errors: list[str] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors and not self.snapshots_failed


class Arrivals:
    """Thread-safe list of what workers finished, drained by the main thread
    (which alone writes the inventory)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items: list = []

    def add(self, item) -> None:
        with self._lock:
            self._items.append(item)

    def drain(self) -> list:
        with self._lock:
            items, self._items = self._items, []
        return items


_END = object()


def map_bounded(executor, fn, items, limit: int):
    """Run fn(item) on the executor with at most `limit` in flight; yield
    (item, future) as they complete. Closing the generator early cancels what
    has not started and waits for what is running."""
    pending: dict[Future, object] = {}
    it = iter(items)
    try:
        while True:
            while len(pending) < limit:
                item = next(it, _END)
                if item is _END:
                    break
                pending[executor.submit(fn, item)] = item
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield pending.pop(f), f
    finally:
        for f in pending:
            f.cancel()
        wait(pending)


class Progress:
    """Fraction done and an ETA text. The fraction is bytes moved against
    bytes planned, or given by the caller when the total is not known ahead
    (pull: snapshots done plus the share of the current one)."""

    def __init__(self, reporter, total_bytes: int, verb: str):
        self.reporter = reporter
        self.total = max(total_bytes, 1)
        self.done = 0
        self.verb = verb
        self.t0 = time.monotonic()
        self._last = 0.0

    def add(self, n: int, force: bool = False, fraction: float | None = None) -> None:
        self.done += n
        now = time.monotonic()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        elapsed = now - self.t0
        frac = min(self.done / self.total if fraction is None else fraction, 1.0)
        eta = elapsed * (1 - frac) / frac if frac > 0 else 0
        text = (f"{self.verb} {fmt_bytes(self.done)}"
                + (f" of {fmt_bytes(self.total)}" if fraction is None else "")
                + f", {fmt_rate(self.done, elapsed)}, ETA {fmt_eta(eta)}")
        self.reporter.progress(frac, text)


def counters_delta(counters, before: dict | None) -> dict:
    if counters is None or before is None:
        return {}
    now = counters.snapshot()
    return {k: now[k] - before.get(k, 0) for k in now}


def requests_line(delta: dict) -> str:
    if not delta:
        return ""
    kinds = ("GET", "PUT", "HEAD", "DELETE", "LIST")
    parts = ", ".join(f"{delta.get(k, 0)} {k}" for k in kinds)
    extra = f", {delta['retries']} retries" if delta.get("retries") else ""
    return f"requests: {parts}{extra}"
