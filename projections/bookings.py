"""bookings: one row per booking (lists, calendar, analytics, taken slots, due work) and tutor reviews."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from domain.availability import available, start_ranges
from domain.booking import Booking
from domain.inbox import Inbox
from domain.tutor import TutorProfile
from projections.runtime import Envelope, Projection, load_rows, replace_rows, topic_of
from projections.tutors import availability_rules, intervals

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
CALENDAR_COLUMNS = ("tutor_id", "profile_id", "position", "availability", "anchor", "free_until", "base_starts")
LESSON = timedelta(minutes=60)  # search looks for free one-hour lessons
# The free starts of a tutor are worked out for HORIZON from their anchor: the (UTC) day of the event that set the
# availability, moved on to the day of a later booking event of the tutor once that is REANCHOR past the anchor. So
# the horizon follows the tutor's activity, and a rebuild (same events) writes the same rows. Search answers from
# them only where the question lies inside [anchor, free_until); otherwise it works the slots out in Python.
HORIZON = timedelta(days=84)
REANCHOR = timedelta(days=7)
GRID_ORIGIN = "timestamptz '2000-01-01 00:00:00+00'"
REVIEW_COLUMNS = ("booking_id", "tutor_id", "rating", "text", "created_at", "response_text", "response_at")


class Bookings(Projection):
    """Bookings by student, tutor, status and time. A batch is folded in memory (runtime.load_rows): the rows it
    touches are read once, the events applied in order, and the rows written back with one DELETE and one COPY."""

    name = "bookings"
    version = 3
    tables = ("bookings", "tutor_reviews", "tutor_calendar")
    topics = (
        *tuple(topic_of(c) for c in BOOKING_EVENTS),
        topic_of(Inbox.Reminded),
        topic_of(TutorProfile.Created),
        topic_of(TutorProfile.AvailabilitySet),
    )

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
        calendar = _Calendar(cur, t["tutor_calendar"], events, rows)
        for e in events:
            d, bid, kind = e.data, e.aggregate_id, e.type.split(".", 1)[1]
            if e.type.startswith("TutorProfile."):
                calendar.profile_event(e)
                continue
            if e.type == "Inbox.Reminded":
                if (row := rows.get(UUID(str(d["booking_id"])))) is not None:
                    row["reminded"] = True
                continue
            if kind == "Requested":
                start = datetime.fromisoformat(d["start"])
                requested = datetime.fromisoformat(d["requested_at"])
                end = datetime.fromisoformat(d["end"])
                policy = d["policy"]
                rows[bid] = {
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
                    "expires_at": min(requested + timedelta(hours=int(policy.get("pending_expiry_hours", 24))), start),
                    "auto_complete_at": end + timedelta(hours=int(policy.get("auto_complete_hours", 24))),
                    "pending_reschedule": None,
                    "cancelled_by": None,
                    "refunded_minutes": None,
                    "forfeited_minutes": None,
                    "reminded": False,
                    "updated_position": e.position,
                }
                moved[UUID(str(d["tutor_id"]))] = e.position
                calendar.booking_event(UUID(str(d["tutor_id"])), e)
                continue
            if kind == "Reviewed":
                reviews[bid] = {
                    "booking_id": bid,
                    "tutor_id": d["tutor_id"],
                    "rating": d["rating"],
                    "text": d["text"],
                    "created_at": d["created_at"],
                    "response_text": None,
                    "response_at": None,
                }
                continue
            if kind == "ReviewResponded":
                if (review := reviews.get(bid)) is not None:
                    review.update(response_text=d["text"], response_at=d["created_at"])
                continue
            row = rows.get(bid)
            if row is None:
                continue
            if kind == "Confirmed":
                row["status"] = "confirmed"
            elif kind in ("Declined", "Expired"):
                row["status"] = kind.lower()
            elif kind == "Cancelled":
                row.update(
                    status="cancelled",
                    cancelled_by=d["by"],
                    refunded_minutes=d["refunded_minutes"],
                    forfeited_minutes=d["forfeited_minutes"],
                    pending_reschedule=None,
                )
            elif kind == "RescheduleProposed":
                row["pending_reschedule"] = {"start": d["start"], "proposed_by": d["proposed_by"]}
            elif kind == "Rescheduled":
                end = datetime.fromisoformat(d["end"])
                hours = int((row["policy"] or {}).get("auto_complete_hours", 24))
                row.update(
                    start_at=datetime.fromisoformat(d["start"]),
                    end_at=end,
                    pending_reschedule=None,
                    reminded=False,
                    auto_complete_at=end + timedelta(hours=hours),
                )
            elif kind == "RescheduleRejected":
                row["pending_reschedule"] = None
            elif kind == "Completed":
                row.update(status="completed", pending_reschedule=None)
            elif kind == "NoShowMarked":
                row.update(
                    status="no_show", refunded_minutes=d["refunded_minutes"], forfeited_minutes=d["forfeited_minutes"]
                )
            else:
                continue
            row["updated_position"] = e.position
            if kind in BUSY_CHANGES:
                moved[UUID(str(row["tutor_id"]))] = e.position
                calendar.booking_event(UUID(str(row["tutor_id"])), e)
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
        calendar.write(moved, table)


class _Calendar:
    """The batch's tutor_calendar rows (module comment on HORIZON; migrations/projections/bookings.sql).

    Events are applied in log order whatever the batching: an availability change anchors the horizon at its day, a
    booking event of the tutor moves the anchor to its day once that is REANCHOR past it. At the end the base
    starts of rows whose (availability, anchor) changed are worked out in Python, and every written row's free
    starts are set by one UPDATE: base minus each pending or confirmed booking's open range of blocked starts."""

    def __init__(self, cur: psycopg.Cursor[Any], table: str, events: Sequence[Envelope], rows: dict[Any, Any]) -> None:
        self.cur, self.table = cur, table
        tutors = {UUID(str(e.data["tutor_id"])) for e in events if "tutor_id" in e.data}
        tutors |= {UUID(str(r["tutor_id"])) for r in rows.values()}
        profiles = {e.aggregate_id for e in events if e.type == "TutorProfile.AvailabilitySet"}
        self.rows = load_rows(cur, table, CALENDAR_COLUMNS, tutors)
        for r in load_rows(cur, table, CALENDAR_COLUMNS, profiles, key="profile_id").values():
            self.rows[r["tutor_id"]] = r
        self.stored = set(self.rows)
        self.by_profile = {r["profile_id"]: r for r in self.rows.values() if r["profile_id"] is not None}
        self.rebase: set[Any] = set()

    def _row(self, tutor_id: UUID) -> dict[str, Any]:
        row = self.rows.get(tutor_id)
        if row is None:  # bookings of a tutor whose profile the log does not hold: taken-time stamp only
            row = self.rows[tutor_id] = dict.fromkeys(CALENDAR_COLUMNS) | {"tutor_id": tutor_id, "position": 0}
            row["base_starts"] = "{}"
        return row

    def profile_event(self, e: Envelope) -> None:
        if e.type == "TutorProfile.Created":
            tutor_id = UUID(str(e.data["tutor_id"]))
            row = self._row(tutor_id)
            row["profile_id"] = e.aggregate_id
            self.by_profile[e.aggregate_id] = row
        elif (row := self.by_profile.get(e.aggregate_id)) is not None:  # AvailabilitySet
            row["availability"] = e.data["availability"]
            row["anchor"] = _day(e)
            self.rebase.add(row["tutor_id"])

    def booking_event(self, tutor_id: UUID, e: Envelope) -> None:
        row = self._row(tutor_id)
        if row["anchor"] is not None and (day := _day(e)) > row["anchor"] + REANCHOR:
            row["anchor"] = day
            self.rebase.add(tutor_id)

    def write(self, moved: dict[Any, int], bookings_table: str) -> None:
        for tutor_id, position in moved.items():
            self._row(tutor_id)["position"] = position
        if not self.rows:
            return
        for tutor_id in self.rebase:
            row = self.rows[tutor_id]
            row["free_until"] = row["anchor"] + HORIZON
            row["base_starts"] = base_starts(row["availability"] or {}, row["anchor"], row["free_until"])
        out = (
            {**r, "availability": None if r["availability"] is None else Jsonb(r["availability"])}
            for r in self.rows.values()
        )
        replace_rows(self.cur, self.table, CALENDAR_COLUMNS, out, self.stored)
        # A booking [bs, be) takes the starts s with bs - 1h < s < be; on the grid that is the open range
        # (floor(bs - 1h), ceil(be)), so the ranges keep their ends on the grid (domain start_ranges).
        self.cur.execute(
            f"UPDATE {self.table} c SET free_starts = c.base_starts - coalesce((SELECT range_agg(tstzrange("
            f"date_bin('30 minutes', b.start_at - interval '60 minutes', {GRID_ORIGIN}),"
            f" date_bin('30 minutes', b.end_at - interval '1 microsecond', {GRID_ORIGIN}) + interval '30 minutes',"
            f" '()')) FROM {bookings_table} b WHERE b.tutor_id = c.tutor_id AND b.status IN ('pending', 'confirmed')"
            f" AND b.end_at > c.anchor AND b.start_at < c.free_until + interval '60 minutes'), '{{}}')"
            f" WHERE c.tutor_id = ANY(%s) AND c.anchor IS NOT NULL",
            (list(self.rows),),
        )


