"""Prune selection (datastores.engine.prune), checked against hand-worked PBS results."""
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from datastores.engine.prune import (
    MARKS, KeepOptions, PruneItem, compute_prune, prune_mark_kept,
)

UTC = timezone.utc
VIENNA = ZoneInfo("Europe/Vienna")


def epoch(text: str, tz=UTC) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=tz).timestamp())


def marks_by_key(result) -> dict:
    return {item.key: mark for item, mark in result}


def kept_keys(result) -> set:
    return {item.key for item, mark in result if prune_mark_kept(mark)}


# -- reference table -----------------------------------------------------------

def test_fifteen_weeks_of_daily_backups():
    """Like the PBS prune simulator: one backup a day at 21:00 for 15 ISO weeks.

    2024-12-30 (Mon, ISO 2025-W01) .. 2025-04-13 (Sun, ISO 2025-W15).
    keep-last 3     -> Apr 13, 12, 11
    keep-daily 7    -> Apr 10 .. Apr 4
    keep-weekly 4   -> W15, W14 covered; Mar 30 (W13), Mar 23, Mar 16, Mar 9
    keep-monthly 6  -> Apr, Mar covered; Feb 28, Jan 31, Dec 31 (only 3 more months exist)
    """
    first = date(2024, 12, 30)
    days = [first + timedelta(days=n) for n in range(105)]
    assert days[-1] == date(2025, 4, 13)
    items = [PruneItem(key=d.isoformat(), time=epoch(f"{d.isoformat()} 21:00")) for d in days]

    result = compute_prune(items, KeepOptions(keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=6))

    expected = {f"2025-04-{d:02d}" for d in range(4, 14)} | {
        "2025-03-30", "2025-03-23", "2025-03-16", "2025-03-09",
        "2025-02-28", "2025-01-31", "2024-12-31",
    }
    assert kept_keys(result) == expected
    assert len(expected) == 17
    assert {m for _, m in result} == {"keep", "remove"}
    # newest first
    assert [item.key for item, _ in result] == [d.isoformat() for d in reversed(days)]


def test_fifteen_weeks_in_input_order_does_not_matter():
    days = [date(2024, 12, 30) + timedelta(days=n) for n in range(105)]
    items = [PruneItem(key=d.isoformat(), time=epoch(f"{d.isoformat()} 21:00")) for d in days]
    keep = KeepOptions(keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=6)
    shuffled = items[50:] + items[:50][::-1]
    assert compute_prune(shuffled, keep) == compute_prune(items, keep)


def test_hourly_and_yearly():
    """keep-hourly 3 then keep-yearly 3.

    hourly: a (10h) keep, b (10h) remove, c (09h) keep, d (08h) keep,
            e (08h) remove, f is a 4th hour -> stop.
    yearly: 2026 covered (f skipped, stays unmarked -> remove);
            g keep 2025, h remove (2025), i keep 2024, j keep 2023.
    """
    times = {
        "a": "2026-03-10 10:40", "b": "2026-03-10 10:20", "c": "2026-03-10 09:50",
        "d": "2026-03-10 08:10", "e": "2026-03-10 08:05", "f": "2026-03-09 23:59",
        "g": "2025-12-31 23:00", "h": "2025-06-01 12:00", "i": "2024-01-01 00:00",
        "j": "2023-05-05 05:05",
    }
    items = [PruneItem(key=k, time=epoch(t)) for k, t in times.items()]
    result = compute_prune(items, KeepOptions(keep_hourly=3, keep_yearly=3))
    assert marks_by_key(result) == {
        "a": "keep", "b": "remove", "c": "keep", "d": "keep", "e": "remove",
        "f": "remove", "g": "keep", "h": "remove", "i": "keep", "j": "keep",
    }


def test_weekly_uses_iso_week_year():
    """2025-12-29 (Mon) .. 2026-01-04 is ISO 2026-W01; 2025-12-28 (Sun) is 2025-W52."""
    times = {"jan2": "2026-01-02 12:00", "dec31": "2025-12-31 12:00",
             "dec29": "2025-12-29 12:00", "dec28": "2025-12-28 12:00",
             "dec21": "2025-12-21 12:00"}
    items = [PruneItem(key=k, time=epoch(t)) for k, t in times.items()]
    result = compute_prune(items, KeepOptions(keep_weekly=2))
    assert marks_by_key(result) == {
        "jan2": "keep", "dec31": "remove", "dec29": "remove", "dec28": "keep", "dec21": "remove",
    }


def test_weekly_before_monthly_can_take_a_month_away():
    """PBS quirk kept on purpose: a week spanning two months.

    2025-03-31 (Mon) and 2025-04-01 (Tue) share ISO week 14. keep-monthly 2 alone keeps
    both; with keep-weekly 1 the week rule keeps Apr 1 and marks Mar 31 remove first.
    """
    items = [PruneItem("apr1", epoch("2025-04-01 10:00")), PruneItem("mar31", epoch("2025-03-31 10:00"))]
    assert kept_keys(compute_prune(items, KeepOptions(keep_monthly=2))) == {"apr1", "mar31"}
    assert marks_by_key(compute_prune(items, KeepOptions(keep_weekly=1, keep_monthly=2))) == {
        "apr1": "keep", "mar31": "remove",
    }


