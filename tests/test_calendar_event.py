"""Calendar events and cron schedules (pbsweb.calendarevent).

Expected run times are worked out by hand from a calendar:
2025-12-30 is a Tuesday; 2026 months start on Thu(Jan) Sun(Feb) Sun(Mar)
Wed(Apr) Fri(May) Mon(Jun) Wed(Jul) Sat(Aug) Tue(Sep) Thu(Oct) Sun(Nov) Tue(Dec).
"""
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbsweb.calendarevent import Schedule, ScheduleError, parse_schedule, validate_schedule

UTC = timezone.utc
VIENNA = ZoneInfo("Europe/Vienna")
START = datetime(2025, 12, 30, 21, 47, tzinfo=UTC)  # Tuesday evening


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# schedule -> the next three runs after START (UTC), as "YYYY-MM-DD HH:MM[:SS]"
TABLE = [
    # PBS calendar events
    ("mon..fri", ["2025-12-31 00:00", "2026-01-01 00:00", "2026-01-02 00:00"]),
    ("12:05", ["2025-12-31 12:05", "2026-01-01 12:05", "2026-01-02 12:05"]),
    ("*:00/5", ["2025-12-30 21:50", "2025-12-30 21:55", "2025-12-30 22:00"]),
    ("*:0/15", ["2025-12-30 22:00", "2025-12-30 22:15", "2025-12-30 22:30"]),
    ("0/1:0/5", ["2025-12-30 21:50", "2025-12-30 21:55", "2025-12-30 22:00"]),
    ("mon..fri 8..17,22:0/15", ["2025-12-30 22:00", "2025-12-30 22:15", "2025-12-30 22:30"]),
    ("12/2:5", ["2025-12-30 22:05", "2025-12-31 12:05", "2025-12-31 14:05"]),
    ("*-05", ["2026-01-05 00:00", "2026-02-05 00:00", "2026-03-05 00:00"]),
    ("Sat *-1..7 15:00", ["2026-01-03 15:00", "2026-02-07 15:00", "2026-03-07 15:00"]),
    ("sat *-1..7 02:00", ["2026-01-03 02:00", "2026-02-07 02:00", "2026-03-07 02:00"]),
    ("0/2:00", ["2025-12-30 22:00", "2025-12-31 00:00", "2025-12-31 02:00"]),
    ("2,22:30", ["2025-12-30 22:30", "2025-12-31 02:30", "2025-12-31 22:30"]),
    ("mon..fri 02:00", ["2025-12-31 02:00", "2026-01-01 02:00", "2026-01-02 02:00"]),
    ("mon..fri *:00", ["2025-12-30 22:00", "2025-12-30 23:00", "2025-12-31 00:00"]),
    ("sat..mon 23:15", ["2026-01-03 23:15", "2026-01-04 23:15", "2026-01-05 23:15"]),
    ("wed,fri 6:00", ["2025-12-31 06:00", "2026-01-02 06:00", "2026-01-07 06:00"]),
    ("fri *-*-13", ["2026-02-13 00:00", "2026-03-13 00:00", "2026-11-13 00:00"]),
    ("*-02-29 12:00", ["2028-02-29 12:00", "2032-02-29 12:00", "2036-02-29 12:00"]),
    ("2026-1..3-1 6:00", ["2026-01-01 06:00", "2026-02-01 06:00", "2026-03-01 06:00"]),
    ("*-*-* 12:00:30", ["2025-12-31 12:00:30", "2026-01-01 12:00:30", "2026-01-02 12:00:30"]),
    ("45", ["2025-12-30 22:45", "2025-12-30 23:45", "2025-12-31 00:45"]),  # PBS: minute of every hour
    ("minutely", ["2025-12-30 21:48", "2025-12-30 21:49", "2025-12-30 21:50"]),
    ("hourly", ["2025-12-30 22:00", "2025-12-30 23:00", "2025-12-31 00:00"]),
    ("daily", ["2025-12-31 00:00", "2026-01-01 00:00", "2026-01-02 00:00"]),
    ("weekly", ["2026-01-05 00:00", "2026-01-12 00:00", "2026-01-19 00:00"]),
    ("monthly", ["2026-01-01 00:00", "2026-02-01 00:00", "2026-03-01 00:00"]),
    ("yearly", ["2026-01-01 00:00", "2027-01-01 00:00", "2028-01-01 00:00"]),
    ("annually", ["2026-01-01 00:00", "2027-01-01 00:00", "2028-01-01 00:00"]),
    ("quarterly", ["2026-01-01 00:00", "2026-04-01 00:00", "2026-07-01 00:00"]),
    ("semiannually", ["2026-01-01 00:00", "2026-07-01 00:00", "2027-01-01 00:00"]),
    ("semi-annually", ["2026-01-01 00:00", "2026-07-01 00:00", "2027-01-01 00:00"]),
    # cron
    ("0 2 * * *", ["2025-12-31 02:00", "2026-01-01 02:00", "2026-01-02 02:00"]),
    ("*/15 * * * *", ["2025-12-30 22:00", "2025-12-30 22:15", "2025-12-30 22:30"]),
    ("0 3 * * 1-5", ["2025-12-31 03:00", "2026-01-01 03:00", "2026-01-02 03:00"]),
    ("30 4 1 * *", ["2026-01-01 04:30", "2026-02-01 04:30", "2026-03-01 04:30"]),
    ("0 12 * jan-mar mon", ["2026-01-05 12:00", "2026-01-12 12:00", "2026-01-19 12:00"]),
    ("0 22 * * 7", ["2026-01-04 22:00", "2026-01-11 22:00", "2026-01-18 22:00"]),
    ("0 22 * * sun", ["2026-01-04 22:00", "2026-01-11 22:00", "2026-01-18 22:00"]),
    ("0 12 * * fri-sun", ["2026-01-02 12:00", "2026-01-03 12:00", "2026-01-04 12:00"]),
    ("0-10/5 9-10 * * *", ["2025-12-31 09:00", "2025-12-31 09:05", "2025-12-31 09:10"]),
    ("*/20 22 31 12 *", ["2025-12-31 22:00", "2025-12-31 22:20", "2025-12-31 22:40"]),
    ("0 0 1 1 *", ["2026-01-01 00:00", "2027-01-01 00:00", "2028-01-01 00:00"]),
    ("15 6,18 * * *", ["2025-12-31 06:15", "2025-12-31 18:15", "2026-01-01 06:15"]),
    # both day fields restricted: day 13 OR Friday (2026-01-13 is a Tuesday)
    ("0 0 13 * 5", ["2026-01-02 00:00", "2026-01-09 00:00", "2026-01-13 00:00"]),
    # day field starts with '*': day in {1,11,21,31} AND Friday
    ("0 0 */10 * 5", ["2026-05-01 00:00", "2026-07-31 00:00", "2026-08-21 00:00"]),
    ("@daily", ["2025-12-31 00:00", "2026-01-01 00:00", "2026-01-02 00:00"]),
    ("@weekly", ["2026-01-04 00:00", "2026-01-11 00:00", "2026-01-18 00:00"]),  # cron: Sunday
]


