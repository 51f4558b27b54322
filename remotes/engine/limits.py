"""Request limits of a remote, enforced on every HTTP attempt of a client
(make_s3_client registers them as botocore `before-send` handlers).

- A request rate (requests per second) covering every method, shared by
  every client of the remote: `shared_rate_limiter(id, rate, path)`. With a
  path (the data directory's `remote-rate/<id>`) the pace is kept in that file
  under an flock, so jobs and drills in different worker processes share it.
- A per-run throttle: when the provider answers 429 or 503 SlowDown the run
  lowers its own rate to half of what it was sending, for the rest of the run.
- Caps (`CapGuard`): daily request caps per class, as Backblaze B2 defines
  the classes (A: uploads and deletes, B: downloads and HEADs, C: listings),
  and a monthly budget in dollars. A request that would cross one either
  waits until the window resets (pause: the next day, or the next month for
  the budget) or raises CapReached (stop).
- The daily counts and the month's spending are the remote's, not the run's:
  with a `CapLedger` (one small SQLite file per remote in the data
  directory) every run and drill on the remote reserves its requests (and
  their price) from the same per-day counts and per-month sum, so runs
  together never exceed a cap or the budget (docs/DESIGN.md §8).
"""
from __future__ import annotations

import collections
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

# Backblaze B2's transaction classes; the caps use them for every provider.
CAP_CLASSES = {"A": ("PUT", "DELETE"), "B": ("GET", "HEAD"), "C": ("LIST",)}
CLASS_OF_KIND = {kind: cls for cls, kinds in CAP_CLASSES.items() for kind in kinds}
ON_CAP = ("pause", "stop")


SPEND = "$"            # the ledger's row of a month's spending (nano-dollars), on the month's first day
NANO = 10**9


def _nano(dollars: float) -> int:
    return int(round(float(dollars) * NANO))


class CapReached(Exception):
    """A run stopped at a daily request cap or the monthly budget (on-cap stop)."""


class SlidingWindowLimiter:
    """At most `rate` requests in any window of one second, evenly paced:
    one request per 1/rate seconds (plus 10%), never a burst, so that delays
    on the way do not bunch requests above the rate where the provider counts
    them (the margin absorbs up to 0.1 s of jitter between two requests R apart;
    at 5%, a loaded 2-core machine once delivered R+1 within one second).
    acquire() blocks until a request may go; thread-safe, waiters sleep
    outside the lock. `slots` > 1 allows bursts (only for counting)."""

    PACE_MARGIN = 1.10

    def __init__(self, rate: float, *, clock=time.monotonic, sleep=time.sleep, burst: bool = False):
        self.clock, self.sleep = clock, sleep
        self.burst = burst
        self._lock = threading.Lock()
        self._sent: collections.deque[float] = collections.deque()
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self.rate = float(rate)
            if self.burst:
                self.slots = max(1, int(rate))
                self.window = self.slots / self.rate
            else:
                self.slots, self.window = 1, self.PACE_MARGIN / self.rate

    def acquire(self) -> float:
        """Wait for a slot; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self.clock()
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                if len(self._sent) < self.slots:
                    self._sent.append(now)
                    return waited
                wait = self._sent[0] + self.window - now
            self.sleep(wait)
            waited += wait

    def sent_in_last(self, seconds: float = 1.0) -> int:
        with self._lock:
            now = self.clock()
            return sum(1 for t in self._sent if t > now - seconds)


class FileRateLimiter:
    """The even pace of SlidingWindowLimiter across processes: one small file
    holds the monotonic time at which the next request may go. acquire() takes
    the next free slot under an flock (a thread lock too: flock does not
    exclude threads sharing one open file) and sleeps until it outside the lock.

    CLOCK_MONOTONIC is one clock for every process of the machine; a slot more
    than STALE_SECONDS ahead can only come from before a reboot and is ignored."""

    STALE_SECONDS = 60.0

    def __init__(self, path, rate: float, *, clock=time.monotonic, sleep=time.sleep):
        self.path, self.clock, self.sleep = path, clock, sleep
        self._lock = threading.Lock()
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        self.rate = float(rate)
        self.interval = SlidingWindowLimiter.PACE_MARGIN / self.rate

    def acquire(self) -> float:
        """Wait for this request's slot; returns the seconds waited."""
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                now = self.clock()
                try:
                    taken = float(os.pread(fd, 64, 0) or 0)
                except ValueError:
                    taken = 0.0
                if taken > now + self.STALE_SECONDS:
                    taken = 0.0
                slot = max(now, taken)
                data = repr(slot + self.interval).encode()
                os.pwrite(fd, data.ljust(32), 0)
            finally:
                os.close(fd)  # releases the flock
        wait = slot - now
        if wait > 0:
            self.sleep(wait)
        return max(0.0, wait)


