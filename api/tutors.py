"""Tutors as everyone sees them (search, profile, slots) and the admin approval queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post

from api.deps import command, decode_cursor, encode_cursor, limit_of, query, reading, reading_async, services
from api.guards import ADMIN, BEARER
from api.params import instant
from api.schemas.common import Interval
from api.schemas.tutoring import (
    PublicTutorPage,
    TutorDetailOut,
    TutorProfileOut,
    TutorQueuePage,
    TutorSlotList,
    public_tutor_out,
    slot_out,
    tutor_detail_out,
    tutor_profile_out,
    tutor_queue_item_out,
)
from application.clock import Clock
from application.identity import Account
from application.tutoring import Tutoring
from domain.availability import window_cover
from domain.errors import NotFound, ValidationFailed
from projections.bookings import taken
from projections.runtime import POSITION_SQL, positions_async, stopped_position
from projections.tutors import Schedule, next_slots, slots_for, term_of

SEARCH_COLS = (
    "t.tutor_id, t.full_name, t.bio, t.languages, t.hourly_amount, t.currency,"
    # availability as JSON text: decoded and parsed once per tutor row version (schedule_of), not on every read
    " t.rating_avg, t.rating_count, t.availability_text AS availability, t.min_notice_minutes, t.updated_position,"
    # the public subjects as JSON text, in the tutor's order, decoded straight into Structs (public_tutor_out)
    " t.subjects_json,"
    # read in the same statement as the row, before any bookings: see next_slot_of
    " (SELECT c.position FROM tutor_calendar c WHERE c.tutor_id = t.tutor_id) AS calendar_position"
)
PUBLIC_COLS = SEARCH_COLS + ", t.experience"
HOUR = timedelta(minutes=60)  # search looks for free one-hour lessons
READS = ("tutors", "bookings")  # the read models search answers from
NEXT_SLOT_DAYS = 29  # next_slots looks 28 days ahead; a lesson starting on day 28 ends on day 29


BUSY_SQL = (
    "SELECT tutor_id, start_at, end_at FROM bookings WHERE tutor_id = ANY(%s) AND status IN"
    " ('pending', 'confirmed') AND end_at > %s AND start_at < %s"
)


def _busy(tutor_ids: list[Any], rows: list[dict[str, Any]]) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {t: [] for t in tutor_ids}
    for r in rows:
        out[r["tutor_id"]].append((r["start_at"], r["end_at"]))
    return out


def busy_by_tutor(conn: Any, tutor_ids: list[Any], frm: datetime, to: datetime) -> dict[Any, list[Any]]:
    """Pending/confirmed booking intervals of several tutors overlapping [frm, to) (one query)."""
    rows = conn.execute(BUSY_SQL, (tutor_ids, frm, to)).fetchall() if tutor_ids else []
    return _busy(tutor_ids, rows)


async def busy_by_tutor_async(conn: Any, tutor_ids: list[Any], frm: datetime, to: datetime) -> dict[Any, list[Any]]:
    """`busy_by_tutor` on an async connection."""
    rows = await (await conn.execute(BUSY_SQL, (tutor_ids, frm, to))).fetchall() if tutor_ids else []
    return _busy(tutor_ids, rows)


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


# tutor_id -> ((tutor row position, tutor calendar position), worked out at, next slot's start, the slot then)
_NEXT_SLOT_MEMO: dict[Any, tuple[tuple[int, int], datetime, datetime, Interval]] = {}
_NEXT_SLOT_MEMO_MAX = 100_000


def next_slot_of(conn: Any, rows: list[dict[str, Any]], now: datetime) -> dict[Any, Interval | None]:
    """Each row's next free one-hour slot (see `_remembered_slots`; one bookings query for the rest)."""
    out, todo = _remembered_slots(rows, now)
    if todo:
        busy = busy_by_tutor(conn, [r["tutor_id"] for r, _ in todo], now, now + timedelta(days=NEXT_SLOT_DAYS))
        _work_out_slots(out, todo, busy, now)
    return out


async def next_slot_of_async(conn: Any, rows: list[dict[str, Any]], now: datetime) -> dict[Any, Interval | None]:
    """`next_slot_of` on an async connection."""
    out, todo = _remembered_slots(rows, now)
    if todo:
        ids = [r["tutor_id"] for r, _ in todo]
        busy = await busy_by_tutor_async(conn, ids, now, now + timedelta(days=NEXT_SLOT_DAYS))
        _work_out_slots(out, todo, busy, now)
    return out


