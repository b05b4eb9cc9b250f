"""Availability (weekly wall-clock rules in an IANA zone -> UTC slots) and money rounding, as properties.

The oracle here is the module's own definition, computed independently of its implementation: a weekly rule
covers exactly the instants whose *local* date is its weekday and whose *local* wall time lies in [start, end).
Across DST that gives the documented behaviour by itself: wall times in a spring-forward gap have no instant (a
window starting/ending in the gap starts/ends at the transition), and repeated wall times in a fall-back fold have
two instants, both covered.

The oracle works minute by minute in UTC: every rule boundary is a whole local minute and (since 1972) every zone
offset is a whole number of minutes, so coverage is constant inside each UTC minute.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from domain.availability import (
    WeeklyRule,
    available,
    format_hhmm,
    merge,
    parse_hhmm,
    parse_rules,
    slots,
)
from domain.money import Money, split
from projections.schedule import Schedule, slots_for
from projections.search_cover import WEEK_MINUTES, minute_of_week, start_cover, week_cover, window_cover

ZONES = sorted(available_timezones())
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN = timedelta(minutes=1)
Interval = tuple[datetime, datetime]


# --------------------------------------------------------------------------------------------------- oracle


def _epoch_min(t: datetime) -> int:
    return int((t - EPOCH) // MIN)


def _offset_min(tz: ZoneInfo, t: datetime) -> int:
    off = t.astimezone(tz).utcoffset()
    assert off is not None
    secs = int(off.total_seconds())
    assume(secs % 60 == 0)  # local mean times with seconds predate the years sampled here
    return secs // 60


def local_minutes(zone: str, frm: datetime, minutes: int) -> list[tuple[int, int]]:
    """(local weekday, local minute of day) of each UTC minute frm, frm+1min, ... (frm on a whole minute).

    Offsets are looked up hourly; an hour whose two ends differ is scanned minute by minute (no zone changes its
    offset twice within an hour)."""
    tz = ZoneInfo(zone)
    base = _epoch_min(frm)
    offs = [0] * minutes
    hours = minutes // 60 + 1
    hourly = [_offset_min(tz, frm + timedelta(hours=h)) for h in range(hours + 1)]
    for h in range(hours):
        lo, hi = h * 60, min((h + 1) * 60, minutes)
        if lo >= minutes:
            break
        if hourly[h] == hourly[h + 1]:
            for k in range(lo, hi):
                offs[k] = hourly[h]
        else:
            for k in range(lo, hi):
                offs[k] = _offset_min(tz, frm + timedelta(minutes=k))
    out = []
    for k in range(minutes):
        local = base + k + offs[k]
        out.append(((local // 1440 + 3) % 7, local % 1440))  # 1970-01-01 was a Thursday (3)
    return out


def coverage(rules: list[WeeklyRule], zone: str, openings: list[Interval], frm: datetime, minutes: int) -> list[bool]:
    """Is UTC minute frm+k covered by the rules (by the local-wall-time definition) or by an opening?"""
    table = [[False] * 1440 for _ in range(7)]
    for r in rules:
        for m in range(r.start, r.end):
            table[r.weekday][m] = True
    cov = [table[wd][m] for wd, m in local_minutes(zone, frm, minutes)]
    for a, b in openings:  # openings are whole minutes here
        for k in range(max(0, _epoch_min(a) - _epoch_min(frm)), min(minutes, _epoch_min(b) - _epoch_min(frm))):
            cov[k] = True
    return cov


def covered_intervals(rules: list[WeeklyRule], zone: str, frm: datetime, to: datetime) -> list[Interval]:
    """The oracle's covered UTC intervals in [frm, to) (frm, to on whole minutes)."""
    cov = coverage(rules, zone, [], frm, _epoch_min(to) - _epoch_min(frm))
    out: list[Interval] = []
    for k, c in enumerate(cov):
        if not c:
            continue
        t = frm + k * MIN
        if out and out[-1][1] == t:
            out[-1] = (out[-1][0], t + MIN)
        else:
            out.append((t, t + MIN))
    return out


def overlaps(a: Interval, b: Interval) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@lru_cache(maxsize=4096)
def transitions(zone: str, year: int) -> tuple[date, ...]:
    """Local dates in `year` on which the zone's UTC offset changes (found day by day)."""
    tz = ZoneInfo(zone)
    out = []
    t = datetime(year, 1, 1, 12, tzinfo=UTC)
    prev = t.astimezone(tz).utcoffset()
    for _ in range(366):
        t2 = t + timedelta(days=1)
        off = t2.astimezone(tz).utcoffset()
        if off != prev:
            out.append((t2 - timedelta(hours=12)).astimezone(tz).date())
        prev, t = off, t2
    return tuple(out)


