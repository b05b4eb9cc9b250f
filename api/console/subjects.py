"""Subjects: the whole catalog, active and retired, with the admin's commands -- create, rename, recategorise,
retire, restore -- through the same query and Catalog commands as /subjects and /admin/subjects."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import Request, get, post
from litestar.response import Redirect, Template

from api.console.render import Form, convert, done, fields, page
from api.console.session import ADMIN_PAGE
from api.deps import limit_of, reading
from api.subjects import SubjectIn, SubjectPatch, subjects_page
from application.catalog import Catalog

HERE = "/console/subjects"


@get("/subjects", guards=ADMIN_PAGE, sync_to_thread=True)
def subjects(request: Request[Any, Any, Any], cursor: str | None = None) -> Template:
    """Every subject by name, retired ones included."""
    with reading(request, ("subjects",), request.user) as (conn, _):
        found = subjects_page(conn, None, limit_of(100), cursor, retired=True)
    return page(request, "subjects.html", subjects=found.items, next=found.next_cursor)


@post("/subjects", guards=ADMIN_PAGE, sync_to_thread=True)
def create(request: Request[Any, Any, Any], catalog: Catalog, data: Form) -> Redirect:
    """Add a subject (POST /admin/subjects)."""
    # a field left out of the form is blank, so the refusal names it (as the domain does a blank one)
    new = convert({"name": "", "category": "", **fields(data)}, SubjectIn)
    view, _position = catalog.create_subject(new.name, new.category)
    return done(request, HERE, f"Subject {view['name']} added")


@post("/subjects/{subject_id:uuid}", guards=ADMIN_PAGE, sync_to_thread=True)
def change(request: Request[Any, Any, Any], catalog: Catalog, subject_id: UUID, data: Form) -> Redirect:
    """Rename and/or recategorise (PATCH /admin/subjects/{id}); an unchanged value records nothing."""
    patch = convert(fields(data), SubjectPatch)
    name = None if patch.name is msgspec.UNSET else patch.name
    category = None if patch.category is msgspec.UNSET else patch.category
    view, _position = catalog.change_subject(subject_id, name, category)
    return done(request, HERE, f"Subject {view['name']} ({view['category']}) saved")


@post("/subjects/{subject_id:uuid}/retire", guards=ADMIN_PAGE, sync_to_thread=True)
def retire(request: Request[Any, Any, Any], catalog: Catalog, subject_id: UUID) -> Redirect:
    """Retire a subject (DELETE /admin/subjects/{id}): kept in history and on past bookings."""
    view, _position = catalog.retire_subject(subject_id)
    return done(request, HERE, f"Subject {view['name']} retired")


@post("/subjects/{subject_id:uuid}/restore", guards=ADMIN_PAGE, sync_to_thread=True)
def restore(request: Request[Any, Any, Any], catalog: Catalog, subject_id: UUID) -> Redirect:
    """Bring a retired subject back (POST /admin/subjects/{id}/restore; 409 when it is active)."""
    view, _position = catalog.restore_subject(subject_id)
    return done(request, HERE, f"Subject {view['name']} restored")


PAGES = [subjects, create, change, retire, restore]
