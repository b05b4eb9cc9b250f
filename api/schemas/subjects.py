"""The subject catalog as the contract writes it, each shape built in one function here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import msgspec


class SubjectOut(msgspec.Struct):
    """A subject of the catalog; retired ones (`active: false`) stay on past bookings."""

    id: UUID
    name: str
    category: str
    active: bool


class SubjectPage(msgspec.Struct):
    """A page of active subjects by name."""

    items: list[SubjectOut]
    next_cursor: str | None


def subject_out(subject: Mapping[str, Any]) -> SubjectOut:
    """A subject of the catalog's view (admin commands, id as text) or a `subjects` row selected with
    `subject_id AS id`."""
    sid = subject["id"]
    return SubjectOut(
        id=sid if isinstance(sid, UUID) else UUID(sid),
        name=subject["name"],
        category=subject["category"],
        active=subject["active"],
    )
