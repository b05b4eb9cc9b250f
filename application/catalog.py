"""Catalog context: admins create, rename, recategorise, retire and restore subjects."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from application.store import EventStoreApp, Loaded
from domain.errors import ValidationFailed
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
        return self.change_subject(subject_id, name=name)

    def change_subject(
        self, subject_id: UUID, name: str | None = None, category: str | None = None
    ) -> tuple[dict[str, Any], int]:
        """Rename and/or recategorise a subject (at least one of them), in one command."""
        if name is None and category is None:
            raise ValidationFailed([("name", "give a name, a category or both")])

        def change(got: Loaded) -> tuple[dict[str, Any], int]:
            s = got.need(Subject, subject_id, "no such subject")
            if name is not None:
                s.rename(name)
            if category is not None:
                s.recategorise(category)
            return subject_view(s), self.record(s)

        return self.command(change, changes=[subject_id])

    def retire_subject(self, subject_id: UUID) -> tuple[dict[str, Any], int]:
        """Retire a subject (it stays in history)."""

        def retire(got: Loaded) -> tuple[dict[str, Any], int]:
            s = got.need(Subject, subject_id, "no such subject")
            s.retire()
            return subject_view(s), self.record(s)

        return self.command(retire, changes=[subject_id])

    def restore_subject(self, subject_id: UUID) -> tuple[dict[str, Any], int]:
        """Bring a retired subject back (409 when it is active)."""

        def restore(got: Loaded) -> tuple[dict[str, Any], int]:
            s = got.need(Subject, subject_id, "no such subject")
            s.restore()
            return subject_view(s), self.record(s)

        return self.command(restore, changes=[subject_id])
