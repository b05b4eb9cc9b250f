"""Tutors and students as the contract writes them: the tutor's own profile and documents, the approval queue,
the public tutor (search, detail, favorites), slots, and the student's profile. Each shape is built in one
function here, from read-model rows or from the tutoring application's views."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from api.schemas.common import Interval, MoneyOut, ReviewResponseOut
from application.tutoring import Tutoring
from domain.documents import Document, DocumentStatus
from domain.student import StudentProfile
from domain.user import User

TutorStatus = Literal["draft", "pending_approval", "approved", "rejected", "suspended"]
TutorDocumentStatus = Literal["pending", "uploaded"]

# --------------------------------------------------------------------------------------------- tutor profile


class TutorPersonalOut(msgspec.Struct):
    """Builder step 1: who the tutor is."""

    bio: str
    location: str
    languages: list[str]


class TutorExperienceOut(msgspec.Struct):
    """Builder step 2: years of teaching (null until set), education and certifications."""

    years: int | None
    education: str
    certifications: list[str]


class TutorWeeklyRuleOut(msgspec.Struct):
    """A weekly window: weekday 0 = Monday ... 6 = Sunday, local "HH:MM" times in the tutor's zone."""

    weekday: int
    start: str
    end: str


class TutorAvailabilityOut(msgspec.Struct):
    """Builder step 4: weekly rules in an IANA zone, one-off blocks (unavailable) and openings (extra), in UTC."""

    timezone: str | None
    weekly: list[TutorWeeklyRuleOut]
    blocks: list[Interval]
    openings: list[Interval]


class TutorProfileOut(msgspec.Struct):
    """A tutor's own profile: the five builder steps, booking preferences, approval status and completeness."""

    id: UUID
    status: TutorStatus
    completeness: int
    feedback: str | None
    personal: TutorPersonalOut
    experience: TutorExperienceOut
    subjects: list[UUID]
    hourly_rate: MoneyOut | None
    availability: TutorAvailabilityOut
    auto_confirm: bool
    min_notice_minutes: int


def tutor_experience_out(experience: Mapping[str, Any]) -> TutorExperienceOut:
    """Experience of a profile or of a `tutors` row (whose experience is empty until the step is set)."""
    return TutorExperienceOut(
        years=experience.get("years"),
        education=experience.get("education", ""),
        certifications=list(experience.get("certifications", [])),
    )


def tutor_profile_out(view: Mapping[str, Any]) -> TutorProfileOut:
    """The tutoring application's profile view (application.tutoring.profile_view)."""
    personal, availability, rate = view["personal"], view["availability"], view["hourly_rate"]
    return TutorProfileOut(
        id=view["id"],
        status=view["status"],
        completeness=view["completeness"],
        feedback=view["feedback"],
        personal=TutorPersonalOut(personal["bio"], personal["location"], list(personal["languages"])),
        experience=tutor_experience_out(view["experience"]),
        subjects=[UUID(s) for s in view["subjects"]],
        hourly_rate=MoneyOut(rate["amount"], rate["currency"]) if rate is not None else None,
        availability=TutorAvailabilityOut(
            timezone=availability["timezone"],
            weekly=[TutorWeeklyRuleOut(r["weekday"], r["start"], r["end"]) for r in availability["weekly"]],
            blocks=[Interval(start, end) for start, end in availability["blocks"]],
            openings=[Interval(start, end) for start, end in availability["openings"]],
        ),
        auto_confirm=view["auto_confirm"],
        min_notice_minutes=view["min_notice_minutes"],
    )


# ------------------------------------------------------------------------------------------------ documents


class _TutorDocumentFields(msgspec.Struct):
    """What both document shapes start with (`_document_fields` fills it)."""

    id: UUID
    filename: str
    content_type: str
    size: int
    status: TutorDocumentStatus
    uploaded_at: datetime | None


class TutorDocumentOut(_TutorDocumentFields):
    """A tutor's document; uploaded ones carry a 24-hour download URL, pending ones none. `verified`: an admin
    checked it (when, and who: the admin's user id)."""

    download_url: str | None
    verified: bool
    verified_at: datetime | None
    verified_by: UUID | None


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
    return TutorDocumentOut(
        *_document_fields(doc),
        download_url=tutoring.document_url(doc) if uploaded else None,
        **_verification(doc),
    )


def _verification(doc: Document) -> dict[str, Any]:
    """A document's verified, verified_at (UTC) and verified_by."""
    return {
        "verified": doc.verified,
        "verified_at": doc.verified_at.astimezone(UTC) if doc.verified_at else None,
        "verified_by": UUID(doc.verified_by) if doc.verified_by else None,
    }


def tutor_document_upload_out(doc: Document, upload_url: str, expires_at: datetime) -> TutorDocumentUploadOut:
    """A document just announced, with its presigned PUT."""
    return TutorDocumentUploadOut(
        *_document_fields(doc),
        upload_url=upload_url,
        upload_method="PUT",
        expires_at=expires_at.astimezone(UTC),
    )


# ------------------------------------------------------------------------------------------- approval queue


class TutorQueueItemOut(msgspec.Struct):
    """A tutor in the admin's approval queue (id = the tutor's user id), with their documents."""

    id: UUID
    full_name: str
    email: str
    submitted_at: datetime | None
    completeness: int
    status: TutorStatus
    feedback: str | None
    documents: list[TutorDocumentOut]


class TutorQueuePage(msgspec.Struct):
    """A page of the approval queue, oldest submission first."""

    items: list[TutorQueueItemOut]
    next_cursor: str | None


