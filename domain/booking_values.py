"""What a Booking keeps besides its ids, times and policy: which party acts, a pending reschedule proposal, the
student's review and the tutor's response, as frozen values (a change replaces the value).

The events record their fields as they always did (`RescheduleProposed {start, end, proposed_by}`, `Reviewed
{tutor_id, rating, text, created_at}`, `ReviewResponded {tutor_id, text, created_at}`); the values are only state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.values import Value


class Party(StrEnum):
    """A side of a booking (equal to the strings the events, the read models and the contract use)."""

    STUDENT = "student"
    TUTOR = "tutor"


@dataclass(frozen=True, slots=True)
class Proposal(Value):
    """A new time one party proposed for a confirmed booking, waiting for the other party's answer."""

    start: datetime
    end: datetime
    proposed_by: Party


@dataclass(frozen=True, slots=True)
class Review(Value):
    """The student's review of a completed lesson (immutable once given)."""

    rating: int
    text: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReviewResponse(Value):
    """The tutor's one answer to the review."""

    text: str
    created_at: datetime
