"""Prune selection, as PBS computes it (pbs-datastore/src/prune.rs).

For the snapshots of one backup group:

1. Sort newest first.
2. Unfinished snapshots (no manifest): the newest is kept ("partial") only if
   it is newer than every finished snapshot; the others are removed.
3. Apply keep-last, -hourly, -daily, -weekly (ISO week), -monthly, -yearly in
   that order. Each rule keeps the newest snapshot of each of its N newest
   periods (local time), skipping periods that an earlier rule already kept a
   snapshot in; other snapshots of a period it keeps are marked remove.
   Protected snapshots are kept and do not use up a period.
4. Anything left unmarked is removed.

If no keep option is set (> 0), everything is kept.

No Django here: stdlib only.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timezone, tzinfo
from typing import Any, Callable

__all__ = [
    "KEEP", "REMOVE", "PROTECTED", "PARTIAL", "MARKS",
    "KeepOptions", "PruneItem", "compute_prune", "prune_mark_kept",
]

KEEP = "keep"
REMOVE = "remove"
PROTECTED = "protected"
PARTIAL = "partial"
MARKS = (KEEP, REMOVE, PROTECTED, PARTIAL)


@dataclass
class KeepOptions:
    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{f.name.replace('_', '-')} must be a non-negative integer, not {value!r}")

    def any(self) -> bool:
        """Whether some option keeps anything (PBS: keeps_something)."""
        return any(getattr(self, f.name) for f in fields(self))


@dataclass
class PruneItem:
    key: Any  # caller's handle for the snapshot
    time: int  # backup time, epoch seconds
    finished: bool = True  # has a manifest
    protected: bool = False


# Rule order matters: earlier rules take periods away from later ones.
_RULES: tuple[tuple[str, str | None], ...] = (
    ("keep_last", None),  # every snapshot is its own period
    ("keep_hourly", "%Y/%m/%d/%H"),
    ("keep_daily", "%Y/%m/%d"),
    ("keep_weekly", "%G/%V"),  # ISO week-year and week
    ("keep_monthly", "%Y/%m"),
    ("keep_yearly", "%Y"),
)


def compute_prune(
    items: list[PruneItem], keep: KeepOptions, tz: tzinfo = timezone.utc,
) -> list[tuple[PruneItem, str]]:
    """Mark every item keep/remove/protected/partial; returned newest first."""
    ordered = sorted(items, key=lambda item: item.time, reverse=True)
    marks: list[str | None] = [None] * len(ordered)

    _mark_unfinished(ordered, marks)

    for option, fmt in _RULES:
        count = getattr(keep, option)
        if count is not None:
            _mark_selections(ordered, marks, count, _period_of(fmt, tz))

    keep_all = not keep.any()
    result = []
    for item, mark in zip(ordered, marks):
        if item.protected:
            mark = PROTECTED
        elif keep_all:
            mark = PARTIAL if mark == PARTIAL else KEEP
        elif mark is None:
            mark = REMOVE
        result.append((item, mark))
    return result


def prune_mark_kept(mark: str) -> bool:
    """Whether a snapshot with this mark stays."""
    if mark not in MARKS:
        raise ValueError(f"unknown prune mark {mark!r}")
    return mark != REMOVE


def _period_of(fmt: str | None, tz: tzinfo) -> Callable[[PruneItem], Any]:
    if fmt is None:
        return lambda item: item.time
    return lambda item: datetime.fromtimestamp(item.time, tz).strftime(fmt)


def _mark_unfinished(ordered: list[PruneItem], marks: list[str | None]) -> None:
    keep_unfinished = True
    for i, item in enumerate(ordered):
        if item.finished:
            keep_unfinished = False  # older unfinished snapshots are not worth keeping
        else:
            marks[i] = PARTIAL if keep_unfinished else REMOVE
            keep_unfinished = False


def _mark_selections(
    ordered: list[PruneItem], marks: list[str | None], count: int,
    period: Callable[[PruneItem], Any],
) -> None:
    # Periods an earlier rule already kept a snapshot in (protected ones do not count).
    covered = {period(item) for item, mark in zip(ordered, marks) if mark == KEEP}
    kept_periods: set = set()
    for i, item in enumerate(ordered):
        if marks[i] is not None:
            continue
        if item.protected:
            marks[i] = PROTECTED
            continue
        key = period(item)
        if key in covered:
            continue
        if key not in kept_periods:
            if len(kept_periods) >= count:
                break
            kept_periods.add(key)
            marks[i] = KEEP
        else:
            marks[i] = REMOVE