# ----------------------------------------------------------------------------------------------- strategies


@st.composite
def weekly_rules(draw: st.DrawFn) -> list[WeeklyRule]:
    n = draw(st.integers(1, 5))
    out = []
    for _ in range(n):
        wd = draw(st.integers(0, 6))
        # round hours, the half hours around DST changes, and any minute
        point = st.one_of(
            st.integers(0, 24).map(lambda h: h * 60), st.sampled_from([90, 120, 150, 180, 210]), st.integers(0, 1440)
        )
        a, b = draw(point), draw(point)
        assume(a != b)
        out.append(WeeklyRule(wd, min(a, b), max(a, b)))
    return out


@st.composite
def ranges(draw: st.DrawFn) -> tuple[str, datetime, datetime]:
    """A zone and a UTC range of up to 31 days, usually around one of the zone's offset changes."""
    zone = draw(st.sampled_from(ZONES))
    year = draw(st.integers(1995, 2037))
    changes = transitions(zone, year)
    near = draw(st.sampled_from([True, True, False]))
    if changes and near:
        day = draw(st.sampled_from(changes))
        start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=draw(st.integers(0, 3)))
    else:
        start = datetime(year, 1, 1, tzinfo=UTC) + timedelta(days=draw(st.integers(0, 364)))
    frm = start + timedelta(minutes=draw(st.integers(0, 1439)), seconds=draw(st.sampled_from([0, 0, 0, 17])))
    to = frm + timedelta(minutes=draw(st.integers(1, 31 * 24 * 60)))
    return zone, frm, to


def _intervals_in(frm: datetime, to: datetime, whole_minutes: bool) -> st.SearchStrategy[list[Interval]]:
    span = int((to - frm).total_seconds() // 60)

    @st.composite
    def one(draw: st.DrawFn) -> Interval:
        a = frm.replace(second=0) + timedelta(minutes=draw(st.integers(0, span)))
        if not whole_minutes:
            a += timedelta(seconds=draw(st.integers(0, 59)))
        return a, a + timedelta(minutes=draw(st.integers(1, 6 * 60)))

    return st.lists(one(), max_size=4)


# -------------------------------------------------------------------------------------------------- property


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data(), rules=weekly_rules(), where=ranges(), minutes=st.sampled_from([30, 60, 90, 120]))
def test_slots_are_on_the_grid_inside_the_rules_and_outside_blocks(
    data: st.DataObject, rules: list[WeeklyRule], where: tuple[str, datetime, datetime], minutes: int
) -> None:
    zone, frm, to = where
    duration = timedelta(minutes=minutes)
    blocks = data.draw(_intervals_in(frm, to, whole_minutes=False), label="blocks")
    openings = data.draw(st.just([]) | _intervals_in(frm, to, whole_minutes=True), label="openings")

    free = available(rules, zone, openings, blocks, frm, to + duration)
    found = slots(free, duration, frm, to)

    base = frm.replace(second=0, microsecond=0)
    span = _epoch_min(to + duration) - _epoch_min(base) + 1
    cov = coverage(rules, zone, openings, base, span)

    def inside(s: datetime, e: datetime) -> bool:
        k0 = _epoch_min(s) - _epoch_min(base)
        return all(cov[k0 : k0 + (_epoch_min(e) - _epoch_min(s))])

    starts = [s for s, _ in found]
    assert starts == sorted(set(starts)), "slots must be strictly increasing"
    for s, e in found:
        assert s.utcoffset() == timedelta(0), s
        assert s.minute in (0, 30) and s.second == 0 and s.microsecond == 0, f"off the grid: {s}"
        assert e - s == duration
        assert frm <= s < to
        assert inside(s, e), (
            f"{s}..{e} is not wholly inside the rules in {zone}: local {s.astimezone(ZoneInfo(zone))}"
            f"..{(e - timedelta(microseconds=1)).astimezone(ZoneInfo(zone))}, rules {rules}"
        )
        for b in blocks:
            assert not overlaps((s, e), b), f"slot {s}..{e} overlaps block {b}"
        for t in (s, e):
            assert datetime.fromisoformat(t.isoformat()) == t
            assert datetime.fromisoformat(t.isoformat().replace("+00:00", "Z")) == t
            assert t.astimezone(ZoneInfo(zone)).astimezone(UTC) == t

    # and nothing bookable is missing: every grid start whose whole slot is covered and unblocked is offered
    s = base if base >= frm else base + MIN
    while s.minute not in (0, 30):
        s += MIN
    offered = set(starts)
    while s < to:
        e = s + duration
        if inside(s, e) and not any(overlaps((s, e), b) for b in blocks):
            assert s in offered, f"{s}..{e} is free in {zone} (rules {rules}) but not offered"
        s += timedelta(minutes=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(rules=weekly_rules(), where=ranges())
def test_rule_intervals_are_exactly_the_local_wall_clock_windows(
    rules: list[WeeklyRule], where: tuple[str, datetime, datetime]
) -> None:
    """`available` with no openings or blocks is the oracle's set of instants, minute for minute; so is a parsed
    `Schedule`'s, whose memo of local days was filled by an earlier, overlapping question."""
    zone, frm, to = where
    frm, to = frm.replace(second=0), to.replace(second=0)
    assume(to > frm)
    expected = covered_intervals(rules, zone, frm, to)
    assert merge(available(rules, zone, [], [], frm, to)) == expected
    weekly = [{"weekday": r.weekday, "start": format_hhmm(r.start), "end": format_hhmm(r.end)} for r in rules]
    schedule = Schedule.of({"timezone": zone, "weekly": weekly, "blocks": [], "openings": []})
    schedule.free(frm - timedelta(days=1), frm + (to - frm) / 2)
    assert schedule.days, "the earlier question fills the memo"
    assert merge(schedule.free(frm, to)) == expected


# -------------------------------------------------------------------------------------------------- examples


def rule(weekday: int, start: str, end: str) -> WeeklyRule:
    return WeeklyRule(weekday, parse_hhmm("start", start), parse_hhmm("end", end))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def day_slots(zone: str, r: WeeklyRule, day: date, minutes: int = 60) -> list[Interval]:
    frm = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=1)
    to = frm + timedelta(days=3)
    return slots(
        available([r], zone, [], [], frm, to + timedelta(minutes=minutes)), timedelta(minutes=minutes), frm, to
    )


