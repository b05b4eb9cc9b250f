"""Student profile: learning preferences and favorite tutors; id = the student's user id."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import ValidationFailed
from domain.ids import derived_id

_LIMITS = {"bio": 5000, "goals": 5000, "learning_style": 200}


class StudentProfile(Aggregate):
    """What a student tells tutors about themselves, and who they keep an eye on."""

    @event("Created")
    def __init__(self, student_id: UUID) -> None:
        self.student_id = student_id
        self.bio = ""
        self.goals = ""
        self.learning_style = ""
        self.favorites: list[str] = []

    @staticmethod
    def create_id(student_id: UUID) -> UUID:
        """One profile per student, its stream id derived from the student's user id."""
        return derived_id("student-profile", str(student_id))

    def update(self, changes: dict[str, Any]) -> None:
        """Set bio, goals and learning style; unchanged values record nothing."""
        errors = [
            (k, f"text of at most {_LIMITS[k]} characters")
            for k, v in changes.items()
            if not isinstance(v, str) or len(v) > _LIMITS[k]
        ]
        if errors:
            raise ValidationFailed(errors)
        diff = {k: v.strip() for k, v in changes.items() if getattr(self, k) != v.strip()}
        if diff:
            self._updated(changes=diff)

    @event("Updated")
    def _updated(self, changes: dict[str, Any]) -> None:
        for k, v in changes.items():
            setattr(self, k, v)

    def add_favorite(self, tutor_id: str) -> None:
        """Favorite a tutor; a second add records nothing."""
        if tutor_id not in self.favorites:
            self._favorite_added(student_id=str(self.student_id), tutor_id=tutor_id)

    @event("FavoriteAdded")
    def _favorite_added(self, student_id: str, tutor_id: str) -> None:
        self.favorites.append(tutor_id)

    def remove_favorite(self, tutor_id: str) -> None:
        """Unfavorite a tutor; removing one that is not there records nothing."""
        if tutor_id in self.favorites:
            self._favorite_removed(student_id=str(self.student_id), tutor_id=tutor_id)

    @event("FavoriteRemoved")
    def _favorite_removed(self, student_id: str, tutor_id: str) -> None:
        self.favorites.remove(tutor_id)