def _remembered_slots(
    rows: list[dict[str, Any]], now: datetime
) -> tuple[dict[Any, Interval | None], list[tuple[dict[str, Any], tuple[int, int]]]]:
    """The next free slots this process worked out before and that still hold, and the rows still to work out.

    A tutor's next free slot s, worked out at time T, is still the answer at any later `now` while the tutor's row
    (availability, notice) and taken time are unchanged and s starts no earlier than now + notice: nothing between
    then and s was free at T, and nothing was freed since. The bookings projection's `tutor_calendar` position
    changes with every booking requested, moved or ended; rows carry it (`calendar_position`, read in the same
    statement as the row and before the bookings), so a slot is never kept under a stamp newer than what it was
    worked out from."""
    out: dict[Any, Interval | None] = {}
    todo = []
    for r in rows:
        tid = r["tutor_id"]
        key = (r["updated_position"], r["calendar_position"] or 0)
        hit = _NEXT_SLOT_MEMO.get(tid)
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


def _work_out_slots(
    out: dict[Any, Interval | None],
    todo: list[tuple[dict[str, Any], tuple[int, int]]],
    busy: dict[Any, list[Any]],
    now: datetime,
) -> None:
    if len(_NEXT_SLOT_MEMO) + len(todo) > _NEXT_SLOT_MEMO_MAX:
        _NEXT_SLOT_MEMO.clear()  # bounded: start again rather than track recency on every hit
    for r, key in todo:
        tid = r["tutor_id"]
        nxt = next_slots(schedule_of(r), r["min_notice_minutes"], now, 1, taken=busy[tid])
        out[tid] = slot = slot_out(*nxt[0]) if nxt else None
        if nxt and slot:  # "none within 28 days" is not kept: the horizon moves with now
            _NEXT_SLOT_MEMO[tid] = (key, now, nxt[0][0], slot)


def window_first_page(n: int, span: timedelta) -> int:
    """How many candidates the first page of a window search reads (whole rows; later pages read 3n, narrow).
    Most candidates that pass the SQL start-cover check of a long window have a free hour in it, fewer of a short
    one (measured in bench/search.py: a day's window 96 %, 3 hours 78 %): a few more than asked for, or twice
    as many."""
    return n + 10 if span >= timedelta(hours=12) else 2 * n


def _pairs(flat: list[datetime]) -> list[tuple[datetime, datetime]]:
    """[s1, s2, ..., e1, e2, ...] (starts then ends, as the window_busy column reads) -> [(s1, e1), ...]."""
    half = len(flat) // 2
    return list(zip(flat[:half], flat[half:], strict=True))


