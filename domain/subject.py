"""Catalog context: a Subject can be renamed, recategorised, retired and restored without breaking history."""

from __future__ import annotations

from eventsourcing.domain import Aggregate, event

from domain.errors import ValidationFailed, WrongStatus


def _check_name(field: str, value: str) -> str:
    value = value.strip()
    if not value or len(value) > 100:
        raise ValidationFailed([(field, "1 to 100 characters")])
    return value


class Subject(Aggregate):
    """A subject tutors teach; retired subjects stay on past bookings but cannot be chosen again."""

    @event("Created")
    def __init__(self, name: str, category: str) -> None:
        self.name = name
        self.category = category
        self.active = True

    @classmethod
    def create(cls, name: str, category: str) -> Subject:
        """Add a subject to the catalog."""
        return cls(name=_check_name("name", name), category=_check_name("category", category))

    def rename(self, name: str) -> None:
        """Give the subject a new name; its id (and so its history) stays."""
        name = _check_name("name", name)
        if name != self.name:
            self._renamed(name=name)

    @event("Renamed")
    def _renamed(self, name: str) -> None:
        self.name = name

    def recategorise(self, category: str) -> None:
        """Move the subject to another category; its id (and so its history) stays."""
        category = _check_name("category", category)
        if category != self.category:
            self._recategorised(category=category, previous=self.category)

    @event("Recategorised")
    def _recategorised(self, category: str, previous: str) -> None:
        self.category = category

    def retire(self) -> None:
        """Take the subject off the catalog; retiring twice records nothing."""
        if self.active:
            self._retired()

    @event("Retired")
    def _retired(self) -> None:
        self.active = False

    def restore(self) -> None:
        """Bring a retired subject back to the catalog; an active one cannot be restored."""
        if self.active:
            raise WrongStatus("the subject is active: only a retired subject can be restored")
        self._restored()

    @event("Restored")
    def _restored(self) -> None:
        self.active = True
