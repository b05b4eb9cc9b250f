"""bookings: one row per booking (lists, calendar, analytics, taken slots, due work) and tutor reviews."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from domain.booking import Booking, completes_by_itself_at, lapses_at
from domain.inbox import Inbox
from projections.runner import Envelope, FoldedProjection, by_type, load_rows, replace_rows, topic_of

COLUMNS = (
    "booking_id",
    "student_id",
    "tutor_id",
    "subject_id",
    "start_at",
    "end_at",
    "duration_minutes",
    "status",
    "note",
    "policy",
    "created_at",
    "expires_at",
    "auto_complete_at",
    "pending_reschedule",
    "cancelled_by",
    "refunded_minutes",
    "forfeited_minutes",
    "reminded",
    "meeting_secret",
    "updated_position",
)
REVIEW_COLUMNS = ("booking_id", "tutor_id", "rating", "text", "created_at", "response_text", "response_at")
Row = dict[str, Any]


class BookingBatch:
    """The booking and review rows one batch touches, read once (runner.load_rows); the handlers (ON_EVENT) apply
    the events to them in memory, one event each, in order, and `write` puts them back."""

    def __init__(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        self.cur, self.t = cur, t
        # tutor -> position of the newest change to the tutor's busy time: search's next-slot memo
        # (projections.search) is valid while the tutor's `tutor_calendar.position` stays the same
        self.moved: dict[Any, int] = {}
        born = {e.aggregate_id for e in events if e.type == "Booking.Requested"}
        reminded = {UUID(str(e.data["booking_id"])) for e in events if e.type == "Inbox.Reminded"}
        touched = {e.aggregate_id for e in events if e.type.startswith("Booking.")} | reminded
        self.rows = load_rows(cur, t["bookings"], COLUMNS, touched - born)
        self.stored = set(self.rows)
        reviewed = {e.aggregate_id for e in events if e.type == "Booking.Reviewed"}
        answered = {e.aggregate_id for e in events if e.type == "Booking.ReviewResponded"}
        self.reviews = load_rows(cur, t["tutor_reviews"], REVIEW_COLUMNS, answered - reviewed)
        self.stored_reviews = set(self.reviews)

    def requested(self, e: Envelope) -> None:
        self.rows[e.aggregate_id] = _requested(e.aggregate_id, e.data, e.position)
        self.moved[UUID(str(e.data["tutor_id"]))] = e.position

    def reviewed(self, e: Envelope) -> None:
        self.reviews[e.aggregate_id] = _review(e.aggregate_id, e.data)

    def review_responded(self, e: Envelope) -> None:
        if (review := self.reviews.get(e.aggregate_id)) is not None:
            review.update(response_text=e.data["text"], response_at=e.data["created_at"])

    def reminded(self, e: Envelope) -> None:
        if (row := self.rows.get(UUID(str(e.data["booking_id"])))) is not None:
            row["reminded"] = True

    def write(self) -> None:
        """The rows back (one DELETE and one COPY per table) and the tutors whose busy time changed."""
        out = (
            {
                **r,
                "policy": Jsonb(r["policy"]),
                "pending_reschedule": None if r["pending_reschedule"] is None else Jsonb(r["pending_reschedule"]),
            }
            for r in self.rows.values()
        )
        replace_rows(self.cur, self.t["bookings"], COLUMNS, out, self.stored)
        if self.reviews:
            replace_rows(self.cur, self.t["tutor_reviews"], REVIEW_COLUMNS, self.reviews.values(), self.stored_reviews)
        if self.moved:
            self.cur.execute(
                f"INSERT INTO {self.t['tutor_calendar']} (tutor_id, position)"
                " SELECT * FROM unnest(%s::uuid[], %s::int8[])"
                " ON CONFLICT (tutor_id) DO UPDATE SET position = excluded.position",
                (list(self.moved), list(self.moved.values())),
            )


def _requested(bid: Any, d: dict[str, Any], position: int) -> dict[str, Any]:
    """A new booking's row."""
    start = datetime.fromisoformat(d["start"])
    requested = datetime.fromisoformat(d["requested_at"])
    end = datetime.fromisoformat(d["end"])
    policy = d["policy"]
    return {
        "booking_id": bid,
        "student_id": d["student_id"],
        "tutor_id": d["tutor_id"],
        "subject_id": d["subject_id"],
        "start_at": start,
        "end_at": end,
        "duration_minutes": d["duration_minutes"],
        "status": "pending",
        "note": d["note"],
        "policy": policy,
        "created_at": requested,
        "expires_at": lapses_at(requested, start, policy),
        "auto_complete_at": completes_by_itself_at(end, policy),
        "pending_reschedule": None,
        "cancelled_by": None,
        "refunded_minutes": None,
        "forfeited_minutes": None,
        "reminded": False,
        "meeting_secret": None,
        "updated_position": position,
    }


