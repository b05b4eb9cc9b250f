"""A tutor's own profile builder, submission and documents."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, patch, post

from api.deps import caller, command, query, reading, services
from api.guards import TUTOR
from application.tutoring import profile_view

BEARER = [{"bearer": []}]


class MoneyIn(msgspec.Struct):
    """Money in minor units."""

    amount: int
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]


class TutorProfilePatch(msgspec.Struct, forbid_unknown_fields=True):
    """PATCH /tutor/profile: any subset of the builder steps."""

    personal: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    experience: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    subjects: list[str] | msgspec.UnsetType = msgspec.UNSET
    hourly_rate: MoneyIn | msgspec.UnsetType = msgspec.UNSET
    availability: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    auto_confirm: bool | msgspec.UnsetType = msgspec.UNSET
    min_notice_minutes: int | msgspec.UnsetType = msgspec.UNSET


class DocumentIn(msgspec.Struct):
    """POST /tutor/documents."""

    filename: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    content_type: str
    size: int


class TutorProfileController(Controller):
    """Only tutors; each sees and changes only their own profile and documents."""

    path = "/tutor"
    guards = TUTOR
    tags = ["tutoring"]
    security = BEARER

    @get("/profile", sync_to_thread=True)
    def get_profile(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        """The caller's profile with status and completeness."""
        actor = caller(request)
        return profile_view(services(request.app.state).tutoring.profile(actor.user_id))

    @patch("/profile", sync_to_thread=True)
    def update_profile(self, request: Request[Any, Any, Any], data: TutorProfilePatch) -> Response[Any]:
        """Fill or change any builder step."""
        actor = caller(request)
        body = msgspec.to_builtins({k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET})
        view, position = services(request.app.state).tutoring.update_profile(actor, body)
        return command(request, view, position)

    @post("/profile/submit", status_code=200, sync_to_thread=True)
    def submit(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """Send a draft or rejected profile (>= 80 % complete) for approval."""
        actor = caller(request)
        view, position = services(request.app.state).tutoring.submit(actor)
        return command(request, view, position)

    @post("/documents", status_code=201, sync_to_thread=True)
    def request_document(self, request: Request[Any, Any, Any], data: DocumentIn) -> Response[Any]:
        """A presigned upload URL for a pdf, jpeg or png of at most 10 MB."""
        actor = caller(request)
        body, position = services(request.app.state).tutoring.request_document(
            actor, data.filename, data.content_type, data.size
        )
        return command(request, body, position, 201)

    @post("/documents/{document_id:uuid}/complete", status_code=200, sync_to_thread=True)
    def complete_document(self, request: Request[Any, Any, Any], document_id: UUID) -> Response[Any]:
        """Check the uploaded object and count the document."""
        actor = caller(request)
        body, position = services(request.app.state).tutoring.complete_document(actor, document_id)
        return command(request, body, position)

    @get("/documents", sync_to_thread=True)
    def list_documents(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """The caller's documents with presigned download URLs (pending ones without)."""
        actor = caller(request)
        svc = services(request.app.state)
        with reading(request, ("tutors",), actor) as (conn, pos):
            row = conn.execute("SELECT documents FROM tutors WHERE tutor_id = %s", (actor.user_id,)).fetchone()
        docs = documents_out(svc, row["documents"] if row else [])
        return query({"items": docs, "next_cursor": None}, pos)


def documents_out(svc: Any, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Documents as clients see them: no storage key; uploaded ones with a 24 h download URL."""
    out = []
    for d in docs:
        url = (
            svc.tutoring.storage.download_url(d["key"], d["filename"], d["content_type"])
            if d.get("status") == "uploaded"
            else None
        )
        out.append(
            {
                "id": d["id"],
                "filename": d["filename"],
                "content_type": d["content_type"],
                "size": d["size"],
                "status": d["status"],
                "uploaded_at": d.get("uploaded_at"),
                "download_url": url,
            }
        )
    return out