def total(intervals: list[Interval]) -> timedelta:
    return sum((b - a for a, b in intervals), timedelta())


@pytest.mark.parametrize(
    ("zone", "day", "start_utc"),
    [
        ("Europe/Berlin", date(2026, 1, 5), utc(2026, 1, 5, 16)),  # CET, UTC+1
        ("Europe/Berlin", date(2026, 7, 6), utc(2026, 7, 6, 15)),  # CEST, UTC+2
        ("America/New_York", date(2026, 1, 5), utc(2026, 1, 5, 22)),  # EST, UTC-5
        ("America/New_York", date(2026, 7, 6), utc(2026, 7, 6, 21)),  # EDT, UTC-4
        ("Asia/Kolkata", date(2026, 7, 6), utc(2026, 7, 6, 11, 30)),  # UTC+5:30, no DST
        ("Australia/Sydney", date(2026, 1, 5), utc(2026, 1, 5, 6)),  # AEDT, UTC+11 in the southern summer
        ("Australia/Sydney", date(2026, 7, 6), utc(2026, 7, 6, 7)),  # AEST, UTC+10
    ],
)
def test_weekly_17_00_follows_the_zone_through_the_year(zone: str, day: date, start_utc: datetime) -> None:
    assert day.weekday() == 0
    found = day_slots(zone, rule(0, "17:00", "18:00"), day)
    assert found == [(start_utc, start_utc + timedelta(hours=1))]


def test_berlin_spring_forward_gap() -> None:
    day = date(2026, 3, 29)  # Sunday: 02:00 CET -> 03:00 CEST at 01:00Z
    frm, to = utc(2026, 3, 28), utc(2026, 3, 31)
    assert available([rule(6, "02:00", "03:00")], "Europe/Berlin", [], [], frm, to) == []
    two_hours = available([rule(6, "01:00", "04:00")], "Europe/Berlin", [], [], frm, to)
    assert two_hours == [(utc(2026, 3, 29, 0), utc(2026, 3, 29, 2))]
    assert [s for s, _ in day_slots("Europe/Berlin", rule(6, "01:00", "04:00"), day)] == [
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 0, 30),
        utc(2026, 3, 29, 1),
    ]
    # a window starting inside the gap starts at the transition; one ending inside it ends there
    assert available([rule(6, "02:30", "05:00")], "Europe/Berlin", [], [], frm, to) == [
        (utc(2026, 3, 29, 1), utc(2026, 3, 29, 3))
    ]
    assert available([rule(6, "00:00", "02:30")], "Europe/Berlin", [], [], frm, to) == [
        (utc(2026, 3, 28, 23), utc(2026, 3, 29, 1))
    ]


