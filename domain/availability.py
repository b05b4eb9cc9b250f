"""Availability in the tutor's IANA zone, slots in UTC.

Weekly rules are wall-clock windows ("17:00"-"20:00" on weekday 0 = Monday) in the tutor's zone. A rule covers
exactly the instants whose local date is that weekday and whose local wall time lies in [start, end). So across
DST changes the UTC times move (17:00 Europe/Berlin is 16:00 UTC in January, 15:00 UTC in July), and:

- spring forward: wall times in the gap do not exist, so a window starting or ending inside the gap starts or
  ends at the transition instant (a 02:00-03:00 Berlin window is empty on that day; 01:00-04:00 lasts 2 hours);
- fall back: repeated wall times exist twice and both count (a 02:00-03:00 window lasts 2 hours on that day).

Openings add UTC intervals, blocks remove them; slots start on the UTC :00/:30 grid and lie wholly inside.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.errors import ValidationFailed

GRID = timedelta(minutes=30)
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class WeeklyRule:
    """A weekly wall-clock window; minutes since local midnight, end exclusive (1440 = midnight)."""

    weekday: int
    start: int
    end: int


def parse_hhmm(field: str, value: str) -> int:
    """'17:30' -> 1050 minutes; '24:00' is the end of the day."""
    if not isinstance(value, str) or not _HHMM.match(value):
        raise ValidationFailed([(field, "a local time HH:MM")])
    h, m = value.split(":")
    return int(h) * 60 + int(m)


def format_hhmm(minutes: int) -> str:
    """1050 -> '17:30'."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_rules(raw: Sequence[dict[str, object]]) -> tuple[WeeklyRule, ...]:
    """Validate `[{weekday, start, end}]` into rules (weekday 0-6, start < end)."""
    rules = []
    for i, r in enumerate(raw):
        wd = r.get("weekday")
        if not isinstance(wd, int) or isinstance(wd, bool) or not 0 <= wd <= 6:
            raise ValidationFailed([(f"availability.weekly[{i}].weekday", "0 (Monday) to 6 (Sunday)")])
        start = parse_hhmm(f"availability.weekly[{i}].start", str(r.get("start")))
        end = parse_hhmm(f"availability.weekly[{i}].end", str(r.get("end")))
        if end <= start:
            raise ValidationFailed([(f"availability.weekly[{i}]", "end must be after start")])
        rules.append(WeeklyRule(wd, start, end))
    return tuple(rules)


