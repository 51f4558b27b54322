"""Schedules: PBS calendar events and 5-field cron expressions.

Calendar events follow proxmox-time (systemd.time style):

    [WEEKDAY] [[YEARS-]MONTHS-DAYS] [HOURS:]MINUTES[:SECONDS] [UTC]

Each field is `*`, `*/step`, or a comma list of `a`, `a..b`, `a/step`,
`a..b/step`. Weekdays are names (`mon`, `monday`, ...) and ranges wrap
(`sat..mon`). Missing fields default as in PBS: no weekday means any day,
no date means `*-*-*`, no time means `00:00:00`, seconds default to 0, and
a time without hours (`15`, PBS accepts it) means that minute of every hour.

A schedule with five whitespace-separated fields is read as cron
(`minute hour day-of-month month day-of-week`, names `jan`/`mon` allowed,
day-of-week 0 and 7 are Sunday). When both day fields are restricted (neither
starts with `*`) a day matches if either does, as in Vixie cron.

Evaluation happens on the local wall clock of the datetime passed to
`next_after` (or in UTC for events ending in ` UTC`). Around DST changes,
each wall-clock time fires at most once: a time skipped by the spring jump
does not fire that day (as in PBS and systemd), a time repeated in autumn
fires at its first occurrence only.

No Django here: stdlib only.
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from typing import Iterator

__all__ = ["Schedule", "ScheduleError", "parse_schedule", "validate_schedule"]


class ScheduleError(ValueError):
    """A schedule string that cannot be parsed; the message names the bad part."""


# The PBS special values, as the calendar events they stand for.
_SPECIAL = {
    "minutely": "*-*-* *:*:00",
    "hourly": "*-*-* *:00:00",
    "daily": "*-*-* 00:00:00",
    "weekly": "mon *-*-* 00:00:00",
    "monthly": "*-*-01 00:00:00",
    "yearly": "*-01-01 00:00:00",
    "annually": "*-01-01 00:00:00",
    "quarterly": "*-01,04,07,10-01 00:00:00",
    "semiannually": "*-01,07-01 00:00:00",
    "semi-annually": "*-01,07-01 00:00:00",
}

# Cron's @-shortcuts (note: cron's @weekly is Sunday, PBS's weekly Monday).
_CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# Monday = 0, as date.weekday().
_WEEKDAYS = {
    "mon": 0, "monday": 0, "tue": 1, "tuesday": 1, "wed": 2, "wednesday": 2,
    "thu": 3, "thursday": 3, "fri": 4, "friday": 4, "sat": 5, "saturday": 5,
    "sun": 6, "sunday": 6,
}
_MONTH_NAMES = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
# Cron numbers weekdays Sunday = 0 (and 7).
_CRON_DOW_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

# Years are bounded as in proxmox-time (systemd's limit).
_YEAR_MIN, _YEAR_MAX = 1970, 2199
# Weekday/date patterns repeat every 400 Gregorian years: searching further is pointless.
_SEARCH_YEARS = 400

_CAL_ITEM = re.compile(r"(\d+)(?:\.\.(\d+))?(?:/(\d+))?")
_CRON_ITEM = re.compile(r"(\*|[a-z0-9]+)(?:-([a-z0-9]+))?(?:/(\d+))?")


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule. Fields are sets of allowed values, None meaning any."""

    text: str
    kind: str  # "calendar" or "cron"
    years: frozenset[int] | None = None
    months: frozenset[int] | None = None
    days: frozenset[int] | None = None
    weekdays: frozenset[int] | None = None  # Monday = 0
    hours: frozenset[int] | None = None
    minutes: frozenset[int] | None = None
    seconds: frozenset[int] | None = None
    utc: bool = False
    day_or: bool = False  # cron: day-of-month OR day-of-week

    def __str__(self) -> str:
        return self.text

    def matches(self, dt: datetime) -> bool:
        """Whether the wall-clock time of `dt` (in its own zone) is a scheduled time."""
        if self.utc and dt.tzinfo is not None:
            dt = dt.astimezone(timezone.utc)
        return (
            self._day_matches(dt.date())
            and _allows(self.hours, dt.hour)
            and _allows(self.minutes, dt.minute)
            and _allows(self.seconds, dt.second)
        )

    def next_after(self, dt: datetime) -> datetime | None:
        """The first scheduled time strictly after `dt`, in dt's zone; None if none is left.

        Walks matching days, then the hours/minutes/seconds of each day, so a
        rare schedule costs a few hundred day checks, not a minute-by-minute scan.
        """
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise ValueError("next_after needs a timezone-aware datetime")
        zone = timezone.utc if self.utc else dt.tzinfo
        after = dt.astimezone(timezone.utc)
        wall = dt.astimezone(zone).replace(tzinfo=None, microsecond=0)
        for day in self._days_from(wall.date()):
            start = wall.time() if day == wall.date() else time(0)
            for t in self._times_from(start):
                candidate = datetime.combine(day, t, tzinfo=zone)  # fold=0: first occurrence
                instant = candidate.astimezone(timezone.utc)
                if instant.astimezone(zone).replace(tzinfo=None) != candidate.replace(tzinfo=None):
                    continue  # the wall time does not exist (DST jump)
                # Candidates can lie before dt when dt is in a repeated (fold=1) hour.
                if instant > after:
                    return candidate.astimezone(dt.tzinfo)
        return None

    def next_runs(self, dt: datetime, count: int) -> list[datetime]:
        """Up to `count` successive run times after `dt` (for previews)."""
        runs: list[datetime] = []
        current = dt
        while len(runs) < count:
            nxt = self.next_after(current)
            if nxt is None:
                break
            runs.append(nxt)
            current = nxt
        return runs

    def _day_matches(self, d: date) -> bool:
        dom_ok = _allows(self.days, d.day) and _allows(self.months, d.month) and _allows(self.years, d.year)
        dow_ok = _allows(self.weekdays, d.weekday())
        if self.day_or:
            in_month = _allows(self.months, d.month) and _allows(self.years, d.year)
            return in_month and (_allows(self.days, d.day) or dow_ok)
        return dom_ok and dow_ok

    def _days_from(self, start: date) -> Iterator[date]:
        """Matching days from `start` on (inclusive), in order."""
        if self.years is not None:
            years = sorted(y for y in self.years if y >= start.year)
        else:
            years = range(start.year, min(start.year + _SEARCH_YEARS, 9998) + 1)
        months = sorted(self.months) if self.months is not None else range(1, 13)
        # With the cron OR rule any day of the month may match through its weekday.
        days = sorted(self.days) if self.days is not None and not self.day_or else range(1, 32)
        for year in years:
            for month in months:
                if (year, month) < (start.year, start.month):
                    continue
                month_len = calendar.monthrange(year, month)[1]
                for day in days:
                    if day > month_len:
                        break
                    d = date(year, month, day)
                    if d >= start and self._day_matches(d):
                        yield d

    def _times_from(self, start: time) -> Iterator[time]:
        """Scheduled times of day at or after `start`, in order."""
        hours = sorted(self.hours) if self.hours is not None else range(24)
        minutes = sorted(self.minutes) if self.minutes is not None else range(60)
        seconds = sorted(self.seconds) if self.seconds is not None else range(60)
        for h in hours:
            if h < start.hour:
                continue
            for m in minutes:
                if (h, m) < (start.hour, start.minute):
                    continue
                for s in seconds:
                    if (h, m, s) >= (start.hour, start.minute, start.second):
                        yield time(h, m, s)