def test_berlin_fall_back_fold() -> None:
    frm, to = utc(2026, 10, 24), utc(2026, 10, 27)  # Sunday 25 Oct: 03:00 CEST -> 02:00 CET at 01:00Z
    fold = available([rule(6, "02:00", "03:00")], "Europe/Berlin", [], [], frm, to)
    assert fold == [(utc(2026, 10, 25, 0), utc(2026, 10, 25, 2))]
    assert total(fold) == timedelta(hours=2)


def test_new_york_dst_days() -> None:
    spring = available([rule(6, "02:00", "03:00")], "America/New_York", [], [], utc(2026, 3, 7), utc(2026, 3, 10))
    assert spring == []
    spring = available([rule(6, "01:00", "04:00")], "America/New_York", [], [], utc(2026, 3, 7), utc(2026, 3, 10))
    assert spring == [(utc(2026, 3, 8, 6), utc(2026, 3, 8, 8))]
    fall = available([rule(6, "01:00", "02:00")], "America/New_York", [], [], utc(2026, 10, 31), utc(2026, 11, 3))
    assert fall == [(utc(2026, 11, 1, 5), utc(2026, 11, 1, 7))]


def test_window_ending_where_the_repeated_hour_begins_lasts_its_wall_clock_length() -> None:
    """New York, Sunday 1 Nov 2026: 02:00 EDT -> 01:00 EST, so 01:00-02:00 happens twice. A 00:00-01:00 rule
    covers 00:00-01:00 EDT (04:00Z-05:00Z) only: neither 01:00-02:00 is inside it. One 60-minute slot."""
    got = day_slots("America/New_York", rule(6, "00:00", "01:00"), date(2026, 11, 1))
    assert got == [(utc(2026, 11, 1, 4), utc(2026, 11, 1, 5))]
    # Berlin, the same shape: 00:00-02:00 on 25 Oct 2026 is 22:00Z-00:00Z, not up to 02:00 CET (01:00Z)
    got = day_slots("Europe/Berlin", rule(6, "00:00", "02:00"), date(2026, 10, 25))
    assert [s for s, _ in got] == [utc(2026, 10, 24, 22), utc(2026, 10, 24, 22, 30), utc(2026, 10, 24, 23)]


def test_fold_window_ending_inside_the_repeated_hour_covers_only_its_wall_times() -> None:
    """00:00-02:30 on Berlin's fall-back Sunday: wall times 00:00-02:30 CEST (22:00Z-00:30Z) and the repeated
    02:00-02:30 CET (01:00Z-01:30Z). 02:30-03:00 CEST (00:30Z-01:00Z) is outside the window and must not be
    offered (the module docstring: a rule covers *exactly* the instants whose wall time lies in [start, end))."""
    frm, to = utc(2026, 10, 24), utc(2026, 10, 27)
    got = available([rule(6, "00:00", "02:30")], "Europe/Berlin", [], [], frm, to)
    assert got == [(utc(2026, 10, 24, 22), utc(2026, 10, 25, 0, 30)), (utc(2026, 10, 25, 1), utc(2026, 10, 25, 1, 30))]


def test_fold_window_starting_inside_the_repeated_hour_covers_only_its_wall_times() -> None:
    frm, to = utc(2026, 10, 24), utc(2026, 10, 27)
    got = available([rule(6, "02:30", "04:00")], "Europe/Berlin", [], [], frm, to)
    assert got == [(utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1)), (utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 3))]


def test_openings_add_and_blocks_remove() -> None:
    frm, to = utc(2026, 1, 5), utc(2026, 1, 6)
    rules = [rule(0, "10:00", "12:00")]  # UTC zone
    free = available(
        rules,
        "UTC",
        [(utc(2026, 1, 5, 14), utc(2026, 1, 5, 15))],
        [(utc(2026, 1, 5, 10, 30), utc(2026, 1, 5, 11))],
        frm,
        to,
    )
    assert free == [
        (utc(2026, 1, 5, 10), utc(2026, 1, 5, 10, 30)),
        (utc(2026, 1, 5, 11), utc(2026, 1, 5, 12)),
        (utc(2026, 1, 5, 14), utc(2026, 1, 5, 15)),
    ]
    assert [s for s, _ in slots(free, timedelta(minutes=60), frm, to)] == [utc(2026, 1, 5, 11), utc(2026, 1, 5, 14)]


