"""Identity context: the User aggregate and the EmailClaim that makes one account per email."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, NotFound, ValidationFailed, WrongStatus
from domain.ids import derived_id, normalise_email
from domain.user_avatar import Avatar, check_reason

ROLES = ("student", "tutor", "admin", "finance")
SELF_SERVICE_ROLES = ("student", "tutor")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PROFILE_FIELDS = ("full_name", "timezone", "language", "currency", "avatar_url", "email_notifications")
# What an admin may edit of someone else's profile (PATCH /admin/users/{id}); the avatar has its own command
ADMIN_PROFILE_FIELDS = ("full_name", "timezone", "language", "currency")
_ZONES: frozenset[str] | None = None


def valid_timezone(name: str) -> bool:
    """True for an IANA zone name that zoneinfo knows (not an abbreviation or an offset)."""
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones())
    if name not in _ZONES:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def check_email(email: str) -> str:
    """Return the normalised email or refuse it."""
    norm = normalise_email(email)
    if not EMAIL_RE.match(norm) or len(norm) > 254:
        raise ValidationFailed([("email", "not a valid email address")])
    return norm


def check_password(password: str) -> None:
    """Passwords need 8+ characters with at least one letter and one digit."""
    if len(password) < 8 or not any(c.isalpha() for c in password) or not any(c.isdecimal() for c in password):
        raise ValidationFailed([("password", "at least 8 characters with a letter and a digit")])


def check_profile(changes: dict[str, Any], fields: tuple[str, ...] = PROFILE_FIELDS) -> None:
    """Validate a profile change set (PATCH /me; an admin's PATCH /admin/users/{id} with fewer `fields`)."""
    errors: list[tuple[str, str]] = []
    for key, value in changes.items():
        if key not in fields:
            errors.append((key, "unknown field"))
        elif key == "full_name" and (not isinstance(value, str) or not value.strip() or len(value) > 200):
            errors.append((key, "1 to 200 characters"))
        elif key == "timezone" and (not isinstance(value, str) or not valid_timezone(value)):
            errors.append((key, "not an IANA time zone"))
        elif key == "language" and (
            not isinstance(value, str) or not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z]{2,4})?", value)
        ):
            errors.append((key, "an ISO 639 language code such as 'en' or 'pt-BR'"))
        elif key == "currency" and (not isinstance(value, str) or not re.fullmatch(r"[A-Z]{3}", value)):
            errors.append((key, "an ISO 4217 currency code such as 'USD'"))
        elif key == "avatar_url" and value is not None and (not isinstance(value, str) or len(value) > 2000):
            errors.append((key, "a URL of at most 2000 characters"))
        elif key == "email_notifications" and not isinstance(value, bool):
            errors.append((key, "true or false"))
    if errors:
        raise ValidationFailed(errors)


class SelfLockout(DomainError):
    """An admin may not change their own role, deactivate or delete themselves (nobody could undo it)."""


