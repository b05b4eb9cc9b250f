"""bookings: one row per booking (lists, calendar, analytics, taken slots, due work) and tutor reviews."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from domain.booking import Booking
from domain.inbox import Inbox
from projections.runtime import Envelope, Projection, topic_of

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


class Bookings(Projection):
    """Bookings by student, tutor, status and time."""

    name = "bookings"
    version = 1
    tables = ("bookings", "tutor_reviews")
    topics = (*tuple(topic_of(c) for c in BOOKING_EVENTS), topic_of(Inbox.Reminded))

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        table, reviews = t["bookings"], t["tutor_reviews"]
        for e in events:
            d, bid, kind = e.data, e.aggregate_id, e.type.split(".", 1)[1]
            if e.type == "Inbox.Reminded":
                cur.execute(f"UPDATE {table} SET reminded = true WHERE booking_id = %s", (d["booking_id"],))
                continue
            if kind == "Requested":
                start = datetime.fromisoformat(d["start"])
                requested = datetime.fromisoformat(d["requested_at"])
                end = datetime.fromisoformat(d["end"])
                policy = d["policy"]
                expires = min(requested + timedelta(hours=int(policy.get("pending_expiry_hours", 24))), start)
                complete = end + timedelta(hours=int(policy.get("auto_complete_hours", 24)))
                cur.execute(
                    f"INSERT INTO {table} (booking_id, student_id, tutor_id, subject_id, start_at, end_at,"
                    " duration_minutes, status, note, policy, created_at, expires_at, auto_complete_at,"
                    " updated_position) VALUES (%s, %s, %s, %s, %s, %s, %s, 'pending', %s, %s, %s, %s, %s, %s)",
                    (
                        bid,
                        d["student_id"],
                        d["tutor_id"],
                        d["subject_id"],
                        start,
                        end,
                        d["duration_minutes"],
                        d["note"],
                        Jsonb(policy),
                        requested,
                        expires,
                        complete,
                        e.position,
                    ),
                )
                continue
            sets: dict[str, Any] = {}
            if kind == "Confirmed":
                sets = {"status": "confirmed"}
            elif kind in ("Declined", "Expired"):
                sets = {"status": kind.lower()}
            elif kind == "Cancelled":
                sets = {
                    "status": "cancelled",
                    "cancelled_by": d["by"],
                    "refunded_minutes": d["refunded_minutes"],
                    "forfeited_minutes": d["forfeited_minutes"],
                    "pending_reschedule": None,
                }
            elif kind == "RescheduleProposed":
                sets = {"pending_reschedule": Jsonb({"start": d["start"], "proposed_by": d["proposed_by"]})}
            elif kind == "Rescheduled":
                row = cur.execute(f"SELECT policy FROM {table} WHERE booking_id = %s", (bid,)).fetchone()
                hours = int((row[0] if row else {}).get("auto_complete_hours", 24))
                end = datetime.fromisoformat(d["end"])
                sets = {
                    "start_at": d["start"],
                    "end_at": end,
                    "pending_reschedule": None,
                    "reminded": False,
                    "auto_complete_at": end + timedelta(hours=hours),
                }
            elif kind == "RescheduleRejected":
                sets = {"pending_reschedule": None}
            elif kind == "Completed":
                sets = {"status": "completed", "pending_reschedule": None}
            elif kind == "NoShowMarked":
                sets = {
                    "status": "no_show",
                    "refunded_minutes": d["refunded_minutes"],
                    "forfeited_minutes": d["forfeited_minutes"],
                }
            elif kind == "Reviewed":
                cur.execute(
                    f"INSERT INTO {reviews} (booking_id, tutor_id, rating, text, created_at)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (bid, d["tutor_id"], d["rating"], d["text"], d["created_at"]),
                )
                continue
            elif kind == "ReviewResponded":
                cur.execute(
                    f"UPDATE {reviews} SET response_text = %s, response_at = %s WHERE booking_id = %s",
                    (d["text"], d["created_at"], bid),
                )
                continue
            if sets:
                cols = ", ".join(f"{k} = %s" for k in sets)
                cur.execute(
                    f"UPDATE {table} SET {cols}, updated_position = %s WHERE booking_id = %s",
                    (*sets.values(), e.position, bid),
                )


def taken(conn: Any, tutor_id: Any, frm: datetime, to: datetime) -> list[tuple[datetime, datetime]]:
    """Intervals of a tutor's pending or confirmed bookings overlapping [frm, to)."""
    rows = conn.execute(
        "SELECT start_at, end_at FROM bookings WHERE tutor_id = %s AND status IN ('pending',"
        " 'confirmed') AND end_at > %s AND start_at < %s",
        (tutor_id, frm, to),
    ).fetchall()
    return [(r["start_at"], r["end_at"]) if isinstance(r, dict) else (r[0], r[1]) for r in rows]
