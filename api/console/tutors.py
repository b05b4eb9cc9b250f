"""Tutor approval: the queue by status, one tutor's whole profile with their documents (open each, mark it
verified), approve or reject with feedback, suspend or reinstate -- the same queries and commands as
/admin/tutors."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, get, post
from litestar.response import Redirect, Template

from api.console.render import Form, done, fields, page
from api.console.session import ADMIN_PAGE
from api.deps import limit_of, reading
from api.tutors import tutor_for_review, tutor_queue
from application.tutoring import Tutoring

STATUSES = ("pending_approval", "approved", "rejected", "suspended", "draft")


@get("/tutors", guards=ADMIN_PAGE, sync_to_thread=True)
def queue(
    request: Request[Any, Any, Any], tutoring: Tutoring, status: str = "pending_approval", cursor: str | None = None
) -> Template:
    """Tutors by status; the approval queue (oldest submission first) by default."""
    with reading(request, ("tutors",), request.user) as (conn, _):
        found = tutor_queue(conn, status, limit_of(50), cursor, tutoring)
    return page(request, "tutors.html", shown=status, statuses=STATUSES, tutors=found.items, next=found.next_cursor)


@get("/tutors/{tutor_id:uuid}", guards=ADMIN_PAGE, sync_to_thread=True)
def review(request: Request[Any, Any, Any], tutoring: Tutoring, tutor_id: UUID) -> Template:
    """A tutor's whole profile for review."""
    with reading(request, ("tutors",), request.user) as (conn, _):
        t = tutor_for_review(conn, tutor_id, tutoring.document_url)
    return page(request, "tutor.html", t=t)


@post("/tutors/{tutor_id:uuid}/documents/{document_id:uuid}/verify", guards=ADMIN_PAGE, sync_to_thread=True)
def verify(request: Request[Any, Any, Any], tutoring: Tutoring, tutor_id: UUID, document_id: UUID) -> Redirect:
    """Mark a document verified."""
    doc, _position = tutoring.verify_document(request.user, tutor_id, document_id)
    return done(request, f"/console/tutors/{tutor_id}", f"Document {doc.filename} verified")


@post("/tutors/{tutor_id:uuid}/{action:str}", guards=ADMIN_PAGE, sync_to_thread=True)
def decide(request: Request[Any, Any, Any], tutoring: Tutoring, tutor_id: UUID, action: str, data: Form) -> Redirect:
    """Approve, reject (with feedback), suspend (with a reason) or reinstate, as the API's routes do (another
    action: 422 from Tutoring.decide)."""
    given = fields(data)
    text = given.get("feedback", "") if action == "reject" else given.get("reason", "")
    view, _position = tutoring.decide(tutor_id, action, text)
    return done(request, f"/console/tutors/{tutor_id}", f"Tutor {view['status'].replace('_', ' ')}")


PAGES = [queue, review, verify, decide]
