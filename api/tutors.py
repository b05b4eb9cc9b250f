"""Tutors as everyone sees them (search, profile, slots) and the admin approval queue."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post

from api.deps import command, decode_cursor, encode_cursor, limit_of, query, reading, reading_async, services
from api.guards import ADMIN, BEARER
from api.params import NewestFirst, instant
from api.schemas.documents import AdminTutorDocumentOut, admin_document_out
from api.schemas.tutoring import (
    AdminTutorOut,
    PublicTutorPage,
    TutorDetailOut,
    TutorProfileOut,
    TutorQueuePage,
    TutorReviewPage,
    TutorSlotList,
    admin_tutor_out,
    public_tutor_out,
    slot_out,
    tutor_detail_out,
    tutor_profile_out,
    tutor_queue_item_out,
    tutor_review_page,
)
from application.accounts import Account
from application.clock import Clock
from application.tutoring import Tutoring
from domain.documents import Document
from domain.errors import NotFound, ValidationFailed
from projections.bookings import taken
from projections.schedule import next_slots, slots_for
from projections.search import PUBLIC_COLS, READS, SORTS, SearchFilters, TutorSearch
from projections.search_memos import NEXT_SLOT_DAYS, NextSlots, busy_by_tutor, schedule_of

REVIEWS = NewestFirst("created_at", "booking_id")
# The reviews on the tutor's public page: the first page of GET /tutors/{id}/reviews.
DETAIL_REVIEWS = 20


def reviews_page(
    conn: Any, tutor_id: UUID, after: tuple[str, tuple[Any, ...]], n: int
) -> tuple[Sequence[Any], str | None]:
    """A page of a tutor's reviews newest first (`after`: REVIEWS.after of the request's cursor) and the next
    page's cursor: the public list, the tutor's own and the tutor page's latest."""
    condition, params = after
    rows = conn.execute(
        "SELECT booking_id, rating, text, created_at, response_text, response_at FROM tutor_reviews"
        f" WHERE tutor_id = %s AND {condition} ORDER BY {REVIEWS.order} LIMIT %s",
        (tutor_id, *params, n + 1),
    ).fetchall()
    return REVIEWS.page(rows, n)


# Each tutor's next free slot, kept by this API process in the wire form (see NextSlots): search and the favorites
# list (api.students) show the same tutors again and again.
NEXT_SLOTS = NextSlots(slot_out)


def _search_filters(
    request: Request[Any, Any, Any],
    subject: UUID | None,
    min_price: int | None,
    max_price: int | None,
    min_rating: float | None,
    q: str | None,
    sort: str | None,
) -> SearchFilters:
    """The search's parameters checked, in the order the contract's problems name them (the first wrong one)."""
    sort = sort or ("relevance" if q else "rating")
    if sort not in SORTS:
        raise ValidationFailed([("sort", "rating, price or relevance")])
    if sort == "relevance" and not q:
        raise ValidationFailed([("sort", "relevance needs q")])
    frm = instant("available_from", request.query_params.get("available_from"))
    to = instant("available_to", request.query_params.get("available_to"))
    if (frm is None) != (to is None) or (frm and to and (to <= frm or to - frm > timedelta(days=31))):
        raise ValidationFailed([("available_to", "give both bounds, at most 31 days apart")])
    window = (frm, to) if frm is not None and to is not None else None
    return SearchFilters(sort, subject, min_price, max_price, min_rating, q, window)


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
        filters = _search_filters(request, subject, min_price, max_price, min_rating, q, sort)
        now = services(request.app.state).clock.now()
        after = decode_cursor(cursor, tuple[float, UUID])
        # On the event loop with the async pool (Services.async_reads): a few short statements and a little Python.
        async with reading_async(request, READS) as (conn, pos):
            found = await TutorSearch(conn, now, NEXT_SLOTS, pos).page(filters, after, n)
        items = [public_tutor_out(r, found.next_slots[r["tutor_id"]]) for r in found.rows]
        next_cursor = encode_cursor(found.after) if found.after else None
        return query(PublicTutorPage(items=items, next_cursor=next_cursor), found.position)

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
            reviews, _ = reviews_page(conn, tutor_id, REVIEWS.after(None), DETAIL_REVIEWS)
        slots10 = next_slots(schedule_of(row), row["min_notice_minutes"], now, 10, taken=busy)
        return query(tutor_detail_out(row, slots10, reviews), pos)

    @get("/{tutor_id:uuid}/reviews", sync_to_thread=True)
    def reviews(
        self, request: Request[Any, Any, Any], tutor_id: UUID, limit: int | None = None, cursor: str | None = None
    ) -> Response[TutorReviewPage]:
        """Every review of a listed tutor, newest first, paged."""
        n = limit_of(limit)
        after = REVIEWS.after(cursor)
        with reading(request, ("tutors", "bookings")) as (conn, pos):
            if conn.execute("SELECT 1 FROM tutors WHERE tutor_id = %s AND listed", (tutor_id,)).fetchone() is None:
                raise NotFound("no such tutor")
            rows, next_cursor = reviews_page(conn, tutor_id, after, n)
        return query(tutor_review_page(rows, next_cursor), pos)

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


