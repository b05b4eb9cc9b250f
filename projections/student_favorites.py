"""student_favorites: which tutors each student keeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from domain.student import StudentProfile
from projections.runner import Envelope, Projection, topic_of


class StudentFavorites(Projection):
    """(student, tutor) pairs; removing deletes the pair."""

    name = "student_favorites"
    version = 2  # rebuild: rows of removed favorites were never deleted
    tables = ("student_favorites",)
    topics = (topic_of(StudentProfile.FavoriteAdded), topic_of(StudentProfile.FavoriteRemoved))

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        table = t["student_favorites"]
        for e in events:
            if e.type == "StudentProfile.FavoriteAdded":
                cur.execute(
                    f"INSERT INTO {table} (student_id, tutor_id, added_position) VALUES (%s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (e.data["student_id"], e.data["tutor_id"], e.position),
                )
            else:
                cur.execute(
                    f"DELETE FROM {table} WHERE student_id = %s AND tutor_id = %s",
                    (e.data["student_id"], e.data["tutor_id"]),
                )
