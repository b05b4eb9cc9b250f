"""Identity, /me, admin users, the test clock, health and readiness."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from application.identity import Outcome
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

    @classmethod
    def of(cls, view: dict[str, Any]) -> UserAccountOut:
        """From the application's plain view of a User (application.identity.user_view)."""
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
    def of(cls, r: dict[str, Any]) -> AdminUserOut:
        """From a users_directory row."""
        return cls(
            id=r["user_id"],
            email=r["email"],
            full_name=r["full_name"],
            role=r["role"],
            is_active=r["is_active"],
            deleted=r["deleted"],
            timezone=r["timezone"],
            language=r["language"],
            currency=r["currency"],
            avatar_url=r["avatar_url"],
            created_at=r["registered_at"],
        )


class AdminUserPage(msgspec.Struct):
    """A page of users, newest first."""

    items: list[AdminUserOut]
    next_cursor: str | None


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
