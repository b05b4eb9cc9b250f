"""Identity, /me, admin users, the test clock, health and readiness."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from api.schemas.common import Interval, MoneyOut
from api.schemas.documents import TutorDocumentOut, tutor_document_out
from api.schemas.tutoring import (
    AdminTutorSubjectOut,
    TutorAvailabilityOut,
    TutorExperienceOut,
    TutorStatus,
    TutorWeeklyRuleOut,
    tutor_experience_out,
)
from application.identity import AvatarUploadTicket, Identity, Outcome
from application.tutoring import Tutoring
from projections.failures import Failure

Role = Literal["student", "tutor", "admin", "finance"]
Readiness = Literal["ready", "degraded", "not ready"]


class UserAccountOut(msgspec.Struct):
    """A user's account as they see it on /me (and as registration and admin changes answer it)."""

    id: UUID
    email: str
    full_name: str
    role: Role
    is_active: bool
    timezone: str
    language: str
    currency: str
    avatar_url: str | None
    email_notifications: bool

    @classmethod
    def of(cls, view: dict[str, Any]) -> UserAccountOut:
        """From the application's plain view of a User (application.identity Identity.view)."""
        return cls(
            id=UUID(view["id"]),
            email=view["email"],
            full_name=view["full_name"],
            role=view["role"],
            is_active=view["is_active"],
            timezone=view["timezone"],
            language=view["language"],
            currency=view["currency"],
            avatar_url=view["avatar_url"],
            email_notifications=view["email_notifications"],
        )


class TokenPairOut(msgspec.Struct):
    """A bearer access token (`expires_in` seconds) and the refresh token that renews it once."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"]
    expires_in: int

    @classmethod
    def of(cls, o: Outcome) -> TokenPairOut:
        """The tokens of the session a registration, login or refresh opened."""
        assert o.tokens is not None, "a registration, login or refresh always opens a session"
        return cls(o.tokens.access_token, o.tokens.refresh_token, "bearer", o.tokens.expires_in)


class RegistrationOut(msgspec.Struct):
    """A new account and its first token pair."""

    user: UserAccountOut
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"]
    expires_in: int

    @classmethod
    def of(cls, o: Outcome) -> RegistrationOut:
        """From the registration's outcome."""
        pair = TokenPairOut.of(o)
        return cls(UserAccountOut.of(o.user), pair.access_token, pair.refresh_token, pair.token_type, pair.expires_in)


class AvatarUploadOut(msgspec.Struct):
    """An announced avatar image and where to PUT it (with that Content-Type) until `expires_at`; then complete it
    (POST /me/avatar/{id}/complete) or, as an admin, give it to a user (PUT /admin/users/{user_id}/avatar)."""

    id: UUID
    filename: str
    content_type: str
    size: int
    status: Literal["pending"]
    upload_url: str
    upload_method: Literal["PUT"]
    expires_at: datetime

    @classmethod
    def of(cls, ticket: AvatarUploadTicket) -> AvatarUploadOut:
        """From the application's announced upload."""
        u = ticket.upload
        return cls(
            id=u.id,
            filename=u.filename,
            content_type=u.content_type,
            size=u.size,
            status="pending",
            upload_url=ticket.upload_url,
            upload_method="PUT",
            expires_at=ticket.expires_at.astimezone(UTC),
        )


def avatar_url_of(row: Mapping[str, Any], identity: Identity) -> str | None:
    """A users_directory row's picture: an uploaded avatar's 24-hour download URL, or the URL the user set."""
    if row["avatar_key"] is not None:
        return identity.avatar_url(row["avatar_key"], row["avatar_type"])
    url: str | None = row["avatar_url"]
    return url


def account_fields(r: Mapping[str, Any], identity: Identity) -> dict[str, Any]:
    """The account fields of a users_directory row, as the admin's list and detail show them (`identity` signs an
    uploaded avatar's URL)."""
    return {
        "id": r["user_id"],
        "email": r["email"],
        "full_name": r["full_name"],
        "role": r["role"],
        "is_active": r["is_active"],
        "deleted": r["deleted"],
        "timezone": r["timezone"],
        "language": r["language"],
        "currency": r["currency"],
        "avatar_url": avatar_url_of(r, identity),
    }


class AdminUserOut(msgspec.Struct):
    """A user as the admin's list shows them, deleted ones included."""

    id: UUID
    email: str
    full_name: str
    role: Role
    is_active: bool
    deleted: bool
    timezone: str
    language: str
    currency: str
    avatar_url: str | None
    created_at: datetime

    @classmethod
    def of(cls, r: dict[str, Any], identity: Identity) -> AdminUserOut:
        """From a users_directory row (`identity` signs an uploaded avatar's URL)."""
        return cls(**account_fields(r, identity), created_at=r["registered_at"])


class AdminUserPage(msgspec.Struct):
    """A page of users, newest first."""

    items: list[AdminUserOut]
    next_cursor: str | None