@pytest.mark.parametrize("text,expected", TABLE, ids=[t for t, _ in TABLE])
def test_next_runs_table(text, expected):
    schedule = parse_schedule(text)
    assert schedule.text == text
    runs = []
    current = START
    for _ in expected:
        current = schedule.next_after(current)
        assert current is not None
        runs.append(current)
    assert runs == [utc(e) for e in expected]
    assert all(r.tzinfo is UTC for r in runs)


@pytest.mark.parametrize("text", ["2015-10-21", "2015-10-21 12:00", "*-02-30", "2026-02-29", "2025-12-30 21:47"])
def test_never_again(text):
    assert parse_schedule(text).next_after(START) is None


def test_fixed_date_in_future_then_none():
    schedule = parse_schedule("2026-1..3-1 6:00")
    last = utc("2026-03-01 06:00")
    assert schedule.next_after(last - timedelta(seconds=1)) == last
    assert schedule.next_after(last) is None


def test_strictly_after_and_sub_minute_start():
    schedule = parse_schedule("12:05")
    at = utc("2026-01-01 12:05")
    assert schedule.next_after(at) == utc("2026-01-02 12:05")
    assert schedule.next_after(at - timedelta(microseconds=1)) == at
    assert schedule.next_after(at + timedelta(seconds=30)) == utc("2026-01-02 12:05")


