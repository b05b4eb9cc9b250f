"""subjects: the catalog as clients browse it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from domain.subject import Subject
from projections.runtime import Envelope, Projection, topic_of


class Subjects(Projection):
    """One row per subject; retired ones stay with active = false."""

    name = "subjects"
    version = 1
    tables = ("subjects",)
    topics = tuple(topic_of(c) for c in (Subject.Created, Subject.Renamed, Subject.Retired))

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        table = t["subjects"]
        for e in events:
            if e.type == "Subject.Created":
                cur.execute(
                    f"INSERT INTO {table} (subject_id, name, category, active, created_position)"
                    " VALUES (%s, %s, %s, true, %s)",
                    (e.aggregate_id, e.data["name"], e.data["category"], e.position),
                )
            elif e.type == "Subject.Renamed":
                cur.execute(f"UPDATE {table} SET name = %s WHERE subject_id = %s", (e.data["name"], e.aggregate_id))
            elif e.type == "Subject.Retired":
                cur.execute(f"UPDATE {table} SET active = false WHERE subject_id = %s", (e.aggregate_id,))
