"""Tutor search: the query object behind `GET /tutors`, with its SQL, its memos and its window pre-filter.

Search is a hot path (p99 < 25 ms, docs/PERFORMANCE.md), so each statement here is written for its plan (the
comments say how) and two process-wide memos keep what the same tutors' rows make again and again: each row's
parsed availability (`schedule_of`) and each tutor's next free one-hour slot (`NextSlots`). The rules
themselves (weekly rules, openings, blocks, notice, the slot grid) are domain.availability's; the cover maths of
the SQL pre-filter is projections.search_cover's, the memos projections.search_memos'. The caller validates the parameters and shapes the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Generic
from uuid import UUID

import msgspec
import psycopg

from domain.availability import Interval
from projections.schedule import slots_for
from projections.search_cover import window_cover
from projections.search_memos import NextSlots, S, schedule_of
from projections.tutors import term_of
from projections.waiting import POSITION_SQL, positions_async, stopped_position

SEARCH_COLS = (
    "t.tutor_id, t.full_name, t.bio, t.languages, t.hourly_amount, t.currency,"
    # availability as JSON text: decoded and parsed once per tutor row version (schedule_of), not on every read
    " t.rating_avg, t.rating_count, t.availability_text AS availability, t.min_notice_minutes, t.updated_position,"
    # the public subjects as JSON text, in the tutor's order, decoded straight into Structs (public_tutor_out)
    " t.subjects_json,"
    # read in the same statement as the row, before any bookings: see NextSlots
    " (SELECT c.position FROM tutor_calendar c WHERE c.tutor_id = t.tutor_id) AS calendar_position"
)
PUBLIC_COLS = SEARCH_COLS + ", t.experience"
HOUR = timedelta(minutes=60)  # search looks for free one-hour lessons
READS = ("tutors", "bookings")  # the read models search answers from
SORT_KEYS = {
    "rating": "coalesce(rating_avg, -1)",
    "price": "hourly_amount",
    "relevance": "ts_rank(t.search, tq)::float8",
}
SORTS = tuple(SORT_KEYS)
MAX_SCANNED = 2000  # bounds the work of one page under a narrow availability filter
# what a window search's later pages read of a candidate: only what the window check needs (see TutorSearch._rows)
NARROW_COLS = "t.tutor_id, t.availability_text AS availability, t.min_notice_minutes, t.updated_position"
WINDOW_BUSY_COL = (
    ", (SELECT coalesce(array_agg(b.start_at), '{}') || coalesce(array_agg(b.end_at), '{}')"
    " FROM bookings b WHERE b.tutor_id = t.tutor_id AND b.status IN ('pending', 'confirmed')"
    " AND b.end_at > %s AND b.start_at < %s) AS window_busy"
)
Keyset = Sequence[Any]  # (sort key, tutor id): where a page starts, after the last row of the page before


class SearchFilters(msgspec.Struct, frozen=True):
    """What a search asks for, validated: `sort` one of SORTS (relevance only with `q`), `window` [from, to) at
    most 31 days. (Structs, not frozen dataclasses, here: a tenth of the cost to build, three per request.)"""

    sort: str
    subject: UUID | None = None
    min_price: int | None = None
    max_price: int | None = None
    min_rating: float | None = None
    q: str | None = None
    window: tuple[datetime, datetime] | None = None


class SearchPage(msgspec.Struct, Generic[S], frozen=True):
    """One page: the chosen `tutors` rows (SEARCH_COLS) in order, each tutor's next free one-hour slot (by
    tutor id), the keyset of the next page when more may follow, and the read models' position the rows are as of."""

    rows: list[dict[str, Any]]
    next_slots: dict[Any, S | None]
    after: Keyset | None
    position: int


