"""Search's process-wide memos (projections/search.py): each row's parsed availability and each tutor's next free
one-hour slot, and the taken-time reads that feed them. Why they exist: search and the favorites list show the same
tutors again and again, and working a tutor's next slot out again costs a bookings read and the slot search."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import msgspec
import psycopg

from domain.availability import Interval
from projections.schedule import Schedule, next_slots

NEXT_SLOT_DAYS = 29  # next_slots looks 28 days ahead; a lesson starting on day 28 ends on day 29
BUSY_SQL = (
    "SELECT tutor_id, start_at, end_at FROM bookings WHERE tutor_id = ANY(%s) AND status IN"
    " ('pending', 'confirmed') AND end_at > %s AND start_at < %s"
)
S = TypeVar("S")  # a slot in the caller's form (see NextSlots)
Busy = dict[Any, list[Interval]]  # tutor id -> their taken (pending or confirmed) intervals


# The memos (one each per API process, bounded) key each entry by what it was worked out from: a stale one is never
# found, only left to be dropped.
_SCHEDULES: dict[tuple[Any, int], Schedule] = {}
_SCHEDULES_MAX = 50_000
_decode = msgspec.json.Decoder().decode


def schedule_of(row: dict[str, Any]) -> Schedule:
    """The row's availability parsed, kept per (tutor, row position): a tutor's availability changes only with an
    event that moves the row's `updated_position`, and search parses the same tutors' rules again and again."""
    key = (row["tutor_id"], row["updated_position"])
    found = _SCHEDULES.get(key)
    if found is None:
        if len(_SCHEDULES) >= _SCHEDULES_MAX:
            _SCHEDULES.clear()  # bounded: start again rather than track recency on every hit
        raw = row["availability"]
        found = _SCHEDULES[key] = Schedule.of((_decode(raw) if isinstance(raw, str) else raw) or {})
    return found


class NextSlots(Generic[S]):
    """Each tutor's next free one-hour slot, worked out once and remembered while it still holds (one per API
    process, shared by search and the favorites list: the same tutors are shown again and again, and working a
    slot out takes a bookings query and the tutor's rules over up to 28 days).

    A tutor's next free slot s, worked out at time T, is still the answer at any later `now` while the tutor's row
    (availability, notice) and taken time are unchanged and s starts no earlier than now + notice: nothing between
    then and s was free at T, and nothing was freed since. The bookings projection's `tutor_calendar` position
    changes with every booking requested, moved or ended; rows carry it (`calendar_position`, read in the same
    statement as the row and before the bookings), so a slot is never kept under a stamp newer than what it was
    worked out from.

    Slots are kept in the caller's form, `shape(start, end)` (the API's wire Struct), made once per slot worked
    out rather than once per tutor shown."""

    def __init__(self, shape: Callable[[datetime, datetime], S], size: int = 100_000) -> None:
        self.shape = shape
        self.size = size  # bounded: start again rather than track recency on every hit
        # tutor_id -> ((tutor row position, tutor calendar position), worked out at, next slot's start, the slot)
        self.memo: dict[Any, tuple[tuple[int, int], datetime, datetime, S]] = {}

    def of(self, conn: psycopg.Connection[Any], rows: list[dict[str, Any]], now: datetime) -> dict[Any, S | None]:
        """Each row's next free one-hour slot (remembered ones; one bookings query for the rest)."""
        out, todo = self._remembered(rows, now)
        if todo:
            busy = busy_by_tutor(conn, [r["tutor_id"] for r, _ in todo], now, now + timedelta(days=NEXT_SLOT_DAYS))
            self._work_out(out, todo, busy, now)
        return out

    async def of_async(
        self, conn: psycopg.AsyncConnection[Any], rows: list[dict[str, Any]], now: datetime
    ) -> dict[Any, S | None]:
        """`of` on an async connection."""
        out, todo = self._remembered(rows, now)
        if todo:
            ids = [r["tutor_id"] for r, _ in todo]
            busy = await busy_by_tutor_async(conn, ids, now, now + timedelta(days=NEXT_SLOT_DAYS))
            self._work_out(out, todo, busy, now)
        return out

    def _remembered(
        self, rows: list[dict[str, Any]], now: datetime
    ) -> tuple[dict[Any, S | None], list[tuple[dict[str, Any], tuple[int, int]]]]:
        """The slots worked out before that still hold, and the rows still to work out."""
        memo = self.memo
        out: dict[Any, S | None] = {}
        todo = []
        for r in rows:
            tid = r["tutor_id"]
            key = (r["updated_position"], r["calendar_position"] or 0)
            hit = memo.get(tid)
            if (
                hit is not None
                and hit[0] == key
                and hit[1] <= now
                and hit[2] >= now + timedelta(minutes=r["min_notice_minutes"])
            ):
                out[tid] = hit[3]
            else:
                todo.append((r, key))
        return out, todo

    def _work_out(
        self,
        out: dict[Any, S | None],
        todo: list[tuple[dict[str, Any], tuple[int, int]]],
        busy: Busy,
        now: datetime,
    ) -> None:
        if len(self.memo) + len(todo) > self.size:
            self.memo.clear()
        for r, key in todo:
            tid = r["tutor_id"]
            nxt = next_slots(schedule_of(r), r["min_notice_minutes"], now, 1, taken=busy[tid])
            out[tid] = slot = self.shape(*nxt[0]) if nxt else None
            if nxt and slot:  # "none within 28 days" is not kept: the horizon moves with now
                self.memo[tid] = (key, now, nxt[0][0], slot)


def _busy(tutor_ids: list[Any], rows: list[dict[str, Any]]) -> Busy:
    out: Busy = {t: [] for t in tutor_ids}
    for r in rows:
        out[r["tutor_id"]].append((r["start_at"], r["end_at"]))
    return out


def busy_by_tutor(conn: psycopg.Connection[Any], tutor_ids: list[Any], frm: datetime, to: datetime) -> Busy:
    """Pending/confirmed booking intervals of several tutors overlapping [frm, to) (one query)."""
    rows = conn.execute(BUSY_SQL, (tutor_ids, frm, to)).fetchall() if tutor_ids else []
    return _busy(tutor_ids, rows)


async def busy_by_tutor_async(
    conn: psycopg.AsyncConnection[Any], tutor_ids: list[Any], frm: datetime, to: datetime
) -> Busy:
    """`busy_by_tutor` on an async connection."""
    rows = await (await conn.execute(BUSY_SQL, (tutor_ids, frm, to))).fetchall() if tutor_ids else []
    return _busy(tutor_ids, rows)
