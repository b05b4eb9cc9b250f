"""Subjects: the public catalog and its admin commands."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post

from api.deps import command, decode_cursor, encode_cursor, limit_of, query, reading
from api.guards import ADMIN, BEARER
from api.schemas.subjects import SubjectOut, SubjectPage, subject_out
from application.catalog import Catalog


class SubjectIn(msgspec.Struct):
    """POST /admin/subjects."""

    name: str
    category: str


class SubjectPatch(msgspec.Struct):
    """PATCH /admin/subjects/{id}: a new name, a new category, or both."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    category: str | msgspec.UnsetType = msgspec.UNSET


def subjects_page(conn: Any, category: str | None, n: int, cursor: str | None, *, retired: bool = False) -> SubjectPage:
    """Subjects by name, active ones only unless `retired` (the console lists both): GET /subjects and the
    console's subjects page."""
    where: list[str] = ["true" if retired else "active"]
    params: list[Any] = []
    if category:
        where.append("category = %s")
        params.append(category)
    after = decode_cursor(cursor, tuple[str, UUID])
    if after is not None:
        where.append("(name, subject_id) > (%s, %s::uuid)")
        params.extend(after)
    sql = (
        f"SELECT subject_id AS id, name, category, active FROM subjects WHERE {' AND '.join(where)}"
        " ORDER BY name, subject_id LIMIT %s"
    )
    rows = conn.execute(sql, (*params, n + 1)).fetchall()
    next_cursor = encode_cursor([rows[n - 1]["name"], str(rows[n - 1]["id"])]) if len(rows) > n else None
    return SubjectPage(items=[subject_out(r) for r in rows[:n]], next_cursor=next_cursor)


class SubjectsController(Controller):
    """Anyone browses active subjects."""

    path = "/subjects"
    tags = ["catalog"]

    @get("/", sync_to_thread=True)
    def list_subjects(
        self,
        request: Request[Any, Any, Any],
        category: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Response[SubjectPage]:
        """Active subjects by name."""
        n = limit_of(limit)
        with reading(request, ("subjects",)) as (conn, pos):
            return query(subjects_page(conn, category, n, cursor), pos)


class AdminSubjectsController(Controller):
    """Admins curate the catalog."""

    path = "/admin/subjects"
    guards = ADMIN
    tags = ["admin", "catalog"]
    security = BEARER

    @post("/", status_code=201, sync_to_thread=True)
    def create(self, request: Request[Any, Any, Any], catalog: Catalog, data: SubjectIn) -> Response[SubjectOut]:
        """Add a subject."""
        view, position = catalog.create_subject(data.name, data.category)
        return command(subject_out(view), position, 201)

    @patch("/{subject_id:uuid}", sync_to_thread=True)
    def rename(
        self, request: Request[Any, Any, Any], catalog: Catalog, subject_id: UUID, data: SubjectPatch
    ) -> Response[SubjectOut]:
        """Rename and/or recategorise a subject (its id stays)."""
        name = None if data.name is msgspec.UNSET else data.name
        category = None if data.category is msgspec.UNSET else data.category
        view, position = catalog.change_subject(subject_id, name, category)
        return command(subject_out(view), position)

    @delete("/{subject_id:uuid}", status_code=200, sync_to_thread=True)
    def retire(self, request: Request[Any, Any, Any], catalog: Catalog, subject_id: UUID) -> Response[SubjectOut]:
        """Retire a subject (kept in history and on past bookings)."""
        view, position = catalog.retire_subject(subject_id)
        return command(subject_out(view), position)

    @post("/{subject_id:uuid}/restore", status_code=200, sync_to_thread=True)
    def restore(self, request: Request[Any, Any, Any], catalog: Catalog, subject_id: UUID) -> Response[SubjectOut]:
        """Bring a retired subject back to the catalog (409 when it is active)."""
        view, position = catalog.restore_subject(subject_id)
        return command(subject_out(view), position)
