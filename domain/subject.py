"""Catalog context: a Subject can be renamed and retired without breaking history."""

from __future__ import annotations

from eventsourcing.domain import Aggregate, event

from domain.errors import ValidationFailed


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

    def retire(self) -> None:
        """Take the subject off the catalog; retiring twice records nothing."""
        if self.active:
            self._retired()

    @event("Retired")
    def _retired(self) -> None:
        self.active = False