def tutor_for_review(conn: Any, tutor_id: UUID, document_url: Callable[[Document], str]) -> AdminTutorOut:
    """A tutor's whole profile for an admin's review, from the `tutors` read model (404 when there is none): the
    API's GET /admin/tutors/{id} and the console's page both answer with this. `document_url` presigns a download
    (Tutoring.document_url)."""
    row = conn.execute(
        "SELECT tutor_id, full_name, email, status, completeness, feedback, submitted_at, account_open, listed, bio,"
        " location, languages, experience, subject_ids, hourly_amount, currency, availability, auto_confirm,"
        " min_notice_minutes, rating_avg, rating_count, documents FROM tutors WHERE tutor_id = %s",
        (tutor_id,),
    ).fetchone()
    if row is None:
        raise NotFound("no such tutor")
    subjects = conn.execute(
        "SELECT subject_id, name, category, active FROM tutors_subject_names WHERE subject_id = ANY(%s)"
        " ORDER BY array_position(%s::uuid[], subject_id)",
        (row["subject_ids"], row["subject_ids"]),
    ).fetchall()
    return admin_tutor_out(row, subjects, document_url)


def tutor_queue(conn: Any, status: str, n: int, cursor: str | None, tutoring: Tutoring) -> TutorQueuePage:
    """Tutors in `status`, oldest submission first, with their documents (GET /admin/tutors and the console's
    approval queue)."""
    if status not in ("draft", "pending_approval", "approved", "rejected", "suspended"):
        raise ValidationFailed([("status", "a tutor profile status")])
    where: list[str] = ["status = %s"]
    params: list[Any] = [status]
    after = decode_cursor(cursor, tuple[datetime, UUID])
    if after is not None:
        where.append("(coalesce(submitted_at, 'epoch'::timestamptz), tutor_id) > (%s::timestamptz, %s::uuid)")
        params.extend(after)
    rows = conn.execute(
        "SELECT tutor_id, full_name, email, submitted_at, completeness, documents, status, feedback"
        f" FROM tutors WHERE {' AND '.join(where)}"
        " ORDER BY coalesce(submitted_at, 'epoch'::timestamptz), tutor_id LIMIT %s",
        (*params, n + 1),
    ).fetchall()
    items = [tutor_queue_item_out(r, tutoring) for r in rows[:n]]
    last = rows[n - 1] if len(rows) > n else None
    next_cursor = (
        encode_cursor([(last["submitted_at"] or datetime(1970, 1, 1, tzinfo=UTC)).isoformat(), str(last["tutor_id"])])
        if last
        else None
    )
    return TutorQueuePage(items=items, next_cursor=next_cursor)


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
        n = limit_of(limit)
        with reading(request, ("tutors",), request.user) as (conn, pos):
            return query(tutor_queue(conn, status, n, cursor, tutoring), pos)

    @get("/{tutor_id:uuid}", sync_to_thread=True)
    def review(
        self, request: Request[Account, Any, Any], tutoring: Tutoring, tutor_id: UUID
    ) -> Response[AdminTutorOut]:
        """A tutor's whole profile for review, with documents' download URLs and verification (any status)."""
        with reading(request, ("tutors",), request.user) as (conn, pos):
            body = tutor_for_review(conn, tutor_id, tutoring.document_url)
        return query(body, pos)

    def _decide(
        self, request: Request[Any, Any, Any], tutoring: Tutoring, tutor_id: UUID, action: str, text: str = ""
    ) -> Response[TutorProfileOut]:
        view, position = tutoring.decide(tutor_id, action, text)
        return command(tutor_profile_out(view), position)

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

    @post("/{tutor_id:uuid}/documents/{document_id:uuid}/verify", status_code=200, sync_to_thread=True)
    def verify_document(
        self, request: Request[Account, Any, Any], tutoring: Tutoring, tutor_id: UUID, document_id: UUID
    ) -> Response[AdminTutorDocumentOut]:
        """Mark an uploaded document verified (again: no change); unknown 404, not yet uploaded 409."""
        doc, position = tutoring.verify_document(request.user, tutor_id, document_id)
        return command(admin_document_out(doc, tutoring.document_url), position)
