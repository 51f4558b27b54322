"""Traffic control: a token bucket shared by all transfers of a remote, with
time frames (`mon..fri 08:00-18:00`) that change the rate by time of day.

    limiter = RateLimiter(rate=10 * MiB, burst=1 * MiB,
                          rules=[TimeFrameRule("mon..fri 08:00-18:00", 2 * MiB)])
    limiter.consume(len(data))      # blocks until the bytes may go

A rate of None (or 0) is unlimited. `effective_rate(rules, now, default)`
gives the rate of the first rule whose time frame contains `now`.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def parse_rate(text: str | int | float | None) -> float | None:
    """'10MiB', '500 KB', '1.5G', 1048576 -> bytes per second; None/''/0 -> unlimited."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return float(text) or None
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*?)(?:/s)?\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"invalid rate {text!r} (e.g. 10MiB, 500KB)")
    return float(m.group(1)) * _UNITS[m.group(2).lower()] or None


def _parse_days(spec: str) -> set[int]:
    days: set[int] = set()
    for part in spec.lower().split(","):
        if ".." in part:
            a, b = part.split("..", 1)
            i, j = DAYS.index(a[:3]), DAYS.index(b[:3])
            days.update(range(i, j + 1) if i <= j else list(range(i, 7)) + list(range(0, j + 1)))
        else:
            days.add(DAYS.index(part[:3]))
    return days


def _parse_hhmm(s: str) -> int:
    h, _, m = s.partition(":")
    h, m = int(h), int(m or 0)
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        raise ValueError(f"invalid time {s!r}")
    return h * 60 + m


class TimeFrame:
    """`[days] [HH:MM-HH:MM]`, e.g. `mon..fri 08:00-18:00`, `sat,sun`, `22:00-06:00`.

    Days default to every day, hours to the whole day; an hour range that
    wraps midnight belongs to the day it starts on.
    """

    _RE = re.compile(r"^\s*(?:(?P<days>[a-z.,]+)\s*)?(?:(?P<start>\d{1,2}(?::\d\d)?)-(?P<end>\d{1,2}(?::\d\d)?))?\s*$")

    def __init__(self, spec: str):
        m = self._RE.match(spec.lower())
        if not m or not (m.group("days") or m.group("start")):
            raise ValueError(f"invalid time frame {spec!r} (e.g. 'mon..fri 08:00-18:00')")
        try:
            self.days = _parse_days(m.group("days")) if m.group("days") else set(range(7))
        except ValueError:
            raise ValueError(f"invalid days in time frame {spec!r}") from None
        self.start = _parse_hhmm(m.group("start")) if m.group("start") else 0
        self.end = _parse_hhmm(m.group("end")) if m.group("end") else 24 * 60
        self.spec = spec

    def contains(self, now: datetime) -> bool:
        minute = now.hour * 60 + now.minute
        day = now.weekday()
        if self.start <= self.end:
            return day in self.days and self.start <= minute < self.end
        # wraps midnight: the evening part today, or the morning part after yesterday's start
        return (day in self.days and minute >= self.start) or \
               ((day - 1) % 7 in self.days and minute < self.end)

    def __repr__(self):
        return f"TimeFrame({self.spec!r})"


@dataclass
class TimeFrameRule:
    timeframe: str | TimeFrame
    rate: float | str | None   # bytes/s; None = unlimited

    def __post_init__(self):
        if isinstance(self.timeframe, str):
            self.timeframe = TimeFrame(self.timeframe)
        if isinstance(self.rate, str):
            self.rate = parse_rate(self.rate)


def effective_rate(rules, now: datetime, default: float | None = None) -> float | None:
    """The rate of the first rule whose time frame contains `now`, else `default`.
    Rules may be TimeFrameRule or (timeframe, rate) pairs."""
    for rule in rules or ():
        if not isinstance(rule, TimeFrameRule):
            rule = TimeFrameRule(*rule)
        if rule.timeframe.contains(now):
            return rule.rate
    return default


def transfer_seconds(nbytes: float, rules, default: float | None, start: datetime,
                     *, horizon_days: int = 400) -> tuple[float, bool]:
    """How long `nbytes` take from `start` at the rates the time-frame rules
    give (else `default`), minute by minute: (seconds, limited), where
    `limited` is False when some of the bytes go while there is no limit
    (they are counted as instant: the network sets that pace)."""
    rules = [r if isinstance(r, TimeFrameRule) else TimeFrameRule(*r) for r in rules or ()]
    left, t, limited = float(nbytes), start, True
    end = start + timedelta(days=horizon_days)
    while left > 0 and t < end:
        step_end = (t + timedelta(minutes=1)).replace(second=0, microsecond=0)
        rate = effective_rate(rules, t, default)
        if not rate:
            return (t - start).total_seconds(), False
        span = (step_end - t).total_seconds()
        if rate * span >= left:
            return (t - start).total_seconds() + left / rate, limited
        left -= rate * span
        t = step_end
    return (t - start).total_seconds(), limited


class TokenBucket:
    """Thread-safe token bucket: `rate` bytes/s, at most `burst` bytes saved up.

    consume(n) takes n tokens and sleeps while the balance is negative, so a
    transfer larger than the burst goes in debt and the long-run rate stays
    exact. Waiters sleep outside the lock.
    """

    def __init__(self, rate: float | None, burst: float | None = None, *,
                 clock=time.monotonic, sleep=time.sleep):
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self.rate = rate or None
        self.burst = float(burst if burst is not None else (rate or 0))
        self.tokens = self.burst
        self.stamp = clock()

    def set_rate(self, rate: float | None, burst: float | None = None) -> None:
        with self._lock:
            self._refill()
            self.rate = rate or None
            if burst is not None:
                self.burst = float(burst)
            elif rate:
                self.burst = max(self.burst, 0.0) or float(rate)
            self.tokens = min(self.tokens, self.burst)

    def _refill(self) -> None:
        now = self.clock()
        if self.rate:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def consume(self, n: int) -> float:
        """Take n tokens; returns the seconds slept."""
        with self._lock:
            if not self.rate:
                return 0.0
            self._refill()
            self.tokens -= n
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            self.sleep(wait)
        return wait


class RateLimiter:
    """A TokenBucket whose rate follows time-frame rules (checked at most once
    per `recheck` seconds), shared by every transfer of one remote direction."""

    def __init__(self, rate: float | str | None = None, burst: float | str | None = None,
                 rules=(), *, wallclock=datetime.now, clock=time.monotonic, sleep=time.sleep,
                 recheck: float = 5.0):
        self.default = parse_rate(rate)
        self.rules = [r if isinstance(r, TimeFrameRule) else TimeFrameRule(*r) for r in rules]
        self.wallclock = wallclock
        self.recheck = recheck
        self._burst = parse_rate(burst)
        self.bucket = TokenBucket(None, self._burst, clock=clock, sleep=sleep)
        self._checked = None
        self._update()

    def _update(self) -> None:
        rate = effective_rate(self.rules, self.wallclock(), self.default)
        if rate != self.bucket.rate:
            self.bucket.set_rate(rate, self._burst if self._burst else rate)
        self._checked = self.bucket.clock()

    @property
    def rate(self) -> float | None:
        return self.bucket.rate

    def consume(self, n: int) -> float:
        if self.rules and self.bucket.clock() - self._checked >= self.recheck:
            self._update()
        return self.bucket.consume(n)
