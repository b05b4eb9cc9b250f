"""Scheduling context: a user's secret calendar URL. The log keeps that one was issued (and replaced the one before)
and when; the token itself never enters it (its SHA-256 digest is kept beside the log, written with the event)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import Forbidden
from domain.ids import derived_id


class CalendarFeed(Aggregate):
    """One stream per user: each issued feed URL replaces the one before."""

    @event("Opened")
    def __init__(self, owner_id: UUID) -> None:
        self.owner_id = owner_id
        self.issued = 0
        self.issued_at: datetime | None = None

    @staticmethod
    def create_id(owner_id: UUID) -> UUID:
        """One feed stream per user."""
        return derived_id("calendar-feed", str(owner_id))

    def issue(self, actor_id: UUID, now: datetime) -> None:
        """The owner asks for a new feed URL; the previous one stops working."""
        if actor_id != self.owner_id:
            raise Forbidden("a calendar feed is its owner's")
        self._issued(number=self.issued + 1, issued_at=now)

    @event("Issued")
    def _issued(self, number: int, issued_at: datetime) -> None:
        self.issued = number
        self.issued_at = issued_at