def _allows(values: frozenset[int] | None, value: int) -> bool:
    return values is None or value in values


def parse_schedule(text: str) -> Schedule:
    """Parse a PBS calendar event or a 5-field cron expression."""
    if not isinstance(text, str):
        raise ScheduleError(f"invalid schedule {text!r}: not a string")
    tokens = text.split()
    if not tokens:
        raise ScheduleError("invalid schedule: the schedule is empty")
    try:
        if tokens[0].startswith("@"):
            macro = _CRON_MACROS.get(tokens[0].lower())
            if macro is None or len(tokens) > 1:
                raise ScheduleError(f"unknown cron shortcut '{' '.join(tokens)}'")
            return _parse_cron(text, macro.split())
        if len(tokens) >= 5:
            return _parse_cron(text, tokens)
        return _parse_calendar(text, tokens)
    except ScheduleError as err:
        raise ScheduleError(f"invalid schedule {text.strip()!r}: {err}") from None


def validate_schedule(text: str) -> str:
    """The schedule with surrounding and repeated blanks removed; raises ScheduleError."""
    parse_schedule(text)
    return " ".join(text.split())


# -- calendar events ---------------------------------------------------------

def _parse_calendar(text: str, tokens: list[str]) -> Schedule:
    utc = False
    if tokens[-1] == "UTC":
        utc = True
        tokens = tokens[:-1]
        if not tokens:
            raise ScheduleError("'UTC' needs a date or time before it")

    special = _SPECIAL.get(tokens[0].lower())
    if special is not None:
        if len(tokens) > 1:
            raise ScheduleError(f"'{tokens[0]}' cannot be combined with '{' '.join(tokens[1:])}'")
        tokens = special.split()

    fields: dict = {}
    rest = list(tokens)
    if rest and rest[0][0].isalpha():
        fields["weekdays"] = _parse_weekdays(rest.pop(0))
    if rest and "-" in rest[0]:
        fields.update(_parse_date(rest.pop(0)))
    if rest and "-" not in rest[0] and not rest[0][0].isalpha():
        fields.update(_parse_time(rest.pop(0)))
    else:
        fields.update(hours=frozenset({0}), minutes=frozenset({0}), seconds=frozenset({0}))
    if rest:
        raise ScheduleError(f"unexpected '{rest[0]}' (expected [WEEKDAY] [[YEARS-]MONTHS-DAYS] [HOURS:MINUTES[:SECONDS]])")
    return Schedule(text=text, kind="calendar", utc=utc, **fields)