def tutor_queue_item_out(row: Mapping[str, Any], tutoring: Tutoring) -> TutorQueueItemOut:
    """A `tutors` row as the approval queue shows it."""
    return TutorQueueItemOut(
        id=row["tutor_id"],
        full_name=row["full_name"],
        email=row["email"],
        submitted_at=row["submitted_at"],
        completeness=row["completeness"],
        status=row["status"],
        feedback=row["feedback"],
        documents=[tutor_document_out(d, tutoring) for d in row["documents"]],
    )


# --------------------------------------------------------------------------------------------- public tutor


class TutorSubjectOut(msgspec.Struct):
    """A subject a tutor teaches."""

    id: UUID
    name: str
    category: str


class PublicTutorOut(msgspec.Struct):
    """A listed tutor as anyone sees them, with the next free 60-minute slot (null: none within 28 days)."""

    id: UUID
    full_name: str
    bio: str
    languages: list[str]
    subjects: list[TutorSubjectOut]
    hourly_rate: MoneyOut
    rating_average: float | None
    rating_count: int
    next_slot: Interval | None


class TutorReviewOut(msgspec.Struct):
    """A student's review of a lesson with the tutor (its id is the booking's)."""

    id: UUID
    rating: int
    text: str
    created_at: datetime
    response: ReviewResponseOut | None


class TutorDetailOut(PublicTutorOut):
    """A listed tutor's public page: the public tutor, experience, the latest reviews and the next free slots."""

    experience: TutorExperienceOut
    reviews: list[TutorReviewOut]
    next_slots: list[Interval]


class PublicTutorPage(msgspec.Struct):
    """A page of public tutors (search results, a student's favorites)."""

    items: list[PublicTutorOut]
    next_cursor: str | None


class TutorSlotList(msgspec.Struct):
    """Every bookable slot of the asked span (not paged)."""

    items: list[Interval]


def slot_out(start: datetime, end: datetime) -> Interval:
    """A slot in UTC."""
    return Interval(start.astimezone(UTC), end.astimezone(UTC))


_decode_subjects = msgspec.json.Decoder(list[TutorSubjectOut]).decode
_SUBJECTS: dict[str, list[TutorSubjectOut]] = {}
_SUBJECTS_MAX = 20_000


def _subjects(text: str) -> list[TutorSubjectOut]:
    """A row's public subjects (JSON text), decoded once per distinct text: search pages show the same tutors, and
    tutors the same few subject lists, again and again (a rename makes new text; the old is dropped in time)."""
    found = _SUBJECTS.get(text)
    if found is None:
        if len(_SUBJECTS) >= _SUBJECTS_MAX:
            _SUBJECTS.clear()  # bounded: start again rather than track recency on every hit
        found = _SUBJECTS[text] = _decode_subjects(text)
    return found


def _public_fields(
    row: Mapping[str, Any], next_slot: Interval | None
) -> tuple[UUID, str, str, list[str], list[TutorSubjectOut], MoneyOut, float | None, int, Interval | None]:
    """The public tutor's fields of a `tutors` row (projections.search.SEARCH_COLS), in PublicTutorOut's order."""
    rating = row["rating_avg"]
    return (
        row["tutor_id"],
        row["full_name"],
        row["bio"],
        row["languages"],
        _subjects(row["subjects_json"]),
        MoneyOut(row["hourly_amount"], row["currency"]),
        round(rating, 2) if rating is not None else None,
        row["rating_count"],
        next_slot,
    )


def public_tutor_out(row: Mapping[str, Any], next_slot: Interval | None) -> PublicTutorOut:
    """A search item or favorite of a `tutors` row."""
    return PublicTutorOut(*_public_fields(row, next_slot))


def tutor_review_out(row: Mapping[str, Any]) -> TutorReviewOut:
    """A `tutor_reviews` row."""
    reply = row["response_text"]
    return TutorReviewOut(
        id=row["booking_id"],
        rating=row["rating"],
        text=row["text"],
        created_at=row["created_at"].astimezone(UTC),
        response=ReviewResponseOut(reply, row["response_at"].astimezone(UTC)) if reply is not None else None,
    )


def tutor_detail_out(
    row: Mapping[str, Any], next_slots: Sequence[tuple[datetime, datetime]], reviews: Sequence[Mapping[str, Any]]
) -> TutorDetailOut:
    """A tutor's public page of a `tutors` row (projections.search.PUBLIC_COLS), its next free slots and latest reviews."""
    slots = [slot_out(a, b) for a, b in next_slots]
    return TutorDetailOut(
        *_public_fields(row, slots[0] if slots else None),
        experience=tutor_experience_out(row["experience"] or {}),
        reviews=[tutor_review_out(r) for r in reviews],
        next_slots=slots,
    )


# -------------------------------------------------------------------------------------------------- students


class StudentProfileOut(msgspec.Struct):
    """A student's learning profile and preferences."""

    bio: str
    goals: str
    learning_style: str
    timezone: str
    currency: str
    language: str


class StudentFavoriteOut(msgspec.Struct):
    """Whether a tutor is now among the student's favorites."""

    tutor_id: UUID
    favorite: bool


def student_profile_out(profile: StudentProfile, user: User) -> StudentProfileOut:
    """A student's profile (bio, goals, learning style) with the preferences kept on their User."""
    return StudentProfileOut(
        bio=profile.bio,
        goals=profile.goals,
        learning_style=profile.learning_style,
        timezone=user.timezone,
        currency=user.currency,
        language=user.language,
    )
