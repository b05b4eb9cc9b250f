"""Bookings, reviews and notifications as the contract writes them, each shape built in one function here: from a
Booking for command answers and from a bookings read-model row for queries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from api.schemas.common import ReviewResponseOut
from domain.booking import Booking, meets
from domain.booking_values import Party, Proposal
from domain.platform import Policy

BookingStatus = Literal["pending", "confirmed", "declined", "expired", "cancelled", "completed", "no_show"]


class BookingPolicyOut(msgspec.Struct):
    """The platform's terms when the booking was made, in basis points and hours; they govern its refunds."""

    cancellation_window_hours: int
    late_cancel_refund_bps: int
    no_show_refund_bps: int
    commission_bps: int


class RescheduleOut(msgspec.Struct):
    """A proposed new start, waiting for the other party's answer; `proposed_by` is the side that proposed it."""

    start: datetime
    proposed_by: Party


class BookingOut(msgspec.Struct):
    """A booking."""

    id: UUID
    tutor_id: UUID
    student_id: UUID
    subject_id: UUID
    start: datetime
    end: datetime
    duration_minutes: int
    status: BookingStatus
    note: str
    policy: BookingPolicyOut
    created_at: datetime
    pending_reschedule: RescheduleOut | None
    meeting_url: str | None


class BookingPage(msgspec.Struct):
    """A page of bookings."""

    items: list[BookingOut]
    next_cursor: str | None


class CancelOut(msgspec.Struct):
    """A cancelled booking and what its credit hold became."""

    booking: BookingOut
    refunded_minutes: int
    forfeited_minutes: int


class ReviewOut(msgspec.Struct):
    """The student's review of a completed lesson (its id is the booking's)."""

    id: UUID
    booking_id: UUID
    rating: int
    text: str
    created_at: datetime
    response: ReviewResponseOut | None


class NotificationOut(msgspec.Struct):
    """One inbox entry; `data` depends on `type` (booking.requested, message.created, ...)."""

    id: UUID
    type: str
    created_at: datetime
    read: bool
    data: dict[str, Any]


class NotificationPage(msgspec.Struct):
    """A page of the inbox, newest first."""

    items: list[NotificationOut]
    next_cursor: str | None


class CalendarFeedOut(msgspec.Struct):
    """A secret calendar URL (iCalendar) of the caller's lessons; anyone holding it can read them until it is
    replaced."""

    url: str


class NotificationReadOut(msgspec.Struct):
    """A notification marked read."""

    id: UUID
    read: bool


@dataclass(frozen=True)
class Viewer:
    """Who looks at bookings and how lessons' meeting links are made (MEETING_URL_TEMPLATE): a booking's link is
    shown to its student and its tutor only, anyone else (an admin) sees null."""

    user_id: UUID
    meeting_url_template: str

    def meeting_url(
        self, booking_id: Any, student_id: Any, tutor_id: Any, status: str, secret: str | None
    ) -> str | None:
        """The lesson's meeting link for this viewer, or None (not a party; not confirmed; called off)."""
        if secret is None or not meets(status, secret) or self.user_id not in (student_id, tutor_id):
            return None
        return self.meeting_url_template.replace("{booking_id}", str(booking_id)).replace("{secret}", secret)


def _booking(
    viewer: Viewer,
    booking_id: Any,
    tutor_id: Any,
    student_id: Any,
    subject_id: Any,
    start: datetime,
    end: datetime,
    duration_minutes: int,
    status: Any,
    note: str,
    policy: Mapping[str, Any] | Policy,
    created_at: datetime,
    proposal: Mapping[str, Any] | Proposal | None,
    meeting_secret: str | None,
) -> BookingOut:
    """The booking shape, built here only (`booking_of`, `booking_from_row`); the policy and the proposal as the
    booking keeps them (values) or as the row keeps them (JSON: `{start, proposed_by}` with `start` ISO text)."""
    return BookingOut(
        booking_id, tutor_id, student_id, subject_id, start, end, duration_minutes, status, note,
        msgspec.convert(policy, BookingPolicyOut, from_attributes=True),
        created_at,
        None if proposal is None else msgspec.convert(proposal, RescheduleOut, from_attributes=True),
        viewer.meeting_url(booking_id, student_id, tutor_id, status, meeting_secret),
    )  # fmt: skip


def booking_of(b: Booking, viewer: Viewer) -> BookingOut:
    """A Booking aggregate (command answers)."""
    return _booking(
        viewer, b.id, b.tutor_id, b.student_id, b.subject_id, b.start, b.end, b.duration_minutes, b.status, b.note,
        b.policy, b.requested_at, b.pending_reschedule, b.meeting_secret,
    )  # fmt: skip


def booking_from_row(r: Mapping[str, Any], viewer: Viewer) -> BookingOut:
    """A bookings read-model row (queries)."""
    return _booking(
        viewer, r["booking_id"], r["tutor_id"], r["student_id"], r["subject_id"], r["start_at"], r["end_at"],
        r["duration_minutes"], r["status"], r["note"], r["policy"], r["created_at"], r["pending_reschedule"],
        r["meeting_secret"],
    )  # fmt: skip


def review_of(b: Booking) -> ReviewOut:
    """A booking's review and the tutor's response (after POST .../review or .../review/response)."""
    r, resp = b.review, b.review_response
    if r is None:  # the commands answering with it have just recorded it
        raise ValueError("the booking has no review")
    return ReviewOut(
        b.id, b.id, r.rating, r.text, r.created_at, ReviewResponseOut(resp.text, resp.created_at) if resp else None
    )


def notification_from_row(r: Mapping[str, Any]) -> NotificationOut:
    """A notifications read-model row."""
    return NotificationOut(r["notification_id"], r["type"], r["created_at"], r["read"], r["data"])
