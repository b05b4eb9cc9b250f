"""A tutor's documents as the contract writes them: the tutor's own list and upload answer, and the admin's view
with a download link. Each shape is built in one function here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from application.tutoring import Tutoring
from domain.documents import Document, DocumentStatus

TutorDocumentStatus = Literal["pending", "uploaded"]


class _TutorDocumentFields(msgspec.Struct):
    """What both document shapes start with (`_document_fields` fills it)."""

    id: UUID
    filename: str
    content_type: str
    size: int
    status: TutorDocumentStatus
    uploaded_at: datetime | None


class TutorDocumentOut(_TutorDocumentFields):
    """A tutor's document; uploaded ones carry a 24-hour download URL, pending ones none."""

    download_url: str | None


class AdminTutorDocumentOut(TutorDocumentOut):
    """A tutor's document as admins see it (approval queue, review, verification): `verified` once an admin
    checked it (`verified_at`, and `verified_by` the admin's user id); `url` is the download URL again (null until
    uploaded), the name the review page uses."""

    verified: bool
    verified_at: datetime | None
    verified_by: UUID | None
    url: str | None


class TutorDocumentPage(msgspec.Struct):
    """The tutor's documents (all of them, on one page)."""

    items: list[TutorDocumentOut]
    next_cursor: str | None


class TutorDocumentUploadOut(_TutorDocumentFields):
    """An announced document and where to PUT its file, until `expires_at`; then complete it."""

    upload_url: str
    upload_method: Literal["PUT"]
    expires_at: datetime


def _document(doc: Document | Mapping[str, Any]) -> Document:
    """The profile's document, or a `tutors` row's record of it (the same fields, `uploaded_at` as ISO text)."""
    return doc if isinstance(doc, Document) else msgspec.convert(doc, Document)


def _document_fields(doc: Document) -> tuple[UUID, str, str, int, DocumentStatus, datetime | None]:
    """A document's fields both document shapes start with (id ... uploaded_at), in their order."""
    uploaded_at = doc.uploaded_at.astimezone(UTC) if doc.uploaded_at else None
    return UUID(doc.id), doc.filename, doc.content_type, doc.size, doc.status, uploaded_at


def tutor_document_out(record: Document | Mapping[str, Any], tutoring: Tutoring) -> TutorDocumentOut:
    """A document (the profile's or a `tutors` row's): no storage key; uploaded ones with a download URL (S3 is
    only asked for those)."""
    doc = _document(record)
    uploaded = doc.status is DocumentStatus.UPLOADED
    return TutorDocumentOut(*_document_fields(doc), download_url=tutoring.document_url(doc) if uploaded else None)


def admin_document_out(
    record: Document | Mapping[str, Any], document_url: Callable[[Document], str]
) -> AdminTutorDocumentOut:
    """A document (the profile's or a `tutors` row's) as admins see it; `document_url` presigns uploaded ones."""
    doc = _document(record)
    url = document_url(doc) if doc.status is DocumentStatus.UPLOADED else None
    return AdminTutorDocumentOut(
        *_document_fields(doc),
        download_url=url,
        verified=doc.verified,
        verified_at=doc.verified_at.astimezone(UTC) if doc.verified_at else None,
        verified_by=UUID(doc.verified_by) if doc.verified_by else None,
        url=url,
    )


def tutor_document_upload_out(doc: Document, upload_url: str, expires_at: datetime) -> TutorDocumentUploadOut:
    """A document just announced, with its presigned PUT."""
    return TutorDocumentUploadOut(
        *_document_fields(doc),
        upload_url=upload_url,
        upload_method="PUT",
        expires_at=expires_at.astimezone(UTC),
    )
