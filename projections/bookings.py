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
from projections.runner import Envelope, Projection, load_rows, replace_rows, topic_of

BOOKING_EVENTS = (
    Booking.Requested,
    Booking.Confirmed,
    Booking.Declined,
    Booking.Expired,
    Booking.Cancelled,
    Booking.RescheduleProposed,
    Booking.Rescheduled,
    Booking.RescheduleRejected,
    Booking.Completed,
    Booking.NoShowMarked,
    Booking.Reviewed,
    Booking.ReviewResponded,
)


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
    "updated_position",
)
# Events that change which times of a tutor are taken (Requested is handled with the new row): search's
# next-slot memo (api.tutors) is valid while the tutor's `tutor_calendar.position` stays the same.
BUSY_CHANGES = ("Declined", "Expired", "Cancelled", "Rescheduled", "Completed", "NoShowMarked")
REVIEW_COLUMNS = ("booking_id", "tutor_id", "rating", "text", "created_at", "response_text", "response_at")


class Bookings(Projection):
    """Bookings by student, tutor, status and time. A batch is folded in memory (runner.load_rows): the rows it
    touches are read once, the events applied in order, and the rows written back with one DELETE and one COPY."""

    name = "bookings"
    version = 2
    tables = ("bookings", "tutor_reviews", "tutor_calendar")
    topics = (*tuple(topic_of(c) for c in BOOKING_EVENTS), topic_of(Inbox.Reminded))

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        table, reviews_t = t["bookings"], t["tutor_reviews"]
        moved: dict[Any, int] = {}  # tutor -> position of the newest change to the tutor's busy time
        born = {e.aggregate_id for e in events if e.type == "Booking.Requested"}
        reminded = {UUID(str(e.data["booking_id"])) for e in events if e.type == "Inbox.Reminded"}
        touched = {e.aggregate_id for e in events if e.type.startswith("Booking.")} | reminded
        rows = load_rows(cur, table, COLUMNS, touched - born)
        stored = set(rows)
        reviewed = {e.aggregate_id for e in events if e.type == "Booking.Reviewed"}
        answered = {e.aggregate_id for e in events if e.type == "Booking.ReviewResponded"}
        reviews = load_rows(cur, reviews_t, REVIEW_COLUMNS, answered - reviewed)
        stored_reviews = set(reviews)
        for e in events:
            d, bid, kind = e.data, e.aggregate_id, e.type.split(".", 1)[1]
            if e.type == "Inbox.Reminded":
                if (row := rows.get(UUID(str(d["booking_id"])))) is not None:
                    row["reminded"] = True
            elif kind == "Requested":
                rows[bid] = _requested(bid, d, e.position)
                moved[UUID(str(d["tutor_id"]))] = e.position
            elif kind == "Reviewed":
                reviews[bid] = _review(bid, d)
            elif kind == "ReviewResponded":
                if (review := reviews.get(bid)) is not None:
                    review.update(response_text=d["text"], response_at=d["created_at"])
            elif (change := ROW_CHANGES.get(kind)) is not None and (row := rows.get(bid)) is not None:
                change(row, d)
                row["updated_position"] = e.position
                if kind in BUSY_CHANGES:
                    moved[UUID(str(row["tutor_id"]))] = e.position
        out = (
            {
                **r,
                "policy": Jsonb(r["policy"]),
                "pending_reschedule": None if r["pending_reschedule"] is None else Jsonb(r["pending_reschedule"]),
            }
            for r in rows.values()
        )
        replace_rows(cur, table, COLUMNS, out, stored)
        if reviews:
            replace_rows(cur, reviews_t, REVIEW_COLUMNS, reviews.values(), stored_reviews)
        if moved:
            cur.execute(
                f"INSERT INTO {t['tutor_calendar']} (tutor_id, position) SELECT * FROM unnest(%s::uuid[], %s::int8[])"
                " ON CONFLICT (tutor_id) DO UPDATE SET position = excluded.position",
                (list(moved), list(moved.values())),
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


# How each event of an existing booking changes its row (Requested, Reviewed and ReviewResponded make rows).
ROW_CHANGES: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {
    "Confirmed": lambda row, d: row.update(status="confirmed"),
    "Declined": _ended("declined"),
    "Expired": _ended("expired"),
    "Cancelled": _ended("cancelled"),
    "Completed": _ended("completed"),
    "NoShowMarked": _ended("no_show", drops_proposal=False),  # as Booking._no_show, which keeps it
    "RescheduleProposed": lambda row, d: row.update(
        pending_reschedule={"start": d["start"], "proposed_by": d["proposed_by"]}
    ),
    "Rescheduled": _rescheduled,
    "RescheduleRejected": lambda row, d: row.update(pending_reschedule=None),
}


def taken(conn: Any, tutor_id: Any, frm: datetime, to: datetime) -> list[tuple[datetime, datetime]]:
    """Intervals of a tutor's pending or confirmed bookings overlapping [frm, to)."""
    rows = conn.execute(
        "SELECT start_at, end_at FROM bookings WHERE tutor_id = %s AND status IN ('pending',"
        " 'confirmed') AND end_at > %s AND start_at < %s",
        (tutor_id, frm, to),
    ).fetchall()
    return [(r["start_at"], r["end_at"]) if isinstance(r, dict) else (r[0], r[1]) for r in rows]