def test_off_grid_windows_only_offer_whole_grid_slots() -> None:
    frm, to = utc(2026, 1, 5), utc(2026, 1, 6)
    free = available([rule(0, "10:10", "11:50")], "UTC", [], [], frm, to)
    assert slots(free, timedelta(minutes=30), frm, to) == [
        (utc(2026, 1, 5, 10, 30), utc(2026, 1, 5, 11)),
        (utc(2026, 1, 5, 11), utc(2026, 1, 5, 11, 30)),
    ]
    assert slots(free, timedelta(minutes=120), frm, to) == []


def test_slots_for_respects_notice_and_taken_times() -> None:
    avail = {
        "timezone": "UTC",
        "weekly": [{"weekday": 0, "start": "09:00", "end": "13:00"}],
        "blocks": [],
        "openings": [],
    }
    now = utc(2026, 1, 5, 8, 50)
    got = slots_for(
        avail,
        130,
        utc(2026, 1, 5),
        utc(2026, 1, 6),
        timedelta(minutes=60),
        now,
        taken=[(utc(2026, 1, 5, 11, 30), utc(2026, 1, 5, 12))],
    )
    # earliest start 11:00 (08:50 + 130 min); 11:00-12:00 and 11:30-12:30 overlap the taken half hour
    assert [s for s, _ in got] == [utc(2026, 1, 5, 12)]


@settings(deadline=None)
@given(st.integers(0, 1440))
def test_hhmm_round_trips(minutes: int) -> None:
    assert parse_hhmm("t", format_hhmm(minutes)) == minutes
    assert parse_rules([{"weekday": 3, "start": "00:00", "end": format_hhmm(max(minutes, 1))}])[0].end == max(
        minutes, 1
    )


# ----------------------------------------------------------------------------------------------------- money


@settings(deadline=None)
@given(total=st.integers(0, 10**12), weights=st.lists(st.integers(0, 10**9), min_size=1, max_size=30))
@example(total=10, weights=[1, 1, 1])
@example(total=1, weights=[1, 1])
def test_split_parts_always_sum_to_the_total(total: int, weights: list[int]) -> None:
    assume(sum(weights) > 0)
    parts = split(total, weights)
    assert sum(parts) == total
    assert len(parts) == len(weights)
    whole = sum(weights)
    for p, w in zip(parts, weights, strict=True):
        exact = Fraction(total * w, whole)
        assert exact - 1 < p < exact + 1, (p, exact)  # floor or ceil of the exact share
        assert p >= 0
    assert split(total, weights) == parts  # deterministic


def test_split_hands_leftovers_to_the_largest_remainders_then_the_earliest() -> None:
    assert split(10, [1, 1, 1]) == [4, 3, 3]
    assert split(100, [1, 2]) == [33, 67]
    assert split(5, [0, 1]) == [0, 5]
    with pytest.raises(ValueError):
        split(5, [])
    with pytest.raises(ValueError):
        split(5, [0, 0])


@settings(deadline=None)
@given(amount=st.integers(0, 10**12), bps=st.integers(0, 20_000))
@example(amount=1, bps=5000)
@example(amount=3, bps=5000)
@example(amount=4500, bps=3333)
def test_apply_bps_rounds_half_up(amount: int, bps: int) -> None:
    exact = Fraction(amount * bps, 10_000)
    expected = int(exact + Fraction(1, 2))  # floor(x + 1/2): halves go up
    assert Money(amount, "EUR").apply_bps(bps) == Money(expected, "EUR")


@pytest.mark.parametrize(
    ("amount", "bps", "expected"),
    [
        (1, 5000, 1),
        (3, 5000, 2),
        (5, 1000, 1),
        (4, 1000, 0),
        (4500, 3333, 1500),
        (4500, 10_000, 4500),
        (999, 0, 0),
        (105, 500, 5),
    ],
)
def test_apply_bps_examples(amount: int, bps: int, expected: int) -> None:
    assert Money(amount, "USD").apply_bps(bps).amount == expected