class TutorSearch(Generic[S]):
    """Listed tutors by filters, in keyset pages, on one async read connection at one business `now`; each
    tutor's next free slot from the process's memo `next_slots`.

    `position` is the read models' position the caller waited for (X-Min-Position), or None: then the first
    statement reads it with its rows (one round trip fewer, and as of the very snapshot the rows come from)."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        now: datetime,
        next_slots: NextSlots[S],
        position: int | None = None,
    ) -> None:
        self.conn = conn
        self.now = now
        self.next_slots = next_slots
        self.position = position

    async def page(self, filters: SearchFilters, after: Keyset | None, limit: int) -> SearchPage[S]:
        """Up to `limit` tutors after the keyset `after`. With a window, candidates come from the SQL pre-filter
        and are checked exactly here, page by page of candidates, scanning at most MAX_SCANNED."""
        plan, window, position, now = _plan(filters), filters.window, self.position, self.now
        frm, to = window if window is not None else (None, None)
        last: list[Any] | None = list(after) if after else None
        last_row: dict[str, Any] | None = None  # the last row scanned, the next page's keyset start
        more, first, scanned = False, True, 0
        chosen: list[dict[str, Any]] = []
        size = limit + 1 if window is None else window_first_page(limit, window[1] - window[0])
        while not more:
            if last_row is not None:
                last = [last_row["sort_key"], str(last_row["tutor_id"])]
            rows = await self._rows(plan, last, size, whole=first, with_position=position is None)
            if position is None:  # the first page's position (X-Projection-Position)
                position = (
                    stopped_position(rows[0]["seen_position"], READS)
                    if rows
                    else await positions_async(self.conn, READS)
                )
            first = False
            for r in rows:
                if len(chosen) == limit:
                    more = True
                    break
                scanned += 1
                last_row = r
                # with a window, the candidate has a free one-hour slot starting in it (after its notice)
                if (
                    frm is not None
                    and to is not None
                    and not slots_for(
                        schedule_of(r), r["min_notice_minutes"], frm, to, HOUR, now, _pairs(r["window_busy"]), limit=1
                    )
                ):
                    continue
                chosen.append(r)
            if len(rows) < size:
                break
            size = max(50, limit * 3)
            if scanned >= MAX_SCANNED:
                more = True
                break
        assert position is not None  # the loop reads at least one page
        chosen = await self._whole(chosen)
        nexts = await self.next_slots.of_async(self.conn, chosen, now)
        if last_row is not None:
            last = [last_row["sort_key"], str(last_row["tutor_id"])]
        return SearchPage(chosen, nexts, last if more and last else None, position)

    async def _rows(
        self, plan: _Plan, after: Keyset | None, size: int, *, whole: bool, with_position: bool
    ) -> list[dict[str, Any]]:
        """One page of candidates, in one statement: the page's ids and sort keys from the sort's index (an
        index-only walk: every filtered column is in it; relevance walks the term index or ranks the matches of
        `ranked`), then those rows read whole. Filters that pass over many rows then read no table pages for them.

        With a window, candidates are checked in Python against their taken intervals in the window (read in the
        same statement). The first page reads whole rows; later, larger pages only what the check needs (`whole`
        false), and the rows chosen from them are read whole afterwards (`_whole`)."""
        w, p = list(plan.where), list(plan.params)
        if after is not None:
            w.append(f"({plan.key}, t.tutor_id) {'>' if plan.asc else '<'} (%s, %s::uuid)")
            p.extend(after)
        order = "ASC" if plan.asc else "DESC"
        cols, col_params = SEARCH_COLS, []
        if plan.window is not None:
            cols = (SEARCH_COLS if whole else NARROW_COLS) + WINDOW_BUSY_COL
            col_params = [plan.window[0], plan.window[1] + HOUR]
        top = (
            f"SELECT t.tutor_id, {plan.key}{'::float8' if plan.exact else ''} AS sort_key FROM {plan.ranked} t"
            f"{plan.source} WHERE {' AND '.join(w)} ORDER BY {plan.key} {order}, t.tutor_id {order} LIMIT %s"
        )
        # without X-Min-Position, the first page also reads the position its rows are as of
        seen, seen_params = (f", {POSITION_SQL} AS seen_position", [list(READS)]) if with_position else ("", [])
        sql = (
            f"SELECT {cols}, top.sort_key{seen} FROM ({top}) top"
            f" JOIN tutors t ON t.tutor_id = top.tutor_id ORDER BY top.sort_key {order}, t.tutor_id {order}"
        )
        cur = await self.conn.execute(sql, (*col_params, *seen_params, *plan.source_params, *p, size))
        return list(await cur.fetchall())

    async def _whole(self, chosen: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The chosen rows, those read narrow now read whole (one statement; a row gone meanwhile is left out)."""
        partial = [r["tutor_id"] for r in chosen if "subjects_json" not in r]
        if not partial:
            return chosen
        cur = await self.conn.execute(f"SELECT {SEARCH_COLS} FROM tutors t WHERE tutor_id = ANY(%s)", (partial,))
        whole = {r["tutor_id"]: r for r in await cur.fetchall()}
        return [
            r if "subjects_json" in r else whole[r["tutor_id"]]
            for r in chosen
            if r["tutor_id"] in whole or "subjects_json" in r
        ]


