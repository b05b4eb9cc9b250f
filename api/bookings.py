"""Bookings: request, the lifecycle actions, lists, reviews; notifications; the tutor's calendar."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post

from api.deps import command, decode_cursor, encode_cursor, limit_of, query, reading, services
from api.guards import BEARER, PARTIES, STUDENT, TUTOR, USER
from api.params import instant
from api.schemas.bookings import (
    BookingOut,
    BookingPage,
    CancelOut,
    NotificationPage,
    NotificationReadOut,
    ReviewOut,
    Viewer,
    booking_from_row,
    booking_of,
    notification_from_row,
    review_of,
)
from application.accounts import Account
from application.clock import Clock
from application.scheduling import Scheduling
from domain.booking import Booking, BookingStatus
from domain.errors import NotFound, ValidationFailed

STATUSES = tuple(s.value for s in BookingStatus)  # the `status` filter's choices, in the lifecycle's order
COLS = (
    "booking_id, tutor_id, student_id, subject_id, start_at, end_at, duration_minutes, status, note, policy,"
    " created_at, pending_reschedule, meeting_secret"
)


class BookingIn(msgspec.Struct):
    """POST /bookings."""

    tutor_id: UUID
    subject_id: UUID
    start: datetime
    duration_minutes: Literal[30, 60, 90, 120]
    note: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class ReasonIn(msgspec.Struct):
    """POST /bookings/{id}/cancel."""

    reason: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class RescheduleIn(msgspec.Struct):
    """POST /bookings/{id}/reschedule."""

    start: datetime


class ReviewIn(msgspec.Struct):
    """POST /bookings/{id}/review."""

    rating: Annotated[int, msgspec.Meta(ge=1, le=5)]
    text: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class ResponseIn(msgspec.Struct):
    """POST /bookings/{id}/review/response."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


def viewer(request: Request[Account, Any, Any]) -> Viewer:
    """The caller, as the booking shape needs them (their lessons' meeting links)."""
    return Viewer(request.user.user_id, services(request.app.state).settings.meeting_url_template)


def _answer(request: Request[Account, Any, Any], done: tuple[Booking, int]) -> Response[BookingOut]:
    """A lifecycle command's answer: the booking as saved."""
    booking, position = done
    return command(booking_of(booking, viewer(request)), position)