class AdminTutorProfileOut(msgspec.Struct):
    """A tutor's whole profile as an admin sees it: status and review, the builder steps, documents (uploaded ones
    with a 24-hour download URL), booking preferences, whether the public sees them (`listed`: approved and the
    account open) and their rating."""

    status: TutorStatus
    bio: str
    location: str
    languages: list[str]
    experience: TutorExperienceOut
    subjects: list[AdminTutorSubjectOut]
    hourly_rate: MoneyOut | None
    availability: TutorAvailabilityOut
    documents: list[TutorDocumentOut]
    completeness: int
    feedback: str | None
    submitted_at: datetime | None
    auto_confirm: bool
    min_notice_minutes: int
    account_open: bool
    listed: bool
    rating_average: float | None
    rating_count: int


class AdminUserDetailOut(msgspec.Struct):
    """One user as the admin console shows them: the account, and their tutor profile (null for anyone who never
    had one)."""

    id: UUID
    email: str
    full_name: str
    role: Role
    is_active: bool
    deleted: bool
    timezone: str
    language: str
    currency: str
    avatar_url: str | None
    registered_at: datetime
    tutor_profile: AdminTutorProfileOut | None


def _interval(stored: Mapping[str, str]) -> Interval:
    return Interval(
        datetime.fromisoformat(stored["start"]).astimezone(UTC), datetime.fromisoformat(stored["end"]).astimezone(UTC)
    )


def admin_tutor_profile_out(row: Mapping[str, Any], tutoring: Tutoring) -> AdminTutorProfileOut:
    """A `tutors` row (with its `subjects`, [{id, name, category, active}]) as the admin sees it."""
    a = row["availability"] or {}
    rate = row["hourly_amount"]
    rating = row["rating_avg"]
    return AdminTutorProfileOut(
        status=row["status"],
        bio=row["bio"],
        location=row["location"],
        languages=list(row["languages"]),
        experience=tutor_experience_out(row["experience"] or {}),
        subjects=[msgspec.convert(s, AdminTutorSubjectOut) for s in row["subjects"]],
        hourly_rate=MoneyOut(rate, row["currency"]) if rate is not None else None,
        availability=TutorAvailabilityOut(
            timezone=a.get("timezone"),
            weekly=[TutorWeeklyRuleOut(r["weekday"], r["start"], r["end"]) for r in a.get("weekly", [])],
            blocks=[_interval(b) for b in a.get("blocks", [])],
            openings=[_interval(b) for b in a.get("openings", [])],
        ),
        documents=[tutor_document_out(d, tutoring) for d in row["documents"]],
        completeness=row["completeness"],
        feedback=row["feedback"],
        submitted_at=row["submitted_at"].astimezone(UTC) if row["submitted_at"] else None,
        auto_confirm=row["auto_confirm"],
        min_notice_minutes=row["min_notice_minutes"],
        account_open=row["account_open"],
        listed=row["listed"],
        rating_average=round(rating, 2) if rating is not None else None,
        rating_count=row["rating_count"],
    )


def admin_user_detail_out(
    user: Mapping[str, Any], tutor: Mapping[str, Any] | None, identity: Identity, tutoring: Tutoring
) -> AdminUserDetailOut:
    """A users_directory row and the user's `tutors` row, if any (`admin_tutor_profile_out`)."""
    return AdminUserDetailOut(
        **account_fields(user, identity),
        registered_at=user["registered_at"].astimezone(UTC),
        tutor_profile=admin_tutor_profile_out(tutor, tutoring) if tutor is not None else None,
    )


class TestClockOut(msgspec.Struct):
    """The server's business time, and whether the test clock (rather than real time) sets it."""

    now: datetime
    test_clock: bool


class HealthOut(msgspec.Struct):
    """The process is up."""

    status: Literal["ok"]


class ReadinessChecks(msgspec.Struct):
    """Each dependency: "ok", "unreachable: <error type>", or (storage only) "not configured"."""

    store: str
    broker: str
    storage: str


class ProjectionFailureOut(msgspec.Struct):
    """An event a projection could not apply, which holds it back."""

    projection: str
    generation: int
    position: int
    event_id: str
    event_type: str
    error: str
    attempts: int
    state: str  # retrying | stopped
    first_seen: datetime
    last_seen: datetime

    @classmethod
    def of(cls, f: Failure) -> ProjectionFailureOut:
        """From a recorded failure; the event is named `aggregate_id@version`."""
        return cls(
            projection=f.name,
            generation=f.generation,
            position=f.position,
            event_id=f"{f.aggregate_id}@{f.aggregate_version}",
            event_type=f.event_type,
            error=f.error,
            attempts=f.attempts,
            state=f.state,
            first_seen=f.first_seen,
            last_seen=f.last_seen,
        )


class ReadinessOut(msgspec.Struct):
    """Readiness (503 when the store or broker is unreachable), lag per projection, and projections held back."""

    status: Readiness
    checks: ReadinessChecks
    projection_lag: dict[str, int]
    projection_failures: list[ProjectionFailureOut]
