"""Search's SQL pre-filter: the UTC minutes of the week at which a tutor's weekly rules can start a lesson.

The tutors projection stores each tutor's `start_cover` as an int4multirange (`tutors.hour_starts_utc`, see
projections.tutors cover_literal); search (projections.search) passes over, in SQL, the tutors whose cover misses
the window's `window_cover`, before working out the others' exact slots in Python. Both are supersets (a zone's
every offset, minutes rounded outwards), so the filter never drops a tutor who has a free slot in the window: only
speed depends on how tight they are, never an answer. The exact rules stay in domain.availability.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from domain.availability import WeeklyRule

WEEK_MINUTES = 7 * 1440


@functools.lru_cache(maxsize=1024)
def zone_offsets(zone: str) -> tuple[int, ...]:
    """Every UTC offset (minutes) the zone uses in 2024-2034, sampled daily (DST, standard and any other time)."""
    tz = ZoneInfo(zone)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    found = set()
    for k in range(0, 11 * 365):
        off = (start + timedelta(days=k)).astimezone(tz).utcoffset()
        assert off is not None
        found.add(int(off.total_seconds() // 60))
    return tuple(sorted(found))


def week_cover(rules: Iterable[WeeklyRule], zone: str) -> list[tuple[int, int]]:
    """A superset of the UTC minutes-of-week (0 = Monday 00:00 UTC) the weekly rules can cover: each rule shifted
    by every offset of the zone, wrapped around the week, merged. An instant outside it is outside every rule
    (search uses this to pass over tutors in SQL before working out their exact slots)."""
    spans = []
    for r in rules:
        for off in zone_offsets(zone):
            a = (r.weekday * 1440 + r.start - off) % WEEK_MINUTES
            spans += _wrapped(a, a + (r.end - r.start))
    return _merged(spans)


def _wrapped(a: int, b: int) -> list[tuple[int, int]]:
    """[a, b) minutes of the week (a inside the week, b up to a week later), split where it wraps."""
    return [(a, b)] if b <= WEEK_MINUTES else [(a, WEEK_MINUTES), (0, b - WEEK_MINUTES)]


def _merged(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, overlapping or touching spans joined."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(b, out[-1][1]))
        else:
            out.append((a, b))
    return out


def start_cover(rules: Iterable[WeeklyRule], zone: str, minutes: int) -> list[tuple[int, int]]:
    """A superset of the UTC minutes-of-week at which a lesson of `minutes` from the weekly rules can start.

    A lesson [s, s + minutes) from the rules lies wholly inside the rules' free time, so every one of its minutes is
    in week_cover, and (the cover's stretches being merged, so separated by gaps) all in the same stretch: s is at
    most that stretch's end minus the lesson. So each stretch is shortened at its end by the lesson, after joining
    the stretch that runs into the end of the week with the one that starts the next (they are one). Tighter than
    week_cover for search's window filter: a rule that only touches the window's edge offers no start in it."""
    cover = week_cover(rules, zone)
    if not cover or cover == [(0, WEEK_MINUTES)]:
        return cover
    spans = list(cover)
    if len(spans) > 1 and spans[0][0] == 0 and spans[-1][1] == WEEK_MINUTES:
        head, tail = spans.pop(0), spans.pop()
        spans.append((tail[0], WEEK_MINUTES + head[1]))
    # the last start of a stretch [a, b) is b - minutes
    return _merged(p for a, b in spans if b - minutes + 1 > a for p in _wrapped(a, b - minutes + 1))


def minute_of_week(t: datetime) -> int:
    """UTC minute of the week (0 = Monday 00:00 UTC), seconds dropped."""
    u = t.astimezone(UTC)
    return u.weekday() * 1440 + u.hour * 60 + u.minute


def window_cover(frm: datetime, to: datetime) -> list[tuple[int, int]] | None:
    """The UTC minutes-of-week of [frm, to) (rounded outwards); None when it spans the whole week."""
    minutes = -(-int((to - frm).total_seconds()) // 60) + 1
    if minutes >= WEEK_MINUTES:
        return None
    a = minute_of_week(frm)
    b = a + minutes
    return [(a, b)] if b <= WEEK_MINUTES else [(a, WEEK_MINUTES), (0, b - WEEK_MINUTES)]
