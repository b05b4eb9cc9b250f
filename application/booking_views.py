"""The contract's booking shape, built in one place for command answers (from a Booking) and queries (from a
bookings read-model row, api/bookings.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.booking import POLICY_KEYS, Booking


def z(t: datetime) -> str:
    """An instant as the contract writes it (an aware UTC datetime, with Z)."""
    return t.isoformat().replace("+00:00", "Z")


def booking_shape(
    booking_id: Any,
    tutor_id: Any,
    student_id: Any,
    subject_id: Any,
    start: datetime,
    end: datetime,
    duration_minutes: int,
    status: str,
    note: str,
    policy: dict[str, Any],
    created_at: datetime,
    pending_reschedule: dict[str, Any] | None,
) -> dict[str, Any]:
    """The contract's booking shape, built here only: from a Booking (`booking_view`, command answers) and from a
    bookings read-model row (api/bookings.py, queries)."""
    pr = pending_reschedule
    return {
        "id": str(booking_id),
        "tutor_id": str(tutor_id),
        "student_id": str(student_id),
        "subject_id": str(subject_id),
        "start": z(start),
        "end": z(end),
        "duration_minutes": duration_minutes,
        "status": status,
        "note": note,
        "policy": {k: policy.get(k) for k in POLICY_KEYS},
        "created_at": z(created_at),
        "pending_reschedule": {"start": _isoz(pr["start"]), "proposed_by": pr["proposed_by"]} if pr else None,
    }


def _isoz(t: datetime | str) -> str:
    """An instant as the contract writes it, from a datetime or from the ISO text a read model keeps."""
    return z(t) if isinstance(t, datetime) else t.replace("+00:00", "Z")


def booking_view(b: Booking) -> dict[str, Any]:
    """A Booking in the contract's booking shape."""
    return booking_shape(
        b.id, b.tutor_id, b.student_id, b.subject_id, b.start, b.end, b.duration_minutes, b.status, b.note,
        b.policy, b.requested_at, b.pending_reschedule,
    )  # fmt: skip