# ------------------------------------------------------------------------------- search's SQL pre-filter


def _inside(spans: list[tuple[int, int]], m: int) -> bool:
    return any(a <= m < b for a, b in spans)


# rules in a zone over a span of days: what the search pre-filter tests draw
COVER_CASES = {
    "rules": weekly_rules(),
    "zone": st.sampled_from(ZONES),
    "start": st.datetimes(datetime(2024, 1, 1), datetime(2034, 6, 1)),
    "days": st.integers(1, 10),
}
COVER_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@COVER_SETTINGS
@given(**COVER_CASES)
def test_week_cover_holds_every_minute_the_rules_cover(
    rules: list[WeeklyRule], zone: str, start: datetime, days: int
) -> None:
    """Search passes over tutors whose week_cover misses the window: it must hold every covered instant."""
    frm = start.replace(second=0, microsecond=0, tzinfo=UTC)
    to = frm + timedelta(days=days)
    cover = week_cover(rules, zone)
    for a, b in available(rules, zone, [], [], frm, to):
        t = a
        while t < b:
            assert _inside(cover, minute_of_week(t)), (zone, t)
            t += timedelta(minutes=17)
        assert _inside(cover, minute_of_week(b - MIN)), (zone, b)
        # ... and a window around any covered instant meets the cover in SQL terms
        window = window_cover(a, a + timedelta(minutes=1))
        assert window is not None and any(x < q and p < y for x, y in window for p, q in cover)


@COVER_SETTINGS
@given(**COVER_CASES, minutes=st.sampled_from([30, 60, 90]))
def test_start_cover_holds_every_lesson_start_of_the_rules(
    rules: list[WeeklyRule], zone: str, start: datetime, days: int, minutes: int
) -> None:
    """Search passes over tutors whose start cover misses the window: it must hold every start the rules allow,
    and it lies inside week_cover."""
    frm = start.replace(second=0, microsecond=0, tzinfo=UTC)
    to = frm + timedelta(days=days)
    starts = start_cover(rules, zone, minutes)
    cover = week_cover(rules, zone)
    for a, b in starts:
        assert any(x <= a and b <= y for x, y in cover), (a, b)
    duration = timedelta(minutes=minutes)
    for s, _ in slots(available(rules, zone, [], [], frm, to + duration), duration, frm, to):
        assert _inside(starts, minute_of_week(s)), (zone, s)
        window = window_cover(s, s + timedelta(minutes=1))
        assert window is not None and any(x < q and p < y for x, y in window for p, q in starts)


def test_start_cover_examples() -> None:
    """A rule shorter than the lesson offers no start; one that ends at the window's start offers none in it."""
    berlin = [WeeklyRule(0, 17 * 60, 18 * 60 + 30)]  # Monday 17:00-18:30 local
    got = start_cover(berlin, "Europe/Berlin", 60)
    # 16:00-16:30 UTC in winter (UTC+1) and 15:00-15:30 in summer (UTC+2), merged over both offsets
    assert got == [(15 * 60, 16 * 60 + 31)]
    assert start_cover([WeeklyRule(2, 600, 645)], "UTC", 60) == []
    assert start_cover([WeeklyRule(2, 600, 660)], "UTC", 60) == [(2 * 1440 + 600, 2 * 1440 + 601)]
    # Sunday 23:30 - Monday 00:30 UTC from two rules: one stretch across the week's end
    assert start_cover([WeeklyRule(6, 1410, 1440), WeeklyRule(0, 0, 30)], "UTC", 60) == [
        (6 * 1440 + 1410, 6 * 1440 + 1411)
    ]
    assert start_cover([WeeklyRule(d, 0, 1440) for d in range(7)], "UTC", 60) == [(0, WEEK_MINUTES)]


@given(frm=st.datetimes(datetime(2024, 1, 1), datetime(2034, 1, 1)), minutes=st.integers(1, 8 * 1440))
def test_window_cover_holds_every_minute_of_the_window(frm: datetime, minutes: int) -> None:
    frm = frm.replace(tzinfo=UTC)
    to = frm + timedelta(minutes=minutes, seconds=7)
    window = window_cover(frm, to)
    if window is None:
        assert to - frm >= timedelta(days=7) - timedelta(minutes=2)
        return
    t = frm
    while t < to:
        assert _inside(window, minute_of_week(t))
        t += timedelta(minutes=13)
    assert _inside(window, minute_of_week(to - timedelta(seconds=1)))