def test_needs_aware_datetime():
    with pytest.raises(ValueError):
        parse_schedule("daily").next_after(datetime(2026, 1, 1))


def test_result_keeps_the_zone_of_the_input():
    start = datetime(2026, 1, 10, 8, 0, tzinfo=VIENNA)
    nxt = parse_schedule("12:00").next_after(start)
    assert nxt == datetime(2026, 1, 10, 12, 0, tzinfo=VIENNA)
    assert nxt.tzinfo is VIENNA
    assert nxt.astimezone(UTC) == utc("2026-01-10 11:00")


def test_utc_suffix_evaluates_in_utc():
    start = datetime(2026, 1, 10, 8, 0, tzinfo=VIENNA)  # 07:00Z
    nxt = parse_schedule("12:00 UTC").next_after(start)
    assert nxt.astimezone(UTC) == utc("2026-01-10 12:00")
    assert nxt.tzinfo is VIENNA and nxt.hour == 13


# Europe/Vienna 2026: 03-29 02:00 CET -> 03:00 CEST; 10-25 03:00 CEST -> 02:00 CET.
def test_vienna_spring_forward_skips_missing_time():
    schedule = parse_schedule("02:30")
    runs = schedule.next_runs(datetime(2026, 3, 27, 12, 0, tzinfo=VIENNA), 3)
    assert [r.astimezone(UTC) for r in runs] == [
        utc("2026-03-28 01:30"),  # 02:30 CET
        utc("2026-03-30 00:30"),  # 02:30 CEST; 03-29 02:30 does not exist
        utc("2026-03-31 00:30"),
    ]


def test_vienna_spring_forward_every_half_hour():
    schedule = parse_schedule("*:0/30")
    runs = schedule.next_runs(datetime(2026, 3, 29, 1, 15, tzinfo=VIENNA), 3)
    assert [r.astimezone(UTC) for r in runs] == [
        utc("2026-03-29 00:30"),  # 01:30 CET
        utc("2026-03-29 01:00"),  # 03:00 CEST (02:00 and 02:30 do not exist)
        utc("2026-03-29 01:30"),  # 03:30 CEST
    ]


def test_vienna_fall_back_repeated_hour_fires_once():
    schedule = parse_schedule("hourly")
    runs = schedule.next_runs(datetime(2026, 10, 25, 1, 30, tzinfo=VIENNA), 3)
    assert [r.astimezone(UTC) for r in runs] == [
        utc("2026-10-25 00:00"),  # 02:00 CEST
        utc("2026-10-25 02:00"),  # 03:00 CET; the second 02:00 (CET) is not repeated
        utc("2026-10-25 03:00"),  # 04:00 CET
    ]
    # Starting inside the repeated hour (02:10 CET, second occurrence).
    inside = datetime(2026, 10, 25, 2, 10, fold=1, tzinfo=VIENNA)
    assert inside.astimezone(UTC) == utc("2026-10-25 01:10")
    assert schedule.next_after(inside).astimezone(UTC) == utc("2026-10-25 02:00")