def test_adding_keep_last_can_shift_weekly_onto_a_month_boundary():
    """The same quirk, triggered by adding an earlier rule.

    2024-01-29 (Mon) and 2024-02-01 (Thu) share ISO week 5; 2024-02-05 starts week 6.
    weekly 1 + monthly 1:               feb5 (W6) | jan29 (January)          -> feb5, jan29
    keep-last 1 + weekly 1 + monthly 1: feb5 (last) | feb1 (W5), jan29 same week -> removed
    """
    items = [PruneItem("jan29", epoch("2024-01-29 00:00")), PruneItem("feb1", epoch("2024-02-01 00:00")),
             PruneItem("feb5", epoch("2024-02-05 00:00"))]
    assert kept_keys(compute_prune(items, KeepOptions(keep_weekly=1, keep_monthly=1))) == {"feb5", "jan29"}
    assert kept_keys(compute_prune(items, KeepOptions(keep_last=1, keep_weekly=1, keep_monthly=1))) == {
        "feb5", "feb1"}


# -- local time ----------------------------------------------------------------

def test_local_day_boundary():
    """23:30 UTC on Jan 10 is 00:30 on Jan 11 in Vienna (CET, UTC+1)."""
    items = [
        PruneItem("late", epoch("2026-01-10 23:30")),
        PruneItem("evening", epoch("2026-01-10 22:30")),
        PruneItem("noon", epoch("2026-01-10 12:00")),
    ]
    keep = KeepOptions(keep_daily=2)
    assert marks_by_key(compute_prune(items, keep, UTC)) == {
        "late": "keep", "evening": "remove", "noon": "remove",
    }
    assert marks_by_key(compute_prune(items, keep, VIENNA)) == {
        "late": "keep", "evening": "keep", "noon": "remove",
    }


def test_local_month_boundary_in_summer_time():
    """22:30 UTC on Jun 30 is 00:30 on Jul 1 in Vienna (CEST, UTC+2)."""
    items = [PruneItem("a", epoch("2026-06-30 22:30")), PruneItem("b", epoch("2026-06-30 21:30"))]
    keep = KeepOptions(keep_monthly=5)
    assert marks_by_key(compute_prune(items, keep, UTC)) == {"a": "keep", "b": "remove"}
    assert marks_by_key(compute_prune(items, keep, VIENNA)) == {"a": "keep", "b": "keep"}


# -- protected and partial -----------------------------------------------------

def test_protected_does_not_use_up_keep_last():
    items = [PruneItem("p", 50, protected=True), PruneItem("x", 40), PruneItem("q", 30, protected=True),
             PruneItem("y", 20), PruneItem("z", 10)]
    assert marks_by_key(compute_prune(items, KeepOptions(keep_last=2))) == {
        "p": "protected", "x": "keep", "q": "protected", "y": "keep", "z": "remove",
    }


def test_protected_does_not_cover_its_period():
    day = "2026-02-02"
    items = [
        PruneItem("prot", epoch(f"{day} 12:00"), protected=True),
        PruneItem("same_day", epoch(f"{day} 08:00")),
        PruneItem("day_before", epoch("2026-02-01 08:00")),
    ]
    assert marks_by_key(compute_prune(items, KeepOptions(keep_daily=1))) == {
        "prot": "protected", "same_day": "keep", "day_before": "remove",
    }


def test_protected_beyond_the_kept_range_and_unfinished_protected():
    items = [PruneItem("u", 100, finished=False, protected=True), PruneItem("x", 90),
             PruneItem("y", 80), PruneItem("old", 10, protected=True),
             PruneItem("old_unfinished", 5, finished=False, protected=True)]
    assert marks_by_key(compute_prune(items, KeepOptions(keep_last=1))) == {
        "u": "protected", "x": "keep", "y": "remove", "old": "protected", "old_unfinished": "protected",
    }


def test_partial_newest_kept_older_removed():
    items = [PruneItem("u1", 100, finished=False), PruneItem("f1", 90),
             PruneItem("u2", 80, finished=False), PruneItem("f2", 70)]
    assert marks_by_key(compute_prune(items, KeepOptions(keep_last=1))) == {
        "u1": "partial", "f1": "keep", "u2": "remove", "f2": "remove",
    }


def test_partial_only_if_newer_than_every_finished():
    items = [PruneItem("f1", 100), PruneItem("u1", 90, finished=False)]
    assert marks_by_key(compute_prune(items, KeepOptions(keep_last=5))) == {"f1": "keep", "u1": "remove"}


