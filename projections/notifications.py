"""notifications: each user's inbox, derived from booking, review and approval events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import uuid5

import psycopg
from psycopg.types.json import Jsonb

from domain.booking import Booking
from domain.ids import NAMESPACE
from domain.inbox import Inbox
from domain.tutor import TutorProfile
from projections.runner import Envelope, Projection, topic_of

TO_OTHER = {
    "Cancelled": "booking.cancelled",
    "RescheduleProposed": "booking.reschedule_proposed",
    "Rescheduled": "booking.rescheduled",
    "RescheduleRejected": "booking.reschedule_rejected",
}


class Notifications(Projection):
    """Inbox rows; ids are derived from the event position so a rebuild gives the same ids."""

    name = "notifications"
    version = 1
    # one inbox item per event: at worst one notification is missing (and recorded), not every later one
    skippable = True
    tables = ("notifications", "notification_bookings")
    topics = tuple(
        topic_of(c)
        for c in (
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
            TutorProfile.Created,
            TutorProfile.Approved,
            TutorProfile.Rejected,
            Inbox.Read,
            Inbox.Reminded,
        )
    )

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        inbox, parties = t["notifications"], t["notification_bookings"]
        for e in events:
            d, kind = e.data, e.type
            if kind == "Inbox.Read":
                cur.execute(
                    f"UPDATE {inbox} SET read = true WHERE notification_id = ANY(%s) AND user_id = %s",
                    (d["notification_ids"], d["user_id"]),
                )
                continue
            if kind == "TutorProfile.Created":
                cur.execute(
                    f"INSERT INTO {parties} (booking_id, student_id, tutor_id) VALUES (%s, NULL, %s)",
                    (e.aggregate_id, d["tutor_id"]),
                )
                continue
            if kind.startswith("TutorProfile."):
                row = cur.execute(f"SELECT tutor_id FROM {parties} WHERE booking_id = %s", (e.aggregate_id,)).fetchone()
                if row:
                    name = "tutor.approved" if kind.endswith("Approved") else "tutor.rejected"
                    self._add(cur, inbox, e, row[0], name, {"feedback": d.get("feedback")})
                continue
            if kind == "Inbox.Reminded":
                self._add(
                    cur,
                    inbox,
                    e,
                    d["user_id"],
                    "booking.reminder",
                    {"booking_id": d["booking_id"], "start": d["start"]},
                )
                continue
            short = kind.split(".", 1)[1]
            if short == "Requested":
                cur.execute(
                    f"INSERT INTO {parties} (booking_id, student_id, tutor_id) VALUES (%s, %s, %s)",
                    (e.aggregate_id, d["student_id"], d["tutor_id"]),
                )
                self._add(
                    cur,
                    inbox,
                    e,
                    d["tutor_id"],
                    "booking.requested",
                    {"booking_id": str(e.aggregate_id), "student_id": d["student_id"], "start": d["start"]},
                )
                continue
            row = cur.execute(
                f"SELECT student_id, tutor_id FROM {parties} WHERE booking_id = %s", (e.aggregate_id,)
            ).fetchone()
            if row is None:
                continue
            student, tutor = row
            data = {"booking_id": str(e.aggregate_id)}
            if short == "Confirmed":
                self._add(cur, inbox, e, student, "booking.confirmed", data)
            elif short == "Declined":
                self._add(cur, inbox, e, student, "booking.declined", data)
            elif short == "Expired":
                for who in (student, tutor):
                    self._add(cur, inbox, e, who, "booking.expired", data)
            elif short in TO_OTHER:
                by = d.get("by") or d.get("proposed_by")
                who = tutor if by == "student" else student
                self._add(cur, inbox, e, who, TO_OTHER[short], {**data, **{k: d[k] for k in ("start",) if k in d}})
            elif short in ("Completed", "NoShowMarked"):
                self._add(
                    cur, inbox, e, student, "booking.completed" if short == "Completed" else "booking.no_show", data
                )
            elif short == "Reviewed":
                self._add(cur, inbox, e, tutor, "review.received", {**data, "rating": d["rating"]})
            elif short == "ReviewResponded":
                self._add(cur, inbox, e, student, "review.responded", data)

    @staticmethod
    def _add(cur: psycopg.Cursor[Any], inbox: str, e: Envelope, user_id: Any, kind: str, data: dict[str, Any]) -> None:
        nid = uuid5(NAMESPACE, f"notification:{e.position}:{user_id}")
        cur.execute(
            f"INSERT INTO {inbox} (notification_id, user_id, type, created_at, position, data)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (nid, user_id, kind, e.meta.get("recorded_at"), e.position, Jsonb(data)),
        )
