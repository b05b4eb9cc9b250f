"""A user's Inbox stream: read receipts and reminders (the notifications themselves are derived from events)."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.ids import derived_id


class Inbox(Aggregate):
    """One per user."""

    @event("Opened")
    def __init__(self, user_id: UUID) -> None:
        self.user_id = user_id
        self.reminded: list[str] = []

    @staticmethod
    def create_id(user_id: UUID) -> UUID:
        """One inbox per user."""
        return derived_id("inbox", str(user_id))

    def mark_read(self, notification_ids: list[str]) -> None:
        """Mark notifications read (idempotent)."""
        if notification_ids:
            self._read(user_id=str(self.user_id), notification_ids=notification_ids)

    @event("Read")
    def _read(self, user_id: str, notification_ids: list[str]) -> None:
        pass

    def remind(self, booking_id: str, start: str) -> bool:
        """Queue a lesson reminder once per booking time."""
        key = f"{booking_id}@{start}"
        if key in self.reminded:
            return False
        self._reminded(user_id=str(self.user_id), booking_id=booking_id, start=start)
        return True

    @event("Reminded")
    def _reminded(self, user_id: str, booking_id: str, start: str) -> None:
        self.reminded.append(f"{booking_id}@{start}")
