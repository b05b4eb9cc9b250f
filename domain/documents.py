"""A tutor's documents (the profile's fifth step): what may be uploaded, and each document as the TutorProfile keeps
it, a frozen value (a change replaces the value).

The events record their fields as they always did (`DocumentRequested {document_id, filename, content_type, size,
key, requested_at}`, `DocumentUploaded {document_id, size, uploaded_at, key}`, `DocumentVerified {document_id,
verified_at, verified_by}`); the value is only state."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from domain.values import Value

DOCUMENT_TYPES = ("application/pdf", "image/jpeg", "image/png")
MAX_DOCUMENT_BYTES = 10 * 1_048_576


class DocumentStatus(StrEnum):
    """A document is announced (pending) until its uploaded file is checked."""

    PENDING = "pending"
    UPLOADED = "uploaded"


@dataclass(frozen=True, slots=True)
class Document(Value):
    """An announced document: its name, type and size, and the storage key it is served from (the upload key
    until the checked copy exists)."""

    id: str
    filename: str
    content_type: str
    size: int
    key: str
    status: DocumentStatus = DocumentStatus.PENDING
    uploaded_at: datetime | None = None
    verified_at: datetime | None = None
    verified_by: str | None = None  # the admin who checked it (a user id)

    @property
    def verified(self) -> bool:
        """An admin checked this document."""
        return self.verified_at is not None

    def uploaded(self, size: int, at: datetime, key: str | None) -> Document:
        """This document once its file was checked: the checked size, and served from the checked copy's `key` (none
        for documents checked before copies were made: the upload key stays)."""
        return replace(self, size=size, status=DocumentStatus.UPLOADED, uploaded_at=at, key=key or self.key)

    def checked(self, at: datetime, by: str) -> Document:
        """This document once an admin verified it."""
        return replace(self, verified_at=at, verified_by=by)