def _parse_weekdays(token: str) -> frozenset[int]:
    result: set[int] = set()
    for item in token.split(","):
        if not item:
            raise ScheduleError(f"empty entry in weekday list '{token}'")
        start_name, sep, end_name = item.lower().partition("..")
        if "-" in item or not start_name.isalpha() or (sep and not end_name.isalpha()):
            raise ScheduleError(f"invalid weekday '{item}' (use names like mon, ranges like mon..fri)")
        start = _weekday(start_name)
        end = _weekday(end_name) if sep else start
        day = start
        while True:  # ranges wrap around the week: sat..mon
            result.add(day)
            if day == end:
                break
            day = (day + 1) % 7
    return frozenset(result)


def _weekday(name: str) -> int:
    if name not in _WEEKDAYS:
        raise ScheduleError(f"unknown weekday '{name}'")
    return _WEEKDAYS[name]


def _parse_date(token: str) -> dict:
    parts = token.split("-")
    if len(parts) == 2:
        parts = ["*"] + parts
    if len(parts) != 3:
        raise ScheduleError(f"invalid date '{token}' (expected [YEARS-]MONTHS-DAYS)")
    return {
        "years": _calendar_values(parts[0], "year", _YEAR_MIN, _YEAR_MAX),
        "months": _calendar_values(parts[1], "month", 1, 12),
        "days": _calendar_values(parts[2], "day", 1, 31),
    }


def _parse_time(token: str) -> dict:
    parts = token.split(":")
    if len(parts) > 3:
        raise ScheduleError(f"invalid time '{token}' (expected HOURS:MINUTES[:SECONDS])")
    if len(parts) == 1:  # PBS reads a lone value as the minute of every hour
        parts = ["*"] + parts
    return {
        "hours": _calendar_values(parts[0], "hour", 0, 23),
        "minutes": _calendar_values(parts[1], "minute", 0, 59),
        "seconds": _calendar_values(parts[2], "second", 0, 59) if len(parts) == 3 else frozenset({0}),
    }