def _day(e: Envelope) -> datetime:
    """The UTC day (midnight) an event was recorded on."""
    at = datetime.fromisoformat(str(e.meta["recorded_at"])).astimezone(UTC)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def base_starts(availability: dict[str, Any], anchor: datetime, until: datetime) -> str:
    """The tutor's free one-hour lesson starts in [anchor, until) with nothing booked, as a tstzmultirange literal."""
    zone = availability.get("timezone")
    free = available(
        availability_rules(availability),
        zone or "UTC",
        intervals(availability.get("openings", [])),
        intervals(availability.get("blocks", [])),
        anchor,
        until + LESSON,
    )
    ranges = start_ranges(free, LESSON, anchor, until)
    return "{" + ",".join(f"[{a.isoformat()},{b.isoformat()}]" for a, b in ranges) + "}"


def taken(conn: Any, tutor_id: Any, frm: datetime, to: datetime) -> list[tuple[datetime, datetime]]:
    """Intervals of a tutor's pending or confirmed bookings overlapping [frm, to)."""
    rows = conn.execute(
        "SELECT start_at, end_at FROM bookings WHERE tutor_id = %s AND status IN ('pending',"
        " 'confirmed') AND end_at > %s AND start_at < %s",
        (tutor_id, frm, to),
    ).fetchall()
    return [(r["start_at"], r["end_at"]) if isinstance(r, dict) else (r[0], r[1]) for r in rows]
