"""Tutors and students as the contract writes them: the tutor's own profile and documents, the approval queue,
the public tutor (search, detail, favorites), slots, and the student's profile. Each shape is built in one
function here, from read-model rows or from the tutoring application's views."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from api.schemas.common import Interval, MoneyOut, ReviewResponseOut
from api.schemas.documents import AdminTutorDocumentOut, admin_document_out
from application.tutoring import Tutoring
from domain.documents import Document
from domain.student import StudentProfile
from domain.user import User

TutorStatus = Literal["draft", "pending_approval", "approved", "rejected", "suspended"]

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
    documents: list[AdminTutorDocumentOut]


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
        documents=[admin_document_out(d, tutoring.document_url) for d in row["documents"]],
    )


# ------------------------------------------------------------------------------------- a tutor under review


class AdminTutorSubjectOut(msgspec.Struct):
    """A subject the tutor chose, as the catalog now has it (`active`: false once retired)."""

    id: UUID
    name: str
    category: str
    active: bool


class AdminTutorOut(msgspec.Struct):
    """A tutor's whole profile for review (id = the tutor's user id): the five builder steps, booking preferences,
    approval status, feedback, submission time, whether the account is open and the tutor listed, ratings, and each
    document with its download URL and verification."""

    id: UUID
    full_name: str
    email: str
    status: TutorStatus
    completeness: int
    feedback: str | None
    submitted_at: datetime | None
    account_open: bool
    listed: bool
    personal: TutorPersonalOut
    experience: TutorExperienceOut
    subjects: list[AdminTutorSubjectOut]
    hourly_rate: MoneyOut | None
    availability: TutorAvailabilityOut
    auto_confirm: bool
    min_notice_minutes: int
    rating_average: float | None
    rating_count: int
    documents: list[AdminTutorDocumentOut]


def _stored_intervals(raw: Sequence[Mapping[str, str]] | None) -> list[Interval]:
    """Blocks or openings as a `tutors` row stores them (ISO text, UTC)."""
    return [
        Interval(datetime.fromisoformat(x["start"]).astimezone(UTC), datetime.fromisoformat(x["end"]).astimezone(UTC))
        for x in raw or ()
    ]


def admin_tutor_out(
    row: Mapping[str, Any], subjects: Sequence[Mapping[str, Any]], document_url: Callable[[Document], str]
) -> AdminTutorOut:
    """A `tutors` row with its subjects (`tutors_subject_names` rows, in the tutor's order) for review;
    `document_url` presigns an uploaded document's download."""
    a = row["availability"] or {}
    rating = row["rating_avg"]
    return AdminTutorOut(
        id=row["tutor_id"],
        full_name=row["full_name"],
        email=row["email"],
        status=row["status"],
        completeness=row["completeness"],
        feedback=row["feedback"],
        submitted_at=row["submitted_at"].astimezone(UTC) if row["submitted_at"] else None,
        account_open=row["account_open"],
        listed=row["listed"],
        personal=TutorPersonalOut(row["bio"], row["location"], list(row["languages"])),
        experience=tutor_experience_out(row["experience"] or {}),
        subjects=[AdminTutorSubjectOut(s["subject_id"], s["name"], s["category"], s["active"]) for s in subjects],
        hourly_rate=MoneyOut(row["hourly_amount"], row["currency"]) if row["hourly_amount"] is not None else None,
        availability=TutorAvailabilityOut(
            timezone=a.get("timezone"),
            weekly=[TutorWeeklyRuleOut(r["weekday"], r["start"], r["end"]) for r in a.get("weekly") or ()],
            blocks=_stored_intervals(a.get("blocks")),
            openings=_stored_intervals(a.get("openings")),
        ),
        auto_confirm=row["auto_confirm"],
        min_notice_minutes=row["min_notice_minutes"],
        rating_average=round(rating, 2) if rating is not None else None,
        rating_count=row["rating_count"],
        documents=[admin_document_out(d, document_url) for d in row["documents"] or ()],
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


class TutorReviewPage(msgspec.Struct):
    """A page of a tutor's reviews, newest first."""

    items: list[TutorReviewOut]
    next_cursor: str | None


class OwnTutorReviewPage(TutorReviewPage):
    """A page of the calling tutor's reviews, with the rating over all of them (null when unrated)."""

    rating_average: float | None
    rating_count: int


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


def tutor_review_page(rows: Sequence[Mapping[str, Any]], next_cursor: str | None) -> TutorReviewPage:
    """A page of `tutor_reviews` rows."""
    return TutorReviewPage([tutor_review_out(r) for r in rows], next_cursor)


def own_review_page(
    rows: Sequence[Mapping[str, Any]], next_cursor: str | None, rating_sum: int, rating_count: int
) -> OwnTutorReviewPage:
    """A page of the tutor's own reviews and their rating, averaged and rounded as on the public tutor."""
    average = round(rating_sum / rating_count, 2) if rating_count else None
    return OwnTutorReviewPage([tutor_review_out(r) for r in rows], next_cursor, average, rating_count)


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