def test_only_the_newest_of_several_unfinished():
    items = [PruneItem("u1", 100, finished=False), PruneItem("u2", 90, finished=False), PruneItem("f1", 80)]
    assert marks_by_key(compute_prune(items, KeepOptions(keep_last=1))) == {
        "u1": "partial", "u2": "remove", "f1": "keep",
    }


# -- keep everything -----------------------------------------------------------

@pytest.mark.parametrize("keep", [KeepOptions(), KeepOptions(keep_last=0, keep_daily=0)])
def test_no_keep_option_keeps_everything(keep):
    assert not keep.any()
    items = [PruneItem("u1", 100, finished=False), PruneItem("u2", 90, finished=False),
             PruneItem("f1", 80), PruneItem("p", 70, protected=True), PruneItem("f2", 60)]
    assert marks_by_key(compute_prune(items, keep)) == {
        "u1": "partial", "u2": "keep", "f1": "keep", "p": "protected", "f2": "keep",
    }


def test_keep_options_validation_and_any():
    assert KeepOptions(keep_yearly=1).any()
    assert not KeepOptions(keep_hourly=0).any()
    with pytest.raises(ValueError, match="keep-daily"):
        KeepOptions(keep_daily=-1)
    with pytest.raises(ValueError):
        KeepOptions(keep_last="3")


def test_prune_mark_kept():
    assert [prune_mark_kept(m) for m in ("keep", "remove", "protected", "partial")] == [True, False, True, True]
    with pytest.raises(ValueError):
        prune_mark_kept("maybe")


def test_empty_group():
    assert compute_prune([], KeepOptions(keep_last=3)) == []


# -- properties ----------------------------------------------------------------

BASE = epoch("2024-01-01 00:00")
OPTION_NAMES = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"]

# Up to ~3 years of snapshots, clustered in hours so that periods collide.
snapshot_lists = st.lists(
    st.tuples(
        st.integers(0, 3 * 365 * 24),  # hour offset
        st.integers(0, 3599),  # seconds within the hour
        st.integers(0, 7),  # unfinished when 0
        st.integers(0, 9),  # protected when 0
    ),
    max_size=40, unique_by=lambda t: (t[0], t[1]),
).map(lambda rows: [
    PruneItem(key=i, time=BASE + h * 3600 + s, finished=(f != 0), protected=(p == 0))
    for i, (h, s, f, p) in enumerate(rows)
])
keep_options = st.builds(KeepOptions, **{name: st.none() | st.integers(0, 6) for name in OPTION_NAMES})
zones = st.sampled_from([UTC, VIENNA])


@settings(max_examples=300, deadline=None)
@given(items=snapshot_lists, keep=keep_options, tz=zones)
def test_property_every_item_marked_once(items, keep, tz):
    result = compute_prune(items, keep, tz)
    assert sorted(item.key for item, _ in result) == sorted(item.key for item in items)
    assert all(mark in MARKS for _, mark in result)
    times = [item.time for item, _ in result]
    assert times == sorted(times, reverse=True)
    for item, mark in result:
        assert (mark == "protected") == item.protected
        if mark == "partial":
            assert not item.finished and item is result[0][0]
        if mark == "keep" and keep.any():
            assert item.finished


@settings(max_examples=300, deadline=None)
@given(items=snapshot_lists, n=st.integers(1, 8), tz=zones)
def test_property_keep_last_alone(items, n, tz):
    result = compute_prune(items, KeepOptions(keep_last=n), tz)
    newest_first = sorted(items, key=lambda i: i.time, reverse=True)
    candidates = [i.key for i in newest_first if i.finished and not i.protected]
    expected_keep = set(candidates[:n])
    assert {i.key for i, m in result if m == "keep"} == expected_keep
    assert len(expected_keep) == min(n, len(candidates))
    assert {i.key for i, m in result if m == "protected"} == {i.key for i in items if i.protected}
    first = newest_first[0] if newest_first else None
    expected_partial = {first.key} if first and not first.finished and not first.protected else set()
    assert {i.key for i, m in result if m == "partial"} == expected_partial


@settings(max_examples=500, deadline=None)
@given(items=snapshot_lists, base=keep_options, added=st.sampled_from(OPTION_NAMES),
       count=st.integers(1, 6), tz=zones)
def test_property_adding_an_option_never_removes_a_kept_snapshot(items, base, added, count, tz):
    assume(base.any() and getattr(base, added) is None)
    more = KeepOptions(**{name: getattr(base, name) for name in OPTION_NAMES})
    setattr(more, added, count)
    # A rule run after every other rule only marks what would be removed anyway. An earlier
    # one can shift the weekly rule onto a week spanning two months, which then takes a
    # month away (ISO weeks do not nest in months or years; see the two tests above).
    runs_last = all(OPTION_NAMES.index(added) > OPTION_NAMES.index(name)
                    for name in OPTION_NAMES if getattr(base, name) is not None)
    assume(runs_last or not (more.keep_weekly and (more.keep_monthly or more.keep_yearly)))
    before = kept_keys(compute_prune(items, base, tz))
    after = kept_keys(compute_prune(items, more, tz))
    assert before <= after
