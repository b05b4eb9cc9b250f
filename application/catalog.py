"""Catalog context: admins create, rename and retire subjects."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from application.store import EventStoreApp, Loaded
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

        def rename(got: Loaded) -> tuple[dict[str, Any], int]:
            s = got.need(Subject, subject_id, "no such subject")
            s.rename(name)
            return subject_view(s), self.record(s)

        return self.command(rename, changes=[subject_id])

    def retire_subject(self, subject_id: UUID) -> tuple[dict[str, Any], int]:
        """Retire a subject (it stays in history)."""

        def retire(got: Loaded) -> tuple[dict[str, Any], int]:
            s = got.need(Subject, subject_id, "no such subject")
            s.retire()
            return subject_view(s), self.record(s)

        return self.command(retire, changes=[subject_id])
