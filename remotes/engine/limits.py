"""Request limits of a remote, enforced on every HTTP attempt of a client
(make_s3_client registers them as botocore `before-send` handlers).

- A request rate (requests per second) covering every method, shared by
  every client of the remote in the process: `shared_rate_limiter(id, rate)`.
- A per-run throttle: when the provider answers 429 or 503 SlowDown the run
  lowers its own rate to half of what it was sending, for the rest of the run.
- Caps (`CapGuard`): daily request caps per class, as Backblaze B2 defines
  the classes (A: uploads and deletes, B: downloads and HEADs, C: listings),
  and a monthly budget in dollars. A request that would cross one either
  waits until the window resets (pause: the next day, or the next month for
  the budget) or raises CapReached (stop).
"""
from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

# Backblaze B2's transaction classes; the caps use them for every provider.
CAP_CLASSES = {"A": ("PUT", "DELETE"), "B": ("GET", "HEAD"), "C": ("LIST",)}
CLASS_OF_KIND = {kind: cls for cls, kinds in CAP_CLASSES.items() for kind in kinds}
ON_CAP = ("pause", "stop")


class CapReached(Exception):
    """A run stopped at a daily request cap or the monthly budget (on-cap stop)."""


class SlidingWindowLimiter:
    """At most `rate` requests in any window of one second, evenly paced:
    one request per 1/rate seconds (plus 5%), never a burst, so that delays
    on the way do not bunch requests above the rate where the provider counts
    them. acquire() blocks until a request may go; thread-safe, waiters sleep
    outside the lock. `slots` > 1 allows bursts (only for counting)."""

    PACE_MARGIN = 1.05

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


_SHARED: dict[str, SlidingWindowLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_rate_limiter(remote_id: str, rate: float) -> SlidingWindowLimiter:
    """The one limiter of a remote in this process (its rate follows the
    remote's current setting)."""
    with _SHARED_LOCK:
        limiter = _SHARED.get(remote_id)
        if limiter is None:
            limiter = _SHARED[remote_id] = SlidingWindowLimiter(rate)
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


class CapGuard:
    """Daily caps per class and a monthly budget for one run.

    `used_today` ({class: count}) and `spent_this_month` (dollars) are what
    the remote used before the run; `prices` gives the dollars per request
    of each RequestCounters kind. `now` is the wall clock (tests inject it).
    """

    def __init__(self, *, daily_caps: dict | None = None, monthly_budget: float | None = None,
                 on_cap: str = "stop", used_today: dict | None = None, spent_this_month: float = 0.0,
                 prices: dict | None = None, remote: str = "", log: Callable[[str], None] | None = None,
                 now: Callable[[], datetime] = datetime.now, sleep=time.sleep,
                 check_abort: Callable[[], None] | None = None):
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

    def active(self) -> bool:
        return bool(self.caps) or self.budget is not None

    def before_send(self, kind: str) -> None:
        cls = CLASS_OF_KIND.get(kind, "B")
        price = float(self.prices.get(kind, 0.0))
        while True:
            with self._lock:
                self._roll_over()
                reason, until = self._over(cls, price)
                if reason is None:
                    self.used[cls] += 1
                    self.spent += price
                    return
            self._at_cap(reason, until)

    def _roll_over(self) -> None:
        today = self.now().date()
        if today != self._day:
            self._day = today
            self.used = {c: 0 for c in CAP_CLASSES}
        if (today.year, today.month) != self._month:
            self._month = (today.year, today.month)
            self.spent = 0.0

    def _over(self, cls: str, price: float) -> tuple[str | None, datetime | None]:
        cap = self.caps.get(cls)
        if cap is not None and self.used[cls] + 1 > cap:
            kinds = "/".join(CAP_CLASSES[cls])
            tomorrow = datetime.combine(self._day + timedelta(days=1), datetime.min.time())
            return (f"daily cap of class {cls} requests ({kinds}) reached on remote '{self.remote}': "
                    f"{self.used[cls]:,} of {cap:,} used today"), tomorrow
        if self.budget is not None and price and self.spent + price > self.budget:
            year, month = self._month
            first = datetime(year + (month == 12), month % 12 + 1, 1)
            return (f"monthly budget of ${self.budget:,.2f} reached on remote '{self.remote}': "
                    f"${self.spent:,.4f} spent this month"), first
        return None, None

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
