"""Catalog context: admins create, rename and retire subjects."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.store import EventStoreApp, retrying
from domain.errors import NotFound
from domain.subject import Subject


def subject_view(s: Subject) -> dict[str, Any]:
    """The contract's subject shape."""
    return {"id": str(s.id), "name": s.name, "category": s.category, "active": s.active}


class Catalog(EventStoreApp):
    """Subject commands; lists come from the `subjects` projection."""

    def create_subject(self, name: str, category: str) -> tuple[dict[str, Any], int]:
        """Add a subject."""
        subject = Subject.create(name, category)
        return subject_view(subject), self.record(subject)

    def rename_subject(self, subject_id: UUID, name: str) -> tuple[dict[str, Any], int]:
        """Rename a subject."""

        def attempt() -> tuple[dict[str, Any], int]:
            s = self._subject(subject_id)
            s.rename(name)
            return subject_view(s), self.record(s)

        return retrying(attempt)

    def retire_subject(self, subject_id: UUID) -> tuple[dict[str, Any], int]:
        """Retire a subject (it stays in history)."""

        def attempt() -> tuple[dict[str, Any], int]:
            s = self._subject(subject_id)
            s.retire()
            return subject_view(s), self.record(s)

        return retrying(attempt)

    def _subject(self, subject_id: UUID) -> Subject:
        try:
            s: Any = self.repository.get(subject_id)
        except AggregateNotFoundError:
            raise NotFound("no such subject") from None
        if not isinstance(s, Subject):
            raise NotFound("no such subject")
        return s