def _calendar_values(text: str, name: str, lo: int, hi: int) -> frozenset[int] | None:
    """One calendar-event field: `*`, `*/n` or a list of `a`, `a..b`, `a/n`, `a..b/n`."""
    if text == "*":
        return None
    if text.startswith("*/"):
        step = _number(text[2:], f"{name} step")
        return _expand(lo, hi, step, name, lo, hi)
    values: set[int] = set()
    for item in text.split(","):
        match = _CAL_ITEM.fullmatch(item)
        if not match:
            raise ScheduleError(f"invalid {name} '{item}'" if item else f"empty entry in {name} list '{text}'")
        start, end, step = (int(g) if g is not None else None for g in match.groups())
        if end is None:
            end = hi if step is not None else start  # a/n repeats up to the field's end
        elif start > end:
            raise ScheduleError(f"{name} range {start}..{end}: start is bigger than end")
        values |= _expand(start, end, step, name, lo, hi)
    return frozenset(values)


# -- cron --------------------------------------------------------------------

def _parse_cron(text: str, fields: list[str]) -> Schedule:
    if len(fields) != 5:
        raise ScheduleError(
            f"a cron schedule has 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, dom, month, dow = fields
    weekdays = _cron_values(dow, "weekday", 0, 7, _CRON_DOW_NAMES)
    if weekdays is not None:  # cron Sunday 0/7 -> Monday-based numbering
        weekdays = frozenset((d + 6) % 7 for d in weekdays)
    days = _cron_values(dom, "day of month", 1, 31)
    return Schedule(
        text=text, kind="cron",
        minutes=_cron_values(minute, "minute", 0, 59),
        hours=_cron_values(hour, "hour", 0, 23),
        days=days,
        months=_cron_values(month, "month", 1, 12, _MONTH_NAMES),
        weekdays=weekdays,
        seconds=frozenset({0}),
        # Vixie cron: if either day field starts with '*', both must match.
        day_or=not dom.startswith("*") and not dow.startswith("*"),
    )


def _cron_values(text: str, name: str, lo: int, hi: int, names: dict | None = None) -> frozenset[int] | None:
    """One cron field: a list of `*`, `a`, `a-b`, with optional `/step`."""
    if text == "*":
        return None
    values: set[int] = set()
    for item in text.lower().split(","):
        match = _CRON_ITEM.fullmatch(item)
        if not match:
            raise ScheduleError(f"invalid {name} '{item}'" if item else f"empty entry in {name} list '{text}'")
        first, last, step_text = match.groups()
        step = _number(step_text, f"{name} step") if step_text is not None else None
        if first == "*":
            if last is not None:
                raise ScheduleError(f"invalid {name} '{item}'")
            start, end = lo, hi
        else:
            start = _cron_value(first, name, names)
            if last is not None:
                end = _cron_value(last, name, names)
                if names is _CRON_DOW_NAMES and last == "sun":
                    end = 7  # 'fri-sun' ends on Sunday = 7
            else:
                end = hi if step is not None else start
            if start > end:
                raise ScheduleError(f"{name} range {first}-{last}: start is bigger than end")
        values |= _expand(start, end, step, name, lo, hi)
    return frozenset(values)


def _cron_value(text: str, name: str, names: dict | None) -> int:
    if text.isdigit():
        return int(text)
    if names is not None and text in names:
        return names[text]
    raise ScheduleError(f"unknown {name} '{text}'")


# -- shared helpers ----------------------------------------------------------

def _number(text: str, what: str) -> int:
    if not text.isdigit():
        raise ScheduleError(f"invalid {what} '{text}'")
    return int(text)


def _expand(start: int, end: int, step: int | None, name: str, lo: int, hi: int) -> frozenset[int]:
    for value in (start, end):
        if not lo <= value <= hi:
            raise ScheduleError(f"{name} {value} out of range {lo}..{hi}")
    if step is not None and step < 1:
        raise ScheduleError(f"{name} step must be at least 1")
    return frozenset(range(start, end + 1, step or 1))