def _review(bid: Any, d: dict[str, Any]) -> dict[str, Any]:
    return {
        "booking_id": bid,
        "tutor_id": d["tutor_id"],
        "rating": d["rating"],
        "text": d["text"],
        "created_at": d["created_at"],
        "response_text": None,
        "response_at": None,
    }


def _rescheduled(row: dict[str, Any], d: dict[str, Any]) -> None:
    end = datetime.fromisoformat(d["end"])
    row.update(
        start_at=datetime.fromisoformat(d["start"]),
        end_at=end,
        pending_reschedule=None,
        reminded=False,
        auto_complete_at=completes_by_itself_at(end, row["policy"] or {}),
    )


def _ended(status: str, drops_proposal: bool = True) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def change(row: dict[str, Any], d: dict[str, Any]) -> None:
        row["status"] = status
        if drops_proposal:
            row["pending_reschedule"] = None
        if "refunded_minutes" in d:  # a cancellation or no-show says how the credit was split
            row.update(refunded_minutes=d["refunded_minutes"], forfeited_minutes=d["forfeited_minutes"])
        if "by" in d:
            row["cancelled_by"] = d["by"]

    return change


def _row(change: Callable[[Row, dict[str, Any]], None], busy: bool = False) -> Callable[[BookingBatch, Envelope], None]:
    """The handler of an event of an existing booking: `change` its row, if the batch has it; `busy`: the event
    changes which times of its tutor are taken."""

    def handle(batch: BookingBatch, e: Envelope) -> None:
        if (row := batch.rows.get(e.aggregate_id)) is not None:
            change(row, e.data)
            row["updated_position"] = e.position
            if busy:
                batch.moved[UUID(str(row["tutor_id"]))] = e.position

    return handle


# What each event the projection reads does to the batch's rows; `topics` is these classes.
ON_EVENT: dict[type, Callable[[BookingBatch, Envelope], None]] = {
    Booking.Requested: BookingBatch.requested,
    # a v1 Confirmed (before meeting links) has no secret: no room
    Booking.Confirmed: _row(lambda row, d: row.update(status="confirmed", meeting_secret=d.get("meeting_secret"))),
    Booking.Declined: _row(_ended("declined"), busy=True),
    Booking.Expired: _row(_ended("expired"), busy=True),
    Booking.Cancelled: _row(_ended("cancelled"), busy=True),
    Booking.RescheduleProposed: _row(
        lambda row, d: row.update(pending_reschedule={"start": d["start"], "proposed_by": d["proposed_by"]})
    ),
    Booking.Rescheduled: _row(_rescheduled, busy=True),
    Booking.RescheduleRejected: _row(lambda row, d: row.update(pending_reschedule=None)),
    Booking.Completed: _row(_ended("completed"), busy=True),
    # as Booking._no_show, which keeps a proposal
    Booking.NoShowMarked: _row(_ended("no_show", drops_proposal=False), busy=True),
    Booking.Reviewed: BookingBatch.reviewed,
    Booking.ReviewResponded: BookingBatch.review_responded,
    Inbox.Reminded: BookingBatch.reminded,
}
HANDLERS = by_type(ON_EVENT)


class Bookings(FoldedProjection):
    """Bookings by student, tutor, status and time. A batch is folded in memory (BookingBatch, runner.load_rows):
    the rows it touches are read once, the events applied in order by the handler of their type (ON_EVENT), and
    the rows written back with one DELETE and one COPY."""

    name = "bookings"
    version = 3
    tables = ("bookings", "tutor_reviews", "tutor_calendar")
    topics = tuple(topic_of(c) for c in ON_EVENT)
    fold = BookingBatch
    handlers = HANDLERS


def taken(conn: Any, tutor_id: Any, frm: datetime, to: datetime) -> list[tuple[datetime, datetime]]:
    """Intervals of a tutor's pending or confirmed bookings overlapping [frm, to)."""
    rows = conn.execute(
        "SELECT start_at, end_at FROM bookings WHERE tutor_id = %s AND status IN ('pending',"
        " 'confirmed') AND end_at > %s AND start_at < %s",
        (tutor_id, frm, to),
    ).fetchall()
    return [(r["start_at"], r["end_at"]) if isinstance(r, dict) else (r[0], r[1]) for r in rows]
