"""A tutor's own profile builder, submission, documents and reviews."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, patch, post

from api.deps import command, limit_of, query, reading
from api.guards import BEARER, TUTOR
from api.schemas.documents import (
    TutorDocumentOut,
    TutorDocumentPage,
    TutorDocumentUploadOut,
    tutor_document_out,
    tutor_document_upload_out,
)
from api.schemas.tutoring import (
    OwnTutorReviewPage,
    TutorProfileOut,
    own_review_page,
    tutor_profile_out,
)
from api.tutors import REVIEWS, reviews_page
from application.accounts import Account
from application.tutoring import Tutoring, profile_view


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
    def get_profile(self, request: Request[Account, Any, Any], tutoring: Tutoring) -> TutorProfileOut:
        """The caller's profile with status and completeness."""
        actor = request.user
        return tutor_profile_out(profile_view(tutoring.profile(actor.user_id)))

    @patch("/profile", sync_to_thread=True)
    def update_profile(
        self, request: Request[Account, Any, Any], tutoring: Tutoring, data: TutorProfilePatch
    ) -> Response[TutorProfileOut]:
        """Fill or change any builder step."""
        actor = request.user
        body = msgspec.to_builtins({k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET})
        view, position = tutoring.update_profile(actor, body)
        return command(tutor_profile_out(view), position)

    @post("/profile/submit", status_code=200, sync_to_thread=True)
    def submit(self, request: Request[Account, Any, Any], tutoring: Tutoring) -> Response[TutorProfileOut]:
        """Send a draft or rejected profile (>= 80 % complete) for approval."""
        actor = request.user
        view, position = tutoring.submit(actor)
        return command(tutor_profile_out(view), position)

    @post("/documents", status_code=201, sync_to_thread=True)
    def request_document(
        self, request: Request[Account, Any, Any], tutoring: Tutoring, data: DocumentIn
    ) -> Response[TutorDocumentUploadOut]:
        """A presigned upload URL for a pdf, jpeg or png of at most 10 MB."""
        actor = request.user
        doc, url, expires_at, position = tutoring.request_document(actor, data.filename, data.content_type, data.size)
        return command(tutor_document_upload_out(doc, url, expires_at), position, 201)

    @post("/documents/{document_id:uuid}/complete", status_code=200, sync_to_thread=True)
    def complete_document(
        self, request: Request[Account, Any, Any], tutoring: Tutoring, document_id: UUID
    ) -> Response[TutorDocumentOut]:
        """Check the uploaded object and count the document."""
        actor = request.user
        doc, position = tutoring.complete_document(actor, document_id)
        return command(tutor_document_out(doc, tutoring), position)

    @get("/documents", sync_to_thread=True)
    def list_documents(self, request: Request[Account, Any, Any], tutoring: Tutoring) -> Response[TutorDocumentPage]:
        """The caller's documents with presigned download URLs (pending ones without)."""
        actor = request.user
        with reading(request, ("tutors",), actor) as (conn, pos):
            row = conn.execute("SELECT documents FROM tutors WHERE tutor_id = %s", (actor.user_id,)).fetchone()
        docs = [tutor_document_out(d, tutoring) for d in (row["documents"] if row else [])]
        return query(TutorDocumentPage(items=docs, next_cursor=None), pos)

    @get("/reviews", sync_to_thread=True)
    def reviews(
        self, request: Request[Account, Any, Any], limit: int | None = None, cursor: str | None = None
    ) -> Response[OwnTutorReviewPage]:
        """The caller's reviews newest first, paged, listed or not, with their rating over all of them."""
        actor = request.user
        n = limit_of(limit)
        after = REVIEWS.after(cursor)
        with reading(request, ("bookings",), actor) as (conn, pos):
            rows, next_cursor = reviews_page(conn, actor.user_id, after, n)
            rating = conn.execute(
                "SELECT coalesce(sum(rating), 0) AS total, count(*) AS n FROM tutor_reviews WHERE tutor_id = %s",
                (actor.user_id,),
            ).fetchone()
        return query(own_review_page(rows, next_cursor, int(rating["total"]), int(rating["n"])), pos)