def _aware(name: str, t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValidationFailed([(name, "an instant with an offset")])
    return t


class BookingsController(Controller):
    """Students request; tutors confirm; both cancel, reschedule and follow their lessons."""

    path = "/bookings"
    tags = ["bookings"]
    security = BEARER

    @post("/", status_code=201, sync_to_thread=True, guards=STUDENT)
    def request_booking(
        self, request: Request[Account, Any, Any], scheduling: Scheduling, data: BookingIn
    ) -> Response[BookingOut]:
        """Book a tutor: one atomic write of the booking, the tutor's calendar and the student's credit hold."""
        booking, position = scheduling.request_booking(
            request.user, data.tutor_id, data.subject_id, _aware("start", data.start), data.duration_minutes,
            data.note,
        )  # fmt: skip
        return command(booking_of(booking, viewer(request)), position, 201)

    @get("/", sync_to_thread=True, guards=PARTIES)
    def list_bookings(
        self,
        request: Request[Account, Any, Any],
        status: str | None = None,
        role: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Response[BookingPage]:
        """The caller's bookings (as student or tutor), by start time; filter by status."""
        actor = request.user
        role = role or actor.role
        if role not in ("student", "tutor") or role != actor.role:
            raise ValidationFailed([("role", "your own role: student or tutor")])
        if status and status not in STATUSES:
            raise ValidationFailed([("status", ", ".join(STATUSES))])
        n = limit_of(limit)
        where = [f"{role}_id = %s"]
        params: list[Any] = [actor.user_id]
        if status:
            where.append("status = %s")
            params.append(status)
        after = decode_cursor(cursor, tuple[datetime, UUID])
        if after is not None:
            where.append("(start_at, booking_id) > (%s::timestamptz, %s::uuid)")
            params.extend(after)
        with reading(request, ("bookings",), actor) as (conn, pos):
            rows = conn.execute(
                f"SELECT {COLS} FROM bookings WHERE {' AND '.join(where)} ORDER BY start_at, booking_id LIMIT %s",
                (*params, n + 1),
            ).fetchall()
        last = rows[n - 1] if len(rows) > n else None
        nxt = encode_cursor([last["start_at"].isoformat(), str(last["booking_id"])]) if last else None
        you = viewer(request)
        return query(BookingPage([booking_from_row(r, you) for r in rows[:n]], nxt), pos)

    @get("/{booking_id:uuid}", sync_to_thread=True, guards=USER)
    def get_booking(self, request: Request[Account, Any, Any], booking_id: UUID) -> Response[BookingOut]:
        """One booking, for its student, its tutor or an admin."""
        actor = request.user
        with reading(request, ("bookings",), actor) as (conn, pos):
            row = conn.execute(f"SELECT {COLS} FROM bookings WHERE booking_id = %s", (booking_id,)).fetchone()
        if row is None or (actor.role != "admin" and actor.user_id not in (row["student_id"], row["tutor_id"])):
            raise NotFound("no such booking")
        return query(booking_from_row(row, viewer(request)), pos)

    @post("/{booking_id:uuid}/confirm", status_code=200, sync_to_thread=True, guards=TUTOR)
    def confirm(
        self, request: Request[Account, Any, Any], scheduling: Scheduling, booking_id: UUID
    ) -> Response[BookingOut]:
        """The tutor accepts a pending request."""
        return _answer(request, scheduling.confirm(request.user, booking_id))

    @post("/{booking_id:uuid}/decline", status_code=200, sync_to_thread=True, guards=TUTOR)
    def decline(
        self, request: Request[Account, Any, Any], scheduling: Scheduling, booking_id: UUID
    ) -> Response[BookingOut]:
        """The tutor turns down a pending request; the credit hold is released."""
        return _answer(request, scheduling.decline(request.user, booking_id))

    @post("/{booking_id:uuid}/cancel", status_code=200, sync_to_thread=True, guards=PARTIES)
    def cancel(
        self,
        request: Request[Account, Any, Any],
        scheduling: Scheduling,
        booking_id: UUID,
        data: ReasonIn | None = None,
    ) -> Response[CancelOut]:
        """Cancel; the response says what was refunded and forfeited under the booking's policy."""
        reason = data.reason if data else ""
        booking, position = scheduling.cancel(request.user, booking_id, reason)
        return command(
            CancelOut(booking_of(booking, viewer(request)), booking.refunded_minutes, booking.forfeited_minutes),
            position,
        )

    @post("/{booking_id:uuid}/reschedule", status_code=200, sync_to_thread=True, guards=PARTIES)
    def reschedule(
        self, request: Request[Account, Any, Any], scheduling: Scheduling, booking_id: UUID, data: RescheduleIn
    ) -> Response[BookingOut]:
        """Propose a new time for a confirmed booking."""
        start = _aware("start", data.start)
        return _answer(request, scheduling.propose(request.user, booking_id, start))

    @post("/{booking_id:uuid}/reschedule/accept", status_code=200, sync_to_thread=True, guards=PARTIES)
    def accept(
        self, request: Request[Account, Any, Any], scheduling: Scheduling, booking_id: UUID
    ) -> Response[BookingOut]:
        """The other party accepts the proposal: the booking moves."""
        return _answer(request, scheduling.answer(request.user, booking_id, accept=True))

    @post("/{booking_id:uuid}/reschedule/reject", status_code=200, sync_to_thread=True, guards=PARTIES)
    def reject(
        self, request: Request[Account, Any, Any], scheduling: Scheduling, booking_id: UUID
    ) -> Response[BookingOut]:
        """The other party rejects the proposal."""
        return _answer(request, scheduling.answer(request.user, booking_id, accept=False))

    @post("/{booking_id:uuid}/complete", status_code=200, sync_to_thread=True, guards=TUTOR)
    def complete(
        self, request: Request[Account, Any, Any], scheduling: Scheduling, booking_id: UUID
    ) -> Response[BookingOut]:
        """The tutor marks the lesson done after its end; the hold is captured."""
        return _answer(request, scheduling.complete(request.user, booking_id))

    @post("/{booking_id:uuid}/no-show", status_code=200, sync_to_thread=True, guards=TUTOR)
    def no_show(
        self, request: Request[Account, Any, Any], scheduling: Scheduling, booking_id: UUID
    ) -> Response[BookingOut]:
        """The tutor marks the student absent (from start + 10 minutes); the no-show policy decides the credit."""
        return _answer(request, scheduling.no_show(request.user, booking_id))

    @post("/{booking_id:uuid}/review", status_code=201, sync_to_thread=True, guards=STUDENT)
    def review(
        self, request: Request[Account, Any, Any], scheduling: Scheduling, booking_id: UUID, data: ReviewIn
    ) -> Response[ReviewOut]:
        """The student reviews a completed lesson once."""
        booking, position = scheduling.review(request.user, booking_id, data.rating, data.text)
        return command(review_of(booking), position, 201)

    @post("/{booking_id:uuid}/review/response", status_code=201, sync_to_thread=True, guards=TUTOR)
    def respond(
        self, request: Request[Account, Any, Any], scheduling: Scheduling, booking_id: UUID, data: ResponseIn
    ) -> Response[ReviewOut]:
        """The tutor answers the review once."""
        booking, position = scheduling.respond(request.user, booking_id, data.text)
        return command(review_of(booking), position, 201)


class ReadIn(msgspec.Struct):
    """Optional body of POST /notifications/{id}/read."""


class NotificationsController(Controller):
    """Each user's inbox."""

    path = "/notifications"
    guards = USER
    tags = ["notifications"]
    security = BEARER

    @get("/", sync_to_thread=True)
    def inbox(
        self,
        request: Request[Account, Any, Any],
        unread: bool | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Response[NotificationPage]:
        """Newest first."""
        actor = request.user
        n = limit_of(limit)
        where = ["user_id = %s"]
        params: list[Any] = [actor.user_id]
        if unread:
            where.append("NOT read")
        after = decode_cursor(cursor, int)
        if after is not None:
            where.append("position < %s")
            params.append(int(after))
        with reading(request, ("notifications",), actor) as (conn, pos):
            rows = conn.execute(
                "SELECT notification_id, type, created_at, read, data, position FROM notifications"
                f" WHERE {' AND '.join(where)} ORDER BY position DESC LIMIT %s",
                (*params, n + 1),
            ).fetchall()
        nxt = encode_cursor(rows[n - 1]["position"]) if len(rows) > n else None
        return query(NotificationPage([notification_from_row(r) for r in rows[:n]], nxt), pos)

    @post("/{notification_id:uuid}/read", status_code=200, sync_to_thread=True)
    def mark_read(
        self, request: Request[Account, Any, Any], scheduling: Scheduling, notification_id: UUID
    ) -> Response[NotificationReadOut]:
        """Mark one of your notifications read."""
        actor = request.user
        with reading(request, ("notifications",), actor) as (conn, _pos):
            row = conn.execute(
                "SELECT 1 FROM notifications WHERE notification_id = %s AND user_id = %s",
                (notification_id, actor.user_id),
            ).fetchone()
        if row is None:
            raise NotFound("no such notification")
        position = scheduling.mark_read(actor.user_id, [str(notification_id)])
        return command(NotificationReadOut(notification_id, True), position)


class TutorCalendarController(Controller):
    """The tutor's calendar view."""

    path = "/tutor/calendar"
    guards = TUTOR
    tags = ["bookings"]
    security = BEARER

    @get("/", sync_to_thread=True)
    def calendar(self, request: Request[Account, Any, Any], clock: Clock) -> Response[BookingPage]:
        """The caller's bookings in [from, to) (default: the next 14 days), any status."""
        actor = request.user
        now = clock.now()
        frm = instant("from", request.query_params.get("from")) or now
        to = instant("to", request.query_params.get("to")) or frm + timedelta(days=14)
        if to <= frm or to - frm > timedelta(days=62):
            raise ValidationFailed([("to", "after from, at most 62 days later")])
        with reading(request, ("bookings",), actor) as (conn, pos):
            rows = conn.execute(
                f"SELECT {COLS} FROM bookings WHERE tutor_id = %s AND end_at > %s AND start_at < %s ORDER BY start_at",
                (actor.user_id, frm, to),
            ).fetchall()
        you = viewer(request)
        return query(BookingPage([booking_from_row(r, you) for r in rows], None), pos)
