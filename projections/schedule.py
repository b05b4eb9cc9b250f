"""A tutor's stored availability as search and booking read it: the bookable slots of a tutors row, parsed once per
row version (`Schedule`), and the UTC cover of its weekly rules that search's SQL pre-filter reads
(`cover_literal`, stored by the tutors projection in `hour_starts_utc`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.availability import WeeklyRule, by_weekday, day_available, parse_rules, slots
from projections.search_cover import start_cover


def cover_literal(availability: dict[str, Any]) -> str:
    """The int4multirange of UTC minutes-of-week at which the weekly rules can start a one-hour lesson (a superset:
    projections.search_cover start_cover)."""
    zone = availability.get("timezone")
    if not zone:
        return "{}"
    return "{" + ",".join(f"[{a},{b})" for a, b in start_cover(_weekly(availability), zone, 60)) + "}"


def _weekly(availability: dict[str, Any]) -> tuple[WeeklyRule, ...]:
    return _rules(tuple((r["weekday"], r["start"], r["end"]) for r in availability.get("weekly") or ()))


@functools.lru_cache(maxsize=16384)
def _rules(weekly: tuple[tuple[int, str, str], ...]) -> tuple[WeeklyRule, ...]:
    """Parsed weekly rules, cached: search parses the rules of hundreds of tutors per page, and they rarely change."""
    return parse_rules([{"weekday": w, "start": a, "end": b} for w, a, b in weekly])


def _iv(raw: list[dict[str, str]]) -> list[tuple[datetime, datetime]]:
    return [(datetime.fromisoformat(x["start"]), datetime.fromisoformat(x["end"])) for x in raw or []]


DAYS_KEPT = 120


@dataclass(frozen=True, slots=True)
class Schedule:
    """A tutor's stored availability, parsed once (search keeps one per tutor row version: api.tutors.schedule_of),
    with the UTC intervals of the local days it has been asked about (`days`, see domain day_rule_intervals)."""

    zone: ZoneInfo
    by_day: tuple[tuple[tuple[int, int], ...], ...]
    openings: tuple[tuple[datetime, datetime], ...]
    blocks: tuple[tuple[datetime, datetime], ...]
    days: dict[date, tuple[tuple[datetime, datetime], ...]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, availability: dict[str, Any]) -> Schedule:
        zone = availability.get("timezone")
        return cls(
            ZoneInfo(zone or "UTC"),
            by_weekday(_weekly(availability) if zone else ()),
            tuple(_iv(availability.get("openings", []))),
            tuple(_iv(availability.get("blocks", []))),
        )

    def free(self, frm: datetime, to: datetime) -> list[tuple[datetime, datetime]]:
        """domain `available` of this schedule."""
        if len(self.days) > DAYS_KEPT:  # bounded: a long-lived schedule is asked about new dates as time passes
            self.days.clear()
        return day_available(self.by_day, self.zone, self.openings, self.blocks, frm, to, self.days)


def slots_for(
    availability: dict[str, Any] | Schedule,
    min_notice_minutes: int,
    frm: datetime,
    to: datetime,
    duration: timedelta,
    now: datetime,
    taken: Sequence[tuple[datetime, datetime]] = (),
    limit: int | None = None,
) -> list[tuple[datetime, datetime]]:
    """Bookable slots of a tutor row: weekly rules in its zone + openings - blocks, after the notice period (the
    first `limit` of them when given)."""
    earliest = max(frm, now + timedelta(minutes=min_notice_minutes))
    if earliest >= to:
        return []
    schedule = availability if isinstance(availability, Schedule) else Schedule.of(availability)
    return slots(schedule.free(earliest, to + duration), duration, earliest, to, taken, limit)


def next_slots(
    availability: dict[str, Any] | Schedule,
    min_notice_minutes: int,
    now: datetime,
    n: int,
    horizon_days: int = 28,
    taken: Sequence[tuple[datetime, datetime]] = (),
) -> list[tuple[datetime, datetime]]:
    """The first n free 60-minute slots within the horizon."""
    out: list[tuple[datetime, datetime]] = []
    start = now
    if not isinstance(availability, Schedule):
        availability = Schedule.of(availability)
    for _ in range(horizon_days // 7):
        end = start + timedelta(days=7)
        out.extend(
            slots_for(availability, min_notice_minutes, start, end, timedelta(minutes=60), now, taken, n - len(out))
        )
        if len(out) >= n:
            break
        start = end
    return out[:n]