class PublicTutorsController(Controller):
    """Anyone finds listed tutors (approved, with an open account)."""

    path = "/tutors"
    tags = ["tutors"]

    @get("/")
    async def search(
        self,
        request: Request[Any, Any, Any],
        subject: UUID | None = None,
        min_price: int | None = None,
        max_price: int | None = None,
        min_rating: float | None = None,
        q: str | None = None,
        sort: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Response[PublicTutorPage]:
        """Approved tutors; filters subject, price, rating, availability window, full-text q; sorts rating,
        price, relevance; keyset pages."""
        n = limit_of(limit)
        sort = sort or ("relevance" if q else "rating")
        if sort not in ("rating", "price", "relevance"):
            raise ValidationFailed([("sort", "rating, price or relevance")])
        if sort == "relevance" and not q:
            raise ValidationFailed([("sort", "relevance needs q")])
        frm = instant("available_from", request.query_params.get("available_from"))
        to = instant("available_to", request.query_params.get("available_to"))
        if (frm is None) != (to is None) or (frm and to and (to <= frm or to - frm > timedelta(days=31))):
            raise ValidationFailed([("available_to", "give both bounds, at most 31 days apart")])
        where: list[str] = ["listed"]
        params: list[Any] = []
        if subject:
            where.append("%s = ANY(subject_ids)")
            params.append(subject)
        # Under another sort than price, the range is checked inside the sort's index walk, written so that the
        # price index cannot serve it: a prepared statement's generic plan guesses a parameterised range small and
        # would read all of it from the price index and sort it (1,100 rows for a $15 range) instead.
        price = "hourly_amount" if sort == "price" else "(hourly_amount + 0)"
        if min_price is not None:
            where.append(f"{price} >= %s")
            params.append(min_price)
        if max_price is not None:
            where.append(f"{price} <= %s")
            params.append(max_price)
        if min_rating is not None:
            where.append("rating_avg >= %s")
            params.append(min_rating)
        key = {
            "rating": "coalesce(rating_avg, -1)",
            "price": "hourly_amount",
            "relevance": "ts_rank(t.search, tq)::float8",
        }[sort]
        if frm is not None and to is not None and (cover := window_cover(frm, to)) is not None:
            # Only tutors whose weekly rules can start a one-hour lesson in the window (or who have one-off
            # openings) are worth working out exactly below.
            where.append("(has_openings OR hour_starts_utc && %s::int4multirange)")
            params.append("{" + ",".join(f"[{a},{b})" for a, b in cover) + "}")
        ranked, exact = "tutors", False
        # The query is parsed once, in FROM: as `websearch_to_tsquery(%s)` in the WHERE and the rank, a prepared
        # statement's generic plan called it for every matching row, twice (0.9 ms of a 2 ms query).
        source, source_params = (", websearch_to_tsquery('simple', %s) AS tq", [q]) if q else ("", [])
        if q:
            alone = sort == "relevance" and frm is None and where == ["listed"]
            if alone and (term := term_of(q)) is not None:
                # One plain word alone, by relevance: its page comes in rank order from the term index
                # (projections.tutors: `tutors_terms`, each listed tutor's words with the rank ts_rank gives
                # them), an index-only walk of the page instead of ranking every match.
                ranked, where, params, key = "tutors_terms", ["t.lexeme = %s"], [term], "t.rank"
                source, source_params = "", []
                # The walk compares and orders the stored real itself (so the index serves it); the cursor takes
                # it as float8, exactly as the ranking path's ts_rank()::float8 (a real's shortest text would not
                # compare equal to it again).
                exact = True
            elif alone:
                # q alone, by relevance: the ranking reads the narrow table of listed tutors' vectors
                # (projections.tutors: `tutors_search`), a few pages rather than one whole row's page per match.
                ranked, where = "tutors_search", ["t.search @@ tq"]
            else:
                where.append("t.search @@ tq")
        asc = sort == "price"

        async def page(after: list[Any] | None, size: int, whole: bool = True) -> list[dict[str, Any]]:
            w, p = list(where), list(params)
            if after is not None:
                w.append(f"({key}, t.tutor_id) {'>' if asc else '<'} (%s, %s::uuid)")
                p.extend(after)
            order = "ASC" if asc else "DESC"
            cols, col_params = SEARCH_COLS, []
            if frm is not None and to is not None:
                # Candidates are checked in Python against their taken intervals in the window (same statement).
                # The first page reads whole rows; later, larger pages only what the check needs, and the rows
                # chosen from them are read whole afterwards.
                narrow = "t.tutor_id, t.availability_text AS availability, t.min_notice_minutes, t.updated_position"
                cols = (SEARCH_COLS if whole else narrow) + (
                    ", (SELECT coalesce(array_agg(b.start_at), '{}') || coalesce(array_agg(b.end_at), '{}')"
                    " FROM bookings b WHERE b.tutor_id = t.tutor_id AND b.status IN ('pending', 'confirmed')"
                    " AND b.end_at > %s AND b.start_at < %s) AS window_busy"
                )
                col_params = [frm, to + HOUR]
            # Two steps in one statement: the page's ids and sort keys from the sort's index (an index-only walk:
            # every filtered column is in it; relevance walks the term index or ranks the matches of `ranked`),
            # then those rows read whole. Filters that pass over many rows then read no table pages for them.
            top = (
                f"SELECT t.tutor_id, {key}{'::float8' if exact else ''} AS sort_key FROM {ranked} t{source}"
                f" WHERE {' AND '.join(w)} ORDER BY {key} {order}, t.tutor_id {order} LIMIT %s"
            )
            # without X-Min-Position, the first page also reads the position its rows are as of
            seen, seen_params = (f", {POSITION_SQL} AS seen_position", [list(READS)]) if pos is None else ("", [])
            sql = (
                f"SELECT {cols}, top.sort_key{seen} FROM ({top}) top"
                f" JOIN tutors t ON t.tutor_id = top.tutor_id ORDER BY top.sort_key {order}, t.tutor_id {order}"
            )
            cur = await conn.execute(sql, (*col_params, *seen_params, *source_params, *p, size))
            return list(await cur.fetchall())

        now = services(request.app.state).clock.now()
        decoded = decode_cursor(cursor, tuple[float, UUID])
        last: list[Any] | None = list(decoded) if decoded else None
        last_row: dict[str, Any] | None = None  # the last row scanned, the next page's keyset start
        more = False
        # On the event loop with the async pool (Services.async_reads): a few short statements and a little Python.
        async with reading_async(request, READS) as (conn, pos):
            size = n + 1 if frm is None or to is None else window_first_page(n, to - frm)
            scanned = 0
            chosen: list[dict[str, Any]] = []
            first = True
            while not more:
                if last_row is not None:
                    last = [last_row["sort_key"], str(last_row["tutor_id"])]
                rows = await page(last, size, whole=first)
                if pos is None:  # the first page's position (X-Projection-Position)
                    pos = (
                        stopped_position(rows[0]["seen_position"], READS)
                        if rows
                        else await positions_async(conn, READS)
                    )
                first = False
                for r in rows:
                    if len(chosen) == n:
                        more = True
                        break
                    scanned += 1
                    last_row = r
                    if (
                        frm is not None
                        and to is not None
                        and not slots_for(
                            schedule_of(r),
                            r["min_notice_minutes"],
                            frm,
                            to,
                            HOUR,
                            now,
                            _pairs(r["window_busy"]),
                            limit=1,
                        )
                    ):
                        continue
                    chosen.append(r)
                if len(rows) < size:
                    break
                size = max(50, n * 3)
                if scanned >= 2000:  # bound the work of one page under a narrow availability filter
                    more = True
                    break
            if partial := [r["tutor_id"] for r in chosen if "subjects_json" not in r]:
                cur = await conn.execute(f"SELECT {SEARCH_COLS} FROM tutors t WHERE tutor_id = ANY(%s)", (partial,))
                whole = {r["tutor_id"]: r for r in await cur.fetchall()}
                chosen = [
                    r if "subjects_json" in r else whole[r["tutor_id"]]
                    for r in chosen
                    if r["tutor_id"] in whole or "subjects_json" in r
                ]
            nexts = await next_slot_of_async(conn, chosen, now)
            items = [public_tutor_out(r, nexts[r["tutor_id"]]) for r in chosen]
        if last_row is not None:
            last = [last_row["sort_key"], str(last_row["tutor_id"])]
        next_cursor = encode_cursor(last) if more and last else None
        assert pos is not None
        return query(PublicTutorPage(items=items, next_cursor=next_cursor), pos)

    @get("/{tutor_id:uuid}", sync_to_thread=True)
    def detail(self, request: Request[Any, Any, Any], clock: Clock, tutor_id: UUID) -> Response[TutorDetailOut]:
        """A listed tutor's public profile with experience and next free slots."""
        now = clock.now()
        with reading(request, ("tutors", "bookings")) as (conn, pos):
            row = conn.execute(
                f"SELECT {PUBLIC_COLS} FROM tutors t WHERE tutor_id = %s AND listed", (tutor_id,)
            ).fetchone()
            if row is None:
                raise NotFound("no such tutor")
            busy = busy_by_tutor(conn, [tutor_id], now, now + timedelta(days=NEXT_SLOT_DAYS))[tutor_id]
            reviews = conn.execute(
                "SELECT booking_id, rating, text, created_at, response_text, response_at FROM tutor_reviews"
                " WHERE tutor_id = %s ORDER BY created_at DESC LIMIT 20",
                (tutor_id,),
            ).fetchall()
        slots10 = next_slots(schedule_of(row), row["min_notice_minutes"], now, 10, taken=busy)
        return query(tutor_detail_out(row, slots10, reviews), pos)

    @get("/{tutor_id:uuid}/slots", sync_to_thread=True)
    def slots(
        self, request: Request[Any, Any, Any], clock: Clock, tutor_id: UUID, duration_minutes: int = 60
    ) -> Response[TutorSlotList]:
        """Bookable start times in [from, to) (at most 31 days) for a 30/60/90/120-minute lesson."""
        if duration_minutes not in (30, 60, 90, 120):
            raise ValidationFailed([("duration_minutes", "30, 60, 90 or 120")])
        frm = instant("from", request.query_params.get("from"))
        to = instant("to", request.query_params.get("to"))
        if frm is None or to is None:
            raise ValidationFailed([("from", "from and to are required")])
        if to <= frm or to - frm > timedelta(days=31):
            raise ValidationFailed([("to", "after from, at most 31 days later")])
        now = clock.now()
        with reading(request, ("tutors", "bookings")) as (conn, pos):
            row = conn.execute(
                "SELECT availability, min_notice_minutes FROM tutors WHERE tutor_id = %s AND listed",
                (tutor_id,),
            ).fetchone()
            busy = taken(conn, tutor_id, frm - timedelta(hours=3), to + timedelta(hours=3)) if row else []
        if row is None:
            raise NotFound("no such tutor")
        found = slots_for(
            row["availability"] or {},
            row["min_notice_minutes"],
            frm,
            to,
            timedelta(minutes=duration_minutes),
            now,
            busy,
        )
        return query(TutorSlotList(items=[slot_out(a, b) for a, b in found]), pos)


class Decision(msgspec.Struct):
    """Feedback or reason for a decision."""

    feedback: str = ""
    reason: str = ""


class AdminTutorsController(Controller):
    """Admins work the approval queue."""

    path = "/admin/tutors"
    guards = ADMIN
    tags = ["admin", "tutoring"]
    security = BEARER

    @get("/", sync_to_thread=True)
    def queue(
        self,
        request: Request[Account, Any, Any],
        tutoring: Tutoring,
        status: str = "pending_approval",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Response[TutorQueuePage]:
        """Tutors by status (default: the approval queue, oldest submission first), with their documents."""
        actor = request.user
        if status not in ("draft", "pending_approval", "approved", "rejected", "suspended"):
            raise ValidationFailed([("status", "a tutor profile status")])
        n = limit_of(limit)
        where: list[str] = ["status = %s"]
        params: list[Any] = [status]
        after = decode_cursor(cursor, tuple[datetime, UUID])
        if after is not None:
            where.append("(coalesce(submitted_at, 'epoch'::timestamptz), tutor_id) > (%s::timestamptz, %s::uuid)")
            params.extend(after)
        with reading(request, ("tutors",), actor) as (conn, pos):
            rows = conn.execute(
                "SELECT tutor_id, full_name, email, submitted_at, completeness, documents, status, feedback"
                f" FROM tutors WHERE {' AND '.join(where)}"
                " ORDER BY coalesce(submitted_at, 'epoch'::timestamptz), tutor_id LIMIT %s",
                (*params, n + 1),
            ).fetchall()
        items = [tutor_queue_item_out(r, tutoring) for r in rows[:n]]
        last = rows[n - 1] if len(rows) > n else None
        next_cursor = (
            encode_cursor(
                [(last["submitted_at"] or datetime(1970, 1, 1, tzinfo=UTC)).isoformat(), str(last["tutor_id"])]
            )
            if last
            else None
        )
        return query(TutorQueuePage(items=items, next_cursor=next_cursor), pos)

    def _decide(
        self, request: Request[Any, Any, Any], tutoring: Tutoring, tutor_id: UUID, action: str, text: str = ""
    ) -> Response[TutorProfileOut]:
        view, position = tutoring.decide(tutor_id, action, text)
        return command(request, tutor_profile_out(view), position)

    @post("/{tutor_id:uuid}/approve", status_code=200, sync_to_thread=True)
    def approve(self, request: Request[Any, Any, Any], tutoring: Tutoring, tutor_id: UUID) -> Response[TutorProfileOut]:
        """Approve a pending profile."""
        return self._decide(request, tutoring, tutor_id, "approve")

    @post("/{tutor_id:uuid}/reject", status_code=200, sync_to_thread=True)
    def reject(
        self, request: Request[Any, Any, Any], tutoring: Tutoring, tutor_id: UUID, data: Decision
    ) -> Response[TutorProfileOut]:
        """Reject a pending profile with feedback."""
        return self._decide(request, tutoring, tutor_id, "reject", data.feedback)

    @post("/{tutor_id:uuid}/suspend", status_code=200, sync_to_thread=True)
    def suspend(
        self, request: Request[Any, Any, Any], tutoring: Tutoring, tutor_id: UUID, data: Decision
    ) -> Response[TutorProfileOut]:
        """Hide an approved tutor from search and booking."""
        return self._decide(request, tutoring, tutor_id, "suspend", data.reason)

    @post("/{tutor_id:uuid}/reinstate", status_code=200, sync_to_thread=True)
    def reinstate(
        self, request: Request[Any, Any, Any], tutoring: Tutoring, tutor_id: UUID
    ) -> Response[TutorProfileOut]:
        """Undo a suspension."""
        return self._decide(request, tutoring, tutor_id, "reinstate")