def _transition(tz: ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """The UTC instant in (lo, hi] where the zone's offset changes (minute precision; transitions are on minutes)."""
    off = tz.utcoffset(lo.astimezone(tz).replace(tzinfo=None))
    a, b = lo, hi
    while b - a > timedelta(minutes=1):
        mid = a + (b - a) / 2
        mid = mid.replace(second=0, microsecond=0)
        if mid <= a:
            mid = a + timedelta(minutes=1)
        if mid.astimezone(tz).utcoffset() == off:
            a = mid
        else:
            b = mid
    return b


def wall_to_utc(day: date, minutes: int, tz: ZoneInfo, *, last: bool) -> datetime:
    """The instant of wall time `minutes` on local `day`: the first occurrence (or, with last=True, the second
    one of a repeated time); for a time inside a spring-forward gap, the transition instant."""
    naive = datetime.combine(day, time()) + timedelta(minutes=minutes)
    early = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    late = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if early.astimezone(tz).replace(tzinfo=None) != naive:  # in a gap: fold=0 lands after it, fold=1 before
        return _transition(tz, min(early, late), max(early, late))
    return max(early, late) if last else min(early, late)


def rule_intervals(rules: Iterable[WeeklyRule], zone: str, frm: datetime, to: datetime) -> list[Interval]:
    """UTC intervals covered by the weekly rules between frm and to."""
    return day_rule_intervals(_by_weekday(tuple(rules)), ZoneInfo(zone), frm, to)


def by_weekday(rules: Iterable[WeeklyRule]) -> tuple[tuple[tuple[int, int], ...], ...]:
    """The rules' windows (start, end minutes) for each weekday 0-6, for `day_rule_intervals`."""
    return _by_weekday(tuple(rules))


def day_rule_intervals(
    by_day: tuple[tuple[tuple[int, int], ...], ...],
    tz: ZoneInfo,
    frm: datetime,
    to: datetime,
    days: dict[date, tuple[Interval, ...]] | None = None,
) -> list[Interval]:
    """`rule_intervals` of rules already grouped by weekday (`by_weekday`) in a zone already looked up. `days`,
    when given, keeps each local day's intervals for these rules and zone (the caller's memo of `_local_day`: a
    date is a cheaper key than the windows, zone and date that the shared cache hashes on every lookup)."""
    out: list[Interval] = []
    day = frm.astimezone(tz).date() - _DAY
    last_day = to.astimezone(tz).date() + _DAY
    while day <= last_day:
        found = days.get(day) if days is not None else None
        if found is None:
            windows = by_day[day.weekday()]
            found = _local_day(windows, tz, day) if windows else ()
            if days is not None:
                days[day] = found
        for a, b in found:
            if b > frm and a < to:
                out.append((max(a, frm), min(b, to)))
        day += _DAY
    return out


_DAY = timedelta(days=1)

# The three caches below are of pure functions (an answer depends only on the arguments, so a cache cannot change
# one). They stay with the rule because the booking check uses them as much as search: TutorProfile.check_time
# runs `available` on every booking request and reschedule, and without them that call costs about 90 us instead
# of 9 (the local days' zone transitions worked out again). Search's own memos (parsed schedules, next free slots)
# and its SQL pre-filter maths live in projections.search and projections.search_cover.


@functools.lru_cache(maxsize=16384)
def _by_weekday(rules: tuple[WeeklyRule, ...]) -> tuple[tuple[tuple[int, int], ...], ...]:
    """The rules' windows (start, end minutes) for each weekday 0-6."""
    return tuple(tuple(sorted((r.start, r.end) for r in rules if r.weekday == wd)) for wd in range(7))


@functools.lru_cache(maxsize=262144)
def _local_day(windows: tuple[tuple[int, int], ...], tz: ZoneInfo, day: date) -> tuple[Interval, ...]:
    """The UTC intervals of one local day's windows (unclipped), cached: search and booking checks work out the
    same tutors' days again and again, and a day's answer depends only on the windows, the zone and the date."""
    midnight = datetime.combine(day, time(), UTC)
    out = []
    for lo, hi, off in _day_pieces(tz, day):
        for start, end in windows:
            a = max(lo, midnight + timedelta(minutes=start) - off)
            b = min(hi, midnight + timedelta(minutes=end) - off)
            if b > a:
                out.append((a, b))
    return tuple(out)


@functools.lru_cache(maxsize=65536)
def _day_pieces(tz: ZoneInfo, day: date) -> list[tuple[datetime, datetime, timedelta]]:
    """The UTC span of local `day`, split where the offset changes: [(lo, hi, offset)].

    Within one piece wall time = UTC + offset, so a rule window [start, end) maps to the UTC instants of that
    piece whose wall time falls inside it: gaps are skipped and repeated hours counted once per occurrence."""
    start = wall_to_utc(day, 0, tz, last=False)
    end = wall_to_utc(day + timedelta(days=1), 0, tz, last=False)
    if end <= start:
        return []
    o1 = start.astimezone(tz).utcoffset()
    o2 = (end - timedelta(microseconds=1)).astimezone(tz).utcoffset()
    assert o1 is not None and o2 is not None
    if o1 == o2:
        return [(start, end, o1)]
    tr = _transition(tz, start, end - timedelta(microseconds=1))
    return [(start, tr, o1), (tr, end, o2)]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Union of intervals, sorted, touching ones joined."""
    out: list[Interval] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def subtract(base: list[Interval], holes: Iterable[Interval]) -> list[Interval]:
    """`base` (merged) minus every hole."""
    result = base
    for ha, hb in merge(holes):
        nxt: list[Interval] = []
        for a, b in result:
            if hb <= a or ha >= b:
                nxt.append((a, b))
                continue
            if a < ha:
                nxt.append((a, ha))
            if hb < b:
                nxt.append((hb, b))
        result = nxt
    return result


def available(
    rules: Iterable[WeeklyRule],
    zone: str,
    openings: Iterable[Interval],
    blocks: Iterable[Interval],
    frm: datetime,
    to: datetime,
) -> list[Interval]:
    """Weekly rules plus openings, minus blocks, clipped to [frm, to)."""
    return day_available(_by_weekday(tuple(rules)), ZoneInfo(zone), openings, blocks, frm, to)


def day_available(
    by_day: tuple[tuple[tuple[int, int], ...], ...],
    tz: ZoneInfo,
    openings: Iterable[Interval],
    blocks: Iterable[Interval],
    frm: datetime,
    to: datetime,
    days: dict[date, tuple[Interval, ...]] | None = None,
) -> list[Interval]:
    """`available` of rules already grouped by weekday (`by_weekday`) in a zone already looked up (`days`: see
    `day_rule_intervals`)."""
    opened = [(max(a, frm), min(b, to)) for a, b in openings if b > frm and a < to]
    return subtract(merge([*day_rule_intervals(by_day, tz, frm, to, days), *opened]), blocks)


def on_grid(t: datetime) -> bool:
    """Starts on :00 or :30 (UTC) exactly."""
    return t.second == 0 and t.microsecond == 0 and t.minute in (0, 30)


def _ceil_grid(t: datetime) -> datetime:
    """The first grid instant (:00 or :30) at or after t."""
    if not t.microsecond and not t.second and t.minute in (0, 30):
        return t  # most interval bounds are on the grid already
    base = t.replace(minute=0, second=0, microsecond=0)
    while base < t:
        base += GRID
    return base


def slots(
    free: Sequence[Interval],
    duration: timedelta,
    frm: datetime,
    to: datetime,
    taken: Iterable[Interval] = (),
    limit: int | None = None,
) -> list[Interval]:
    """Grid-aligned [start, start + duration) wholly inside `free`, starting
    in [frm, to), not overlapping `taken`; the first `limit` of them when given."""
    busy = merge(taken)
    out: list[Interval] = []
    i = 0  # candidates only move forward in time, so one pointer walks the sorted busy list
    for a, b in sorted(free):
        s = _ceil_grid(max(a, frm))
        while s + duration <= b and s < to:
            e = s + duration
            while i < len(busy) and busy[i][1] <= s:
                i += 1
            if i < len(busy) and busy[i][0] < e:
                s = max(s + GRID, _ceil_grid(busy[i][1]))  # jump past the busy interval
                continue
            out.append((s, e))
            if limit is not None and len(out) >= limit:
                return out
            s += GRID
    return out


def covers(free: Sequence[Interval], start: datetime, end: datetime) -> bool:
    """True when [start, end) lies wholly inside one free interval."""
    return any(a <= start and end <= b for a, b in free)


def intervals(raw: list[dict[str, str]]) -> list[Interval]:
    """Recorded `{start, end}` ISO instants as pairs of datetimes."""
    return [(datetime.fromisoformat(x["start"]), datetime.fromisoformat(x["end"])) for x in raw]


@dataclass(frozen=True)
class Schedule:
    """A tutor's availability as `TutorProfile.check_time` reads it: the recorded value (as the event has it)
    parsed once, when it is set, rather than on every booking."""

    timezone: str | None
    weekly: tuple[WeeklyRule, ...]
    openings: list[Interval]
    blocks: list[Interval]

    @classmethod
    def of(cls, availability: dict[str, Any]) -> Schedule:
        return cls(
            availability["timezone"],
            parse_rules(availability["weekly"]),
            intervals(availability["openings"]),
            intervals(availability["blocks"]),
        )