class _Plan(msgspec.Struct, frozen=True):
    """The parts of a search's statement that stay the same from page to page."""

    where: list[str]
    params: list[Any]
    key: str  # the sort key's expression
    asc: bool
    window: tuple[datetime, datetime] | None  # candidates are checked against their taken time in it
    ranked: str = "tutors"  # the table the page's ids and keys come from
    exact: bool = False  # the key is read as float8 (the stored real of the term index)
    source: str = ""  # more FROM: the parsed text query
    source_params: list[Any] = []


def _plan(f: SearchFilters) -> _Plan:
    """Where the page's ids come from and how they are filtered and ordered."""
    where, params = _filtered(f)
    key, asc = SORT_KEYS[f.sort], f.sort == "price"
    if not f.q:
        return _Plan(where, params, key, asc, f.window)
    # The query is parsed once, in FROM: as `websearch_to_tsquery(%s)` in the WHERE and the rank, a prepared
    # statement's generic plan called it for every matching row, twice (0.9 ms of a 2 ms query).
    source, source_params = ", websearch_to_tsquery('simple', %s) AS tq", [f.q]
    alone = f.sort == "relevance" and f.window is None and where == ["listed"]
    if alone and (term := term_of(f.q)) is not None:
        # One plain word alone, by relevance: its page comes in rank order from the term index
        # (projections.tutors: `tutors_terms`, each listed tutor's words with the rank ts_rank gives
        # them), an index-only walk of the page instead of ranking every match.
        # The walk compares and orders the stored real itself (so the index serves it); the cursor takes
        # it as float8, exactly as the ranking path's ts_rank()::float8 (a real's shortest text would not
        # compare equal to it again).
        return _Plan(["t.lexeme = %s"], [term], "t.rank", asc, None, ranked="tutors_terms", exact=True)
    if alone:
        # q alone, by relevance: the ranking reads the narrow table of listed tutors' vectors
        # (projections.tutors: `tutors_search`), a few pages rather than one whole row's page per match.
        return _Plan(
            ["t.search @@ tq"], params, key, asc, None, "tutors_search", source=source, source_params=source_params
        )
    where.append("t.search @@ tq")
    return _Plan(where, params, key, asc, f.window, source=source, source_params=source_params)


def _filtered(f: SearchFilters) -> tuple[list[str], list[Any]]:
    """The filters' conditions on `tutors` (all of them in the sort indexes) and their parameters."""
    where: list[str] = ["listed"]
    params: list[Any] = []
    if f.subject:
        where.append("%s = ANY(subject_ids)")
        params.append(f.subject)
    # Under another sort than price, the range is checked inside the sort's index walk, written so that the
    # price index cannot serve it: a prepared statement's generic plan guesses a parameterised range small and
    # would read all of it from the price index and sort it (1,100 rows for a $15 range) instead.
    price = "hourly_amount" if f.sort == "price" else "(hourly_amount + 0)"
    if f.min_price is not None:
        where.append(f"{price} >= %s")
        params.append(f.min_price)
    if f.max_price is not None:
        where.append(f"{price} <= %s")
        params.append(f.max_price)
    if f.min_rating is not None:
        where.append("rating_avg >= %s")
        params.append(f.min_rating)
    if f.window is not None and (cover := window_cover(*f.window)) is not None:
        # Only tutors whose weekly rules can start a one-hour lesson in the window (or who have one-off
        # openings) are worth working out exactly (TutorSearch.page).
        where.append("(has_openings OR hour_starts_utc && %s::int4multirange)")
        params.append("{" + ",".join(f"[{a},{b})" for a, b in cover) + "}")
    return where, params


def window_first_page(n: int, span: timedelta) -> int:
    """How many candidates the first page of a window search reads (whole rows; later pages read 3n, narrow).
    Most candidates that pass the SQL start-cover check of a long window have a free hour in it, fewer of a short
    one (measured in bench/search.py: a day's window 96 %, 3 hours 78 %): a few more than asked for, or twice
    as many."""
    return n + 10 if span >= timedelta(hours=12) else 2 * n


def _pairs(flat: list[datetime]) -> list[Interval]:
    """[s1, s2, ..., e1, e2, ...] (starts then ends, as the window_busy column reads) -> [(s1, e1), ...]."""
    half = len(flat) // 2
    return list(zip(flat[:half], flat[half:], strict=True))