def test_vienna_daily_runs_at_local_midnight_across_dst():
    runs = parse_schedule("daily").next_runs(datetime(2026, 3, 28, 12, 0, tzinfo=VIENNA), 2)
    assert [r.astimezone(UTC) for r in runs] == [utc("2026-03-28 23:00"), utc("2026-03-29 22:00")]


ERRORS = [
    ("mon..fry", "unknown weekday 'fry'"),
    ("Sat..Sin 10:00", "unknown weekday 'sin'"),
    ("mon-fri", "invalid weekday 'mon-fri'"),
    ("25:00", "hour 25 out of range 0..23"),
    ("12:60", "minute 60 out of range 0..59"),
    ("12:00:61", "second 61 out of range 0..59"),
    ("*-13-01", "month 13 out of range 1..12"),
    ("*-02-32", "day 32 out of range 1..31"),
    ("*-00-10", "month 0 out of range 1..12"),
    ("5..3:00", "hour range 5..3: start is bigger than end"),
    ("*:0/0", "minute step must be at least 1"),
    ("12:x5", "invalid minute 'x5'"),
    ("1,,2:00", "empty entry in hour list '1,,2'"),
    ("12:05 foo", "unexpected 'foo'"),
    ("12:05 mon", "unexpected 'mon'"),
    ("2015-10-21-01", "invalid date '2015-10-21-01'"),
    ("1:2:3:4", "invalid time '1:2:3:4'"),
    ("daily 12:00", "'daily' cannot be combined with '12:00'"),
    ("60 * * * *", "minute 60 out of range 0..59"),
    ("0 24 * * *", "hour 24 out of range 0..23"),
    ("0 2 0 * *", "day of month 0 out of range 1..31"),
    ("0 2 * foo *", "unknown month 'foo'"),
    ("0 2 * * funday", "unknown weekday 'funday'"),
    ("0 2 * * 8", "weekday 8 out of range 0..7"),
    ("0 2 * * 5-1", "weekday range 5-1: start is bigger than end"),
    ("0 2 * * 1-5 x", "a cron schedule has 5 fields"),
    ("*/0 * * * *", "minute step must be at least 1"),
    ("@sometimes", "unknown cron shortcut '@sometimes'"),
]


@pytest.mark.parametrize("text,fragment", ERRORS, ids=[t for t, _ in ERRORS])
def test_parse_errors_name_the_bad_part(text, fragment):
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text)
    message = str(info.value)
    assert message.startswith(f"invalid schedule '{text}': ")
    assert fragment in message
    assert isinstance(info.value, ValueError)


def test_error_message_example_from_the_brief():
    with pytest.raises(ScheduleError, match=r"^invalid schedule 'mon\.\.fry': unknown weekday 'fry'$"):
        parse_schedule("mon..fry")


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_schedule(text):
    with pytest.raises(ScheduleError, match="empty"):
        parse_schedule(text)


def test_validate_schedule_normalises_blanks():
    assert validate_schedule("  mon..fri   8:00 ") == "mon..fri 8:00"
    assert validate_schedule("0  2 * *\t*") == "0 2 * * *"
    with pytest.raises(ScheduleError):
        validate_schedule("mon..fry")


def test_kinds_and_fields():
    assert parse_schedule("0 2 * * *").kind == "cron"
    cal = parse_schedule("mon..fri 8..17,22:0/15")
    assert cal.kind == "calendar"
    assert cal.weekdays == frozenset(range(5))
    assert cal.hours == frozenset([*range(8, 18), 22])
    assert cal.minutes == frozenset({0, 15, 30, 45})
    assert cal.seconds == frozenset({0})
    assert parse_schedule("1..10/3:00").hours == frozenset({1, 4, 7, 10})


def test_matches():
    schedule = parse_schedule("mon..fri 02:00")
    assert schedule.matches(utc("2025-12-31 02:00"))  # Wednesday
    assert not schedule.matches(utc("2026-01-03 02:00"))  # Saturday
    assert not schedule.matches(utc("2025-12-31 02:01"))