_SHARED: dict[tuple, SlidingWindowLimiter | FileRateLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_rate_limiter(remote_id: str, rate: float, path=None) -> SlidingWindowLimiter | FileRateLimiter:
    """The one limiter of a remote in this process (its rate follows the
    remote's current setting); with `path`, one paced through that file by
    every process that names it."""
    with _SHARED_LOCK:
        key = (remote_id, str(path) if path else None)
        limiter = _SHARED.get(key)
        if limiter is None:
            limiter = _SHARED[key] = FileRateLimiter(path, rate) if path else SlidingWindowLimiter(rate)
        elif limiter.rate != rate:
            limiter.set_rate(rate)
        return limiter


class Throttle:
    """A run's own rate, lowered when the provider asks to slow down.

    Counts the run's requests over the last second; on a 429/503 SlowDown the
    rate becomes half of what was sent in that second (at least 1/s), at most
    once in two seconds (requests already on their way when it was lowered may
    still be answered SlowDown), and `log` says by how much.
    """

    def __init__(self, log: Callable[[str], None] | None = None, *, clock=time.monotonic, sleep=time.sleep):
        self.log = log or (lambda msg: None)
        self.clock = clock
        self.limiter: SlidingWindowLimiter | None = None
        self._recent = SlidingWindowLimiter(10**9, clock=clock, sleep=sleep, burst=True)  # counts only
        self._sleep = sleep
        self._lock = threading.Lock()
        self._lowered_at = None

    @property
    def rate(self) -> float | None:
        return self.limiter.rate if self.limiter else None

    def before_send(self) -> None:
        if self.limiter is not None:
            self.limiter.acquire()
        self._recent.acquire()

    def throttled(self, what: str) -> None:
        with self._lock:
            now = self.clock()
            if self._lowered_at is not None and now - self._lowered_at < 2.0:
                return
            self._lowered_at = now
            sent = self._recent.sent_in_last(1.0)
            before = self.rate
            current = min(before, sent) if before else sent
            new = max(1.0, current / 2)
            if before is not None and new >= before:
                return
            if self.limiter is None:
                self.limiter = SlidingWindowLimiter(new, clock=self.clock, sleep=self._sleep)
            else:
                self.limiter.set_rate(new)
        was = f"{before:g}/s" if before else f"unlimited ({sent} in the last second)"
        self.log(f"the provider answered {what}: lowering this run's request rate from {was} "
                 f"to {new:g} requests/s for the rest of the run")


class CapLedger:
    """The requests a remote made per day and cap class (and, in the row
    SPEND on a month's first day, the month's spending in nano-dollars),
    shared by every run, thread and process on the remote (SQLite, BEGIN
    IMMEDIATE).

    Runs reserve requests in small blocks (reserve) and give back what they
    did not use when they end (release); a run killed on its way loses at
    most one block per class for the rest of that day.
    """

    KEEP_DAYS = 40

    def __init__(self, path, generation: str = ""):
        self.path = str(path)
        self.generation = generation   # a remote created again under the same ID starts afresh
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            # One opening at a time: switching to WAL does not wait for a busy database
            # ("database is locked" at once when two runs start together on a new file).
            with open(self.path + ".open-lock", "a") as opening:
                fcntl.flock(opening, fcntl.LOCK_EX)
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")      # a reservation is one short write, no fsync wait each
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("CREATE TABLE IF NOT EXISTS caps (day TEXT NOT NULL, cls TEXT NOT NULL, "
                             "used INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (day, cls))")
                conn.execute("CREATE TABLE IF NOT EXISTS meta (generation TEXT NOT NULL)")
                row = conn.execute("SELECT generation FROM meta").fetchone()
                if row is None or row[0] != self.generation:
                    conn.execute("DELETE FROM caps")
                    conn.execute("DELETE FROM meta")
                    conn.execute("INSERT INTO meta (generation) VALUES (?)", (self.generation,))
                conn.execute("COMMIT")
            self._conn = conn
        return self._conn

    def _tx(self, fn):
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return out

    def seed(self, day, counts: dict) -> dict:
        """Make the day's counts at least `counts` ({class: requests} recorded
        elsewhere, e.g. by runs without caps); returns the day's counts."""
        key = day.isoformat()

        def fn(db):
            for cls, n in counts.items():
                db.execute("INSERT OR IGNORE INTO caps (day, cls, used) VALUES (?, ?, 0)", (key, cls))
                db.execute("UPDATE caps SET used = MAX(used, ?) WHERE day = ? AND cls = ?", (int(n), key, cls))
            db.execute("DELETE FROM caps WHERE day < ?", ((day - timedelta(days=self.KEEP_DAYS)).isoformat(),))
            return {cls: n for cls, n in db.execute("SELECT cls, used FROM caps WHERE day = ?", (key,))}
        return self._tx(fn)

    def reserve(self, day, cls: str, n: int, cap: int) -> tuple[int, int]:
        """Up to `n` requests of `cls` on `day` without crossing `cap`:
        (granted, the day's count after)."""
        key = day.isoformat()

        def fn(db):
            db.execute("INSERT OR IGNORE INTO caps (day, cls, used) VALUES (?, ?, 0)", (key, cls))
            used = db.execute("SELECT used FROM caps WHERE day = ? AND cls = ?", (key, cls)).fetchone()[0]
            granted = max(0, min(n, cap - used))
            if granted:
                db.execute("UPDATE caps SET used = used + ? WHERE day = ? AND cls = ?", (granted, key, cls))
            return granted, used + granted
        return self._tx(fn)

    def release(self, day, cls: str, n: int) -> None:
        if n > 0:
            self._tx(lambda db: db.execute("UPDATE caps SET used = MAX(0, used - ?) WHERE day = ? AND cls = ?",
                                           (int(n), day.isoformat(), cls)))

    def used(self, day) -> dict:
        with self._lock:
            rows = self._db().execute("SELECT cls, used FROM caps WHERE day = ?", (day.isoformat(),)).fetchall()
        return dict(rows)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class CapGuard:
    """Daily caps per class and a monthly budget for one run.

    `used_today` ({class: count}) and `spent_this_month` (dollars) are what
    the remote used before the run; `prices` gives the dollars per request
    of each RequestCounters kind. `now` is the wall clock (tests inject it).
    With a `ledger` the daily counts are the remote's (every run on it
    reserves from the ledger); call close() when the run ends.
    """

    @staticmethod
    def block(cap: int) -> int:
        """Requests a run reserves from the ledger at a time (1 for small caps)."""
        return max(1, min(64, cap // 50))

    def __init__(self, *, daily_caps: dict | None = None, monthly_budget: float | None = None,
                 on_cap: str = "stop", used_today: dict | None = None, spent_this_month: float = 0.0,
                 prices: dict | None = None, remote: str = "", log: Callable[[str], None] | None = None,
                 now: Callable[[], datetime] = datetime.now, sleep=time.sleep,
                 check_abort: Callable[[], None] | None = None, ledger: CapLedger | None = None):
        self.caps = {c: n for c, n in (daily_caps or {}).items() if n is not None}
        self.budget = monthly_budget
        self.on_cap = on_cap if on_cap in ON_CAP else "stop"
        self.used = {c: int((used_today or {}).get(c, 0)) for c in CAP_CLASSES}
        self.spent = float(spent_this_month or 0.0)
        self.prices = prices or {}
        self.remote = remote
        self.log = log or (lambda msg: None)
        self.now, self.sleep, self.check_abort = now, sleep, check_abort
        self._lock = threading.Lock()
        self._paused_until: datetime | None = None
        self._day = now().date()
        self._month = (self._day.year, self._day.month)
        self.reached: list[str] = []        # what stopped or paused the run, for its result
        self.ledger = ledger
        self._pool = {c: 0 for c in CAP_CLASSES}   # reserved from the ledger, not used yet
        self._spend_pool = 0                         # nano-dollars reserved from the month's budget, not spent
        if ledger is not None and self.caps:
            counts = ledger.seed(self._day, {c: self.used[c] for c in self.caps})
            self.used.update({c: counts.get(c, self.used[c]) for c in self.caps})
        if ledger is not None and self.budget is not None:
            counts = ledger.seed(self._month_day(), {SPEND: _nano(self.spent)})
            self.spent = counts.get(SPEND, 0) / NANO

    def active(self) -> bool:
        return bool(self.caps) or self.budget is not None

    def before_send(self, kind: str) -> None:
        cls = CLASS_OF_KIND.get(kind, "B")
        price = float(self.prices.get(kind, 0.0))
        while True:
            with self._lock:
                self._roll_over()
                reason, until = self._over(cls, price)
                if reason is None and self.ledger is not None and cls in self.caps:
                    reason, until = self._take(cls)
                if reason is None and self.ledger is not None and self.budget is not None and price:
                    reason, until = self._take_spend(price)
                    if reason is not None and cls in self.caps:   # the class's request was not made
                        self._pool[cls] += 1
                if reason is None:
                    self.used[cls] += 1
                    self.spent += price
                    return
            self._at_cap(reason, until)

    def _roll_over(self) -> None:
        today = self.now().date()
        if today != self._day:
            self._give_back()            # to the old day's (and month's) counts
            self._day = today
            self.used = {c: 0 for c in CAP_CLASSES}
        if (today.year, today.month) != self._month:
            self._month = (today.year, today.month)
            self.spent = 0.0

    def _over(self, cls: str, price: float) -> tuple[str | None, datetime | None]:
        cap = self.caps.get(cls)
        if cap is not None and self.ledger is None and self.used[cls] + 1 > cap:
            return self._cap_reason(cls, self.used[cls])
        if self.budget is not None and self.ledger is None and price and self.spent + price > self.budget:
            return self._budget_reason(self.spent)
        return None, None

    def _budget_reason(self, spent: float) -> tuple[str, datetime]:
        year, month = self._month
        first = datetime(year + (month == 12), month % 12 + 1, 1)
        return (f"monthly budget of ${self.budget:,.2f} reached on remote '{self.remote}': "
                f"${spent:,.4f} spent this month"), first

    def _month_day(self):
        return datetime(*self._month, 1).date()

    def _take_spend(self, price: float) -> tuple[str | None, datetime | None]:
        """The request's price from the run's reserved share of the month's budget,
        refilled from the ledger (the budget is the remote's, as the daily caps)."""
        need = _nano(price)
        if self._spend_pool < need:
            budget = _nano(self.budget)
            ask = max(need - self._spend_pool, budget // 200)
            granted, total = self.ledger.reserve(self._month_day(), SPEND, ask, budget)
            if self._spend_pool + granted < need:
                self.ledger.release(self._month_day(), SPEND, granted)
                return self._budget_reason((total - granted) / NANO)
            self._spend_pool += granted
        self._spend_pool -= need
        return None, None

    def _cap_reason(self, cls: str, used: int) -> tuple[str, datetime]:
        kinds = "/".join(CAP_CLASSES[cls])
        tomorrow = datetime.combine(self._day + timedelta(days=1), datetime.min.time())
        return (f"daily cap of class {cls} requests ({kinds}) reached on remote '{self.remote}': "
                f"{used:,} of {self.caps[cls]:,} used today"), tomorrow

    def _take(self, cls: str) -> tuple[str | None, datetime | None]:
        """One request of `cls` from the run's reserved pool, refilled from the ledger."""
        if self._pool[cls] <= 0:
            cap = self.caps[cls]
            granted, total = self.ledger.reserve(self._day, cls, self.block(cap), cap)
            if not granted:
                self.used[cls] = total
                return self._cap_reason(cls, total)
            self._pool[cls] += granted
        self._pool[cls] -= 1
        return None, None

    def _give_back(self) -> None:
        if self.ledger is None:
            return
        for cls, n in self._pool.items():
            if n:
                self.ledger.release(self._day, cls, n)
        self._pool = {c: 0 for c in CAP_CLASSES}
        if self._spend_pool:
            self.ledger.release(self._month_day(), SPEND, self._spend_pool)
            self._spend_pool = 0

    def close(self) -> None:
        """The run ended: what it reserved and did not use goes back to the remote's count."""
        with self._lock:
            self._give_back()
        if self.ledger is not None:
            self.ledger.close()

    def _at_cap(self, reason: str, until: datetime) -> None:
        self.reached.append(reason)
        if self.on_cap == "stop":
            raise CapReached(f"{reason}; stopping (on-cap stop). The next run continues where this one stopped.")
        with self._lock:  # the run's threads all wait; one says so
            first = self._paused_until != until
            self._paused_until = until
        if first:
            self.log(f"{reason}; pausing until {until:%Y-%m-%d %H:%M} (on-cap pause)")
        while self.now() < until:
            if self.check_abort:
                self.check_abort()
            self.sleep(min(60.0, max(0.01, (until - self.now()).total_seconds())))
        if first:
            self.log(f"resuming: {until:%Y-%m-%d %H:%M} reached, the cap's window is new")