class User(Aggregate):
    """One account. Holds no secret: the password hash lives outside the event log."""

    @event("Registered")
    def __init__(self, email: str, full_name: str, role: str, registered_at: datetime) -> None:
        self.email = email
        self.full_name = full_name
        self.role = role
        self.registered_at = registered_at
        self.is_active = True
        self.deleted = False
        self.timezone = "UTC"
        self.language = "en"
        self.currency = "USD"
        self.avatar_url: str | None = None  # a picture elsewhere, set through PATCH /me
        self.avatar: Avatar | None = None  # or an uploaded one (never both)
        self.email_notifications = True  # e-mails of bookings and expiring credit (PATCH /me turns them off)

    @classmethod
    def register(cls, email: str, full_name: str, role: str, now: datetime, *, staff: bool = False) -> User:
        """Create an account; self-service registration may only choose student or tutor."""
        allowed = ROLES if staff else SELF_SERVICE_ROLES
        errors = []
        if role not in allowed:
            errors.append(("role", f"one of {', '.join(allowed)}"))
        if not full_name.strip() or len(full_name) > 200:
            errors.append(("full_name", "1 to 200 characters"))
        if errors:
            raise ValidationFailed(errors)
        return cls(email=check_email(email), full_name=full_name.strip(), role=role, registered_at=now)

    def _alive(self) -> None:
        if self.deleted:
            raise NotFound("no such user")

    def update_profile(self, changes: dict[str, Any], fields: tuple[str, ...] = PROFILE_FIELDS) -> None:
        """Change profile fields (the user's own, or by an admin `ADMIN_PROFILE_FIELDS`); unchanged values record
        nothing. An `avatar_url` replaces an uploaded avatar (null: no picture at all)."""
        self._alive()
        check_profile(changes, fields)
        if "full_name" in changes:
            changes = {**changes, "full_name": changes["full_name"].strip()}
        diff = {
            k: v for k, v in changes.items() if getattr(self, k) != v or (k == "avatar_url" and self.avatar is not None)
        }
        if diff:
            self._profile_updated(changes=diff)

    @event("ProfileUpdated")
    def _profile_updated(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            setattr(self, key, value)
        if "avatar_url" in changes:
            self.avatar = None

    def change_avatar(self, avatar: Avatar) -> None:
        """The user's own checked upload becomes their picture (the same one again records nothing)."""
        self._alive()
        if avatar != self.avatar:
            self._avatar_changed(upload_id=avatar.upload_id, key=avatar.key, content_type=avatar.content_type)

    @event("AvatarChanged")
    def _avatar_changed(self, upload_id: UUID, key: str, content_type: str) -> None:
        self.avatar = Avatar(upload_id, key, content_type)
        self.avatar_url = None

    def override_avatar(self, avatar: Avatar | None, reason: str) -> None:
        """An admin replaces (or, with None, removes) the user's picture, saying why (1 to 500 characters); the
        event carries the reason, its metadata the admin. Leaving the picture as it is records nothing."""
        self._alive()
        why = check_reason(reason)
        if avatar == self.avatar and (avatar is not None or self.avatar_url is None):
            return
        if avatar is None:
            self._avatar_overridden(upload_id=None, key=None, content_type=None, reason=why)
        else:
            self._avatar_overridden(
                upload_id=avatar.upload_id, key=avatar.key, content_type=avatar.content_type, reason=why
            )

    @event("AvatarOverridden")
    def _avatar_overridden(
        self, upload_id: UUID | None, key: str | None, content_type: str | None, reason: str
    ) -> None:
        self.avatar = Avatar(upload_id, key, content_type) if upload_id and key and content_type else None
        self.avatar_url = None

    def _not_by_self(self, by: UUID | None, what: str) -> None:
        if by == self.id:
            raise SelfLockout(f"you cannot {what} your own account")

    def change_role(self, role: str, by: UUID | None = None) -> None:
        """Admins move a user between roles (`by`: the admin; never their own)."""
        self._alive()
        if role not in ROLES:
            raise ValidationFailed([("role", f"one of {', '.join(ROLES)}")])
        if role != self.role:
            self._not_by_self(by, "change the role of")
            self._role_changed(role=role, previous=self.role)

    @event("RoleChanged")
    def _role_changed(self, role: str, previous: str) -> None:
        self.role = role

    def deactivate(self, by: UUID | None = None) -> None:
        """Lock the user out; their tokens stop working at once (`by`: the admin; never their own)."""
        self._alive()
        if self.is_active:
            self._not_by_self(by, "deactivate")
            self._deactivated()

    @event("Deactivated")
    def _deactivated(self) -> None:
        self.is_active = False

    def reactivate(self) -> None:
        """Let a deactivated user back in."""
        self._alive()
        if not self.is_active:
            self._reactivated()

    @event("Reactivated")
    def _reactivated(self) -> None:
        self.is_active = True

    def delete(self, by: UUID | None = None) -> None:
        """Soft delete: the stream and its history stay; the account is closed for good (`by`: never themselves)."""
        self._alive()
        self._not_by_self(by, "delete")
        self._deleted()

    @event("Deleted")
    def _deleted(self) -> None:
        self.deleted = True
        self.is_active = False

    def log_in(self, family_id: UUID) -> None:
        """Record a new session (a refresh-token family) without any token in the event."""
        self._alive()
        if not self.is_active:
            raise WrongStatus("account is not active")
        self._session_started(family_id=family_id)

    @event("SessionStarted")
    def _session_started(self, family_id: UUID) -> None:
        pass

    def end_session(self, family_id: UUID, reason: str) -> None:
        """Record that a session's refresh family was revoked (logout or detected reuse)."""
        self._alive()
        self._session_revoked(family_id=family_id, reason=reason)

    @event("SessionRevoked")
    def _session_revoked(self, family_id: UUID, reason: str) -> None:
        pass


class EmailClaim(Aggregate):
    """Exists once per normalised email: its derived id makes a second registration a version clash."""

    @staticmethod
    def create_id(email: str) -> UUID:
        """The claim id for an email."""
        return derived_id("email", normalise_email(email))

    @event("Claimed")
    def __init__(self, email: str, user_id: UUID) -> None:
        self.email = email
        self.user_id = user_id
