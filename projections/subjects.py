"""subjects: the catalog as clients browse it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from domain.subject import Subject
from projections.runner import Envelope, Projection, load_rows, replace_rows, topic_of

COLUMNS = ("subject_id", "name", "category", "active", "created_position")


class Subjects(Projection):
    """One row per subject; retired ones stay with active = false."""

    name = "subjects"
    version = 1
    tables = ("subjects",)
    topics = tuple(
        topic_of(c)
        for c in (Subject.Created, Subject.Renamed, Subject.Recategorised, Subject.Retired, Subject.Restored)
    )

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        # Folded per batch in memory: one SELECT, one DELETE and one COPY (see runner.load_rows).
        table = t["subjects"]
        born = {e.aggregate_id for e in events if e.type == "Subject.Created"}
        rows = load_rows(cur, table, COLUMNS, {e.aggregate_id for e in events} - born)
        stored = set(rows)
        for e in events:
            if e.type == "Subject.Created":
                rows[e.aggregate_id] = {
                    "subject_id": e.aggregate_id,
                    "name": e.data["name"],
                    "category": e.data["category"],
                    "active": True,
                    "created_position": e.position,
                }
            elif (row := rows.get(e.aggregate_id)) is not None:
                if e.type == "Subject.Renamed":
                    row["name"] = e.data["name"]
                elif e.type == "Subject.Recategorised":
                    row["category"] = e.data["category"]
                elif e.type == "Subject.Retired":
                    row["active"] = False
                elif e.type == "Subject.Restored":
                    row["active"] = True
        replace_rows(cur, table, COLUMNS, rows.values(), stored)