def test_far_away_and_impossible_schedules_are_fast():
    import time as clock
    began = clock.monotonic()
    assert parse_schedule("*-02-30").next_after(START) is None
    assert parse_schedule("0 0 31 2 *").next_after(START) is None
    assert parse_schedule("2199-12-31 23:59").next_after(START) == utc("2199-12-31 23:59")
    assert parse_schedule("mon *-02-29").next_after(START) == utc("2044-02-29 00:00")
    assert clock.monotonic() - began < 2.0


# -- properties --------------------------------------------------------------

def _ranges(lo, hi):
    return st.integers(lo, hi).flatmap(lambda a: st.integers(a, hi).map(lambda b: (a, b)))


_weekday_names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
calendar_texts = st.one_of(
    st.builds(lambda h, m: f"{h}:{m:02d}", st.integers(0, 23), st.integers(0, 59)),
    st.builds(lambda s: f"*:0/{s}", st.integers(1, 59)),
    st.builds(lambda h, s: f"{h}/{s}:00", st.integers(0, 23), st.integers(1, 12)),
    st.builds(lambda r, h: f"{_weekday_names[r[0]]}..{_weekday_names[r[1]]} {h}:30", _ranges(0, 6), st.integers(0, 23)),
    st.builds(lambda d, h: f"*-{d[0]}..{d[1]} {h}:00", _ranges(1, 31), st.integers(0, 23)),
    st.sampled_from(["hourly", "daily", "weekly", "monthly", "quarterly", "Sat *-1..7 15:00", "*-02-29"]),
)
cron_texts = st.builds(
    lambda m, h, dom, dow: f"{m} {h} {dom} * {dow}",
    st.sampled_from(["0", "*/15", "5,35", "0-10/5"]),
    st.sampled_from(["*", "2", "8-17", "*/6"]),
    st.sampled_from(["*", "1", "13", "1-7"]),
    st.sampled_from(["*", "1-5", "0", "fri"]),
)
starts = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC))


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(calendar_texts, cron_texts), a=starts, b=starts)
def test_property_strictly_after_and_monotonic(text, a, b):
    schedule = parse_schedule(text)
    first, second = sorted([a, b])
    n1, n2 = schedule.next_after(first), schedule.next_after(second)
    assert n1 is not None and n2 is not None  # all generated schedules repeat forever
    assert n1 > first and n2 > second
    assert n1 <= n2
    assert schedule.matches(n1) and schedule.matches(n2)


@settings(max_examples=100, deadline=None)
@given(text=st.one_of(calendar_texts, cron_texts), start=starts)
def test_property_nothing_skipped(text, start):
    """Brute-force check: no scheduled minute lies between start and next_after(start)."""
    schedule = parse_schedule(text)
    nxt = schedule.next_after(start)
    minute = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    checked = 0
    while minute < nxt and checked < 3 * 24 * 60:
        assert not schedule.matches(minute), minute
        minute += timedelta(minutes=1)
        checked += 1


@settings(max_examples=60, deadline=None)
@given(text=st.one_of(calendar_texts, cron_texts), start=starts)
def test_property_vienna_results_are_real_and_increasing(text, start):
    schedule = parse_schedule(text)
    runs = schedule.next_runs(start.astimezone(VIENNA), 5)
    assert len(runs) == 5
    previous = start
    for run in runs:
        assert run > previous
        # a returned wall time exists and reads back identically
        assert run.astimezone(UTC).astimezone(VIENNA).replace(tzinfo=None) == run.replace(tzinfo=None)
        assert schedule.matches(run)
        previous = run


def test_schedule_is_hashable_value():
    assert parse_schedule("daily") == parse_schedule("daily")
    assert isinstance(parse_schedule("daily"), Schedule)
    assert str(parse_schedule("0 2 * * *")) == "0 2 * * *"
