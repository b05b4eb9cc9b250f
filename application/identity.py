"""Identity context: registration, login, token rotation, profile and admin user management."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventsourcing.application import AggregateNotFoundError

from application.accounts import ACCOUNT_SQL, Account, account_changed, account_of, token_subject
from application.storage import UPLOAD_TTL, safe_name
from application.store import EventStoreApp, Loaded, SideWrite, is_unique_violation
from application.tokens import Tokens, digest, issue_access, new_refresh_token
from domain.errors import (
    DomainError,
    EmailTaken,
    InvalidCredentials,
    NotFound,
    Unauthenticated,
    ValidationFailed,
)
from domain.ids import normalise_email
from domain.tutor import TutorProfile
from domain.user import ADMIN_PROFILE_FIELDS, EmailClaim, User, check_password
from domain.user_avatar import Avatar, AvatarUpload, avatar_filename, check_reason


@dataclass(frozen=True)
class Outcome:
    """The result of a command: the user's state, new tokens if any, and the event position it reached."""

    user: dict[str, Any]
    position: int
    tokens: Tokens | None = None


@dataclass(frozen=True)
class AvatarUploadTicket:
    """An announced avatar upload and where its owner PUTs the image, until `expires_at`."""

    upload: AvatarUpload
    upload_url: str
    expires_at: datetime
    position: int


class Identity(EventStoreApp):
    """Accounts and sessions. Password hashes and refresh digests are kept in side tables, never in events."""

    _hasher: PasswordHasher | None = None
    _dummy_hash: str = ""

    @property
    def hasher(self) -> PasswordHasher:
        """argon2id with the configured cost (production defaults; tests lower them by setting)."""
        if self._hasher is None:
            s = self.settings
            self._hasher = PasswordHasher(
                time_cost=s.argon2_time_cost, memory_cost=s.argon2_memory_kib, parallelism=s.argon2_parallelism
            )
            self._dummy_hash = self._hasher.hash("timing-equaliser-0")
        return self._hasher

    # ------------------------------------------------------------------------------------------ commands

    def register(self, email: str, password: str, full_name: str, role: str, *, staff: bool = False) -> Outcome:
        """Open an account (one per normalised email, even under concurrent requests) and a first session."""
        user = User.register(email, full_name, role, self.now(), staff=staff)
        check_password(password)
        if self._account_by_email(user.email) is not None:
            raise EmailTaken(f"an account with {user.email} already exists")
        claim = EmailClaim(email=user.email, user_id=user.id)
        password_hash = self.hasher.hash(password)
        writes: list[SideWrite] = [
            (
                "INSERT INTO identity_accounts (user_id, email, password_hash, role) VALUES (%s, %s, %s, %s)",
                (user.id, user.email, password_hash, user.role),
            )
        ]
        tokens = self._open_session(user, writes)
        # A tutor's profile starts as a draft with the account (same transaction).
        profile = TutorProfile(tutor_id=user.id) if user.role == "tutor" else None
        try:
            position = self.record(user, claim, profile, side_writes=writes, writer=user.id)
        except Exception as e:
            if is_unique_violation(e) and self._account_by_email(user.email) is not None:
                raise EmailTaken(f"an account with {user.email} already exists") from None
            raise
        return Outcome(self.view(user), position, tokens)

    def login(self, email: str, password: str) -> Outcome:
        """Check the password and start a session; every failure looks the same to the caller."""
        row = self._account_by_email(normalise_email(email))
        if row is None:
            self._verify(self._dummy_hash or self.hasher.hash("x1"), password)
            raise InvalidCredentials("wrong email or password")
        if not self._verify(row["password_hash"], password):
            raise InvalidCredentials("wrong email or password")
        if not row["is_active"] or row["deleted"]:
            raise InvalidCredentials("wrong email or password")

        user_id = row["user_id"]

        def log_in(got: Loaded) -> Outcome:
            user = got.need(User, user_id, "no such user")
            writes: list[SideWrite] = []
            tokens = self._open_session(user, writes)
            return Outcome(self.view(user), self.record(user, side_writes=writes, writer=user.id), tokens)

        return self.command(log_in, changes=[user_id])

    def refresh(self, refresh_token: str) -> Outcome:
        """Rotate a refresh token; presenting a spent one revokes its whole family."""
        if not refresh_token.startswith("rt."):
            raise Unauthenticated("invalid refresh token")
        with self.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT t.family_id, t.user_id, t.spent_at, t.expires_at <= now() AS expired, s.revoked_at, a.role, a.is_active,"
                " a.deleted FROM identity_refresh_tokens t JOIN identity_sessions s USING (family_id)"
                " JOIN identity_accounts a ON a.user_id = t.user_id WHERE t.token_hash = %s FOR UPDATE OF t, s",
                (digest(refresh_token),),
            ).fetchone()
            if row is None or row["revoked_at"] is not None:
                raise Unauthenticated("invalid refresh token")
            if row["spent_at"] is not None:
                conn.execute(
                    "UPDATE identity_sessions SET revoked_at = now(), revoked_reason = 'reuse' WHERE family_id = %s",
                    (row["family_id"],),
                )
                conn.execute(*account_changed(row["user_id"]))
                reused = row
            else:
                reused = None
                if row["expired"] or not row["is_active"] or row["deleted"]:
                    raise Unauthenticated("invalid refresh token")
                conn.execute(
                    "UPDATE identity_refresh_tokens SET spent_at = now() WHERE token_hash = %s",
                    (digest(refresh_token),),
                )
                token, token_hash = new_refresh_token(row["family_id"])
                conn.execute(
                    "INSERT INTO identity_refresh_tokens (token_hash, family_id, user_id, expires_at)"
                    " VALUES (%s, %s, %s, now() + %s)",
                    (token_hash, row["family_id"], row["user_id"], timedelta(days=self.settings.refresh_token_days)),
                )
        if reused is not None:
            self._record_revocation(reused["user_id"], reused["family_id"], "refresh token reuse detected")
            raise Unauthenticated("refresh token already used; the session has been revoked")
        access = issue_access(
            self.settings.jwt_secret,
            str(row["user_id"]),
            row["role"],
            self.settings.access_token_seconds,
            row["family_id"],
        )
        tokens = Tokens(access, token, self.settings.access_token_seconds)
        return Outcome({"id": str(row["user_id"])}, self.head(), tokens)

    def logout(self, actor: Account, refresh_token: str) -> int:
        """Revoke the caller's session named by the refresh token."""
        with self.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT family_id, user_id FROM identity_refresh_tokens WHERE token_hash = %s",
                (digest(refresh_token),),
            ).fetchone()
            if row is None or row["user_id"] != actor.user_id:
                raise NotFound("no such session")
            revoked = conn.execute(
                "UPDATE identity_sessions SET revoked_at = now(), revoked_reason = 'logout'"
                " WHERE family_id = %s AND revoked_at IS NULL",
                (row["family_id"],),
            ).rowcount
            conn.execute(*account_changed(actor.user_id))  # the session's access tokens stop at once
        if revoked:
            return self._record_revocation(actor.user_id, row["family_id"], "logout")
        return self.head()

    def update_profile(self, actor: Account, changes: dict[str, Any]) -> Outcome:
        """The caller edits their own profile."""

        def update(got: Loaded) -> Outcome:
            user = got.need(User, actor.user_id, "no such user")
            user.update_profile(changes)
            return Outcome(self.view(user), self.record(user))

        return self.command(update, changes=[actor.user_id])

    def admin_update(
        self,
        user_id: UUID,
        role: str | None = None,
        is_active: bool | None = None,
        *,
        profile: dict[str, Any] | None = None,
        by: UUID | None = None,
    ) -> Outcome:
        """An admin (`by`, never on their own account) changes a user's role and/or activity, and/or edits their
        `profile` (full_name, timezone, language, currency: the rule PATCH /me follows), all in one transaction."""

        profile_id = TutorProfile.create_id(user_id)

        def update(got: Loaded) -> Outcome:
            user = got.need(User, user_id, "no such user")
            if profile:
                user.update_profile(profile, ADMIN_PROFILE_FIELDS)
            if role is not None:
                user.change_role(role, by=by)
            if is_active is True:
                user.reactivate()
            elif is_active is False:
                user.deactivate(by=by)
            if role is None and is_active is None:
                return Outcome(self.view(user), self.record(user))
            write = (
                "UPDATE identity_accounts SET role = %s, is_active = %s WHERE user_id = %s",
                (user.role, user.is_active, user.id),
            )
            reason = "deactivated" if not user.is_active else "no longer a tutor"
            tutor = _tutor_side(user, got.get(TutorProfile, profile_id), reason)
            return Outcome(self.view(user), self.record(user, tutor, side_writes=[write, account_changed(user.id)]))

        return self.command(update, changes=[user_id, profile_id])

    def request_avatar(self, actor: Account, filename: str, content_type: str, size: int) -> AvatarUploadTicket:
        """Announce an avatar upload (an image of at most 5 MB, checked first) and sign its PUT URL."""
        upload_id = uuid.uuid4()
        key = f"users/{actor.user_id}/avatars/{upload_id}/{safe_name(filename)}"
        upload = AvatarUpload.announce(upload_id, actor.user_id, filename, content_type, size, key)
        url = self.storage.upload_url(key)
        return AvatarUploadTicket(upload, url, self.clock.now() + UPLOAD_TTL, self.record(upload))

    def complete_avatar(self, actor: Account, upload_id: UUID) -> Outcome:
        """Check the caller's uploaded image (domain/files.py) and make it their avatar."""

        def complete(got: Loaded) -> Outcome:
            upload = got.get(AvatarUpload, upload_id)
            if upload is None or upload.owner_id != actor.user_id:
                raise NotFound("no such avatar upload")
            user = got.need(User, actor.user_id, "no such user")
            self._check_upload(upload)
            user.change_avatar(upload.avatar)
            return Outcome(self.view(user), self.record(upload, user))

        return self.command(complete, changes=[upload_id, actor.user_id])

    def override_avatar(self, user_id: UUID, upload_id: UUID | None, reason: str, *, by: UUID) -> Outcome:
        """An admin (`by`) replaces a user's avatar with an image the admin uploaded (checked like any avatar), or
        removes it (`upload_id` None), saying why: the User records AvatarOverridden with the reason."""
        check_reason(reason)  # the body's own rule, before anything is read

        def override(got: Loaded) -> Outcome:
            user = got.need(User, user_id, "no such user")
            avatar: Avatar | None = None
            upload = got.get(AvatarUpload, upload_id) if upload_id is not None else None
            if upload_id is not None:
                if upload is None or upload.owner_id != by:
                    raise ValidationFailed([("upload_id", "not an avatar upload of yours")])
                self._check_upload(upload)
                avatar = upload.avatar
            user.override_avatar(avatar, reason)
            return Outcome(self.view(user), self.record(upload, user))

        return self.command(override, changes=[user_id] if upload_id is None else [user_id, upload_id])

    def admin_delete(self, user_id: UUID, *, by: UUID | None = None) -> Outcome:
        """Soft-delete a user (`by`: the admin, never themselves): the stream stays, the account and its sessions
        close at once."""

        profile_id = TutorProfile.create_id(user_id)

        def delete(got: Loaded) -> Outcome:
            user = got.need(User, user_id, "no such user")
            user.delete(by=by)
            writes: list[SideWrite] = [
                ("UPDATE identity_accounts SET deleted = true, is_active = false WHERE user_id = %s", (user.id,)),
                (
                    "UPDATE identity_sessions SET revoked_at = now(), revoked_reason = 'deleted'"
                    " WHERE user_id = %s AND revoked_at IS NULL",
                    (user.id,),
                ),
                account_changed(user.id),
            ]
            profile = _tutor_side(user, got.get(TutorProfile, profile_id), "deleted")
            return Outcome(self.view(user), self.record(user, profile, side_writes=writes))

        return self.command(delete, changes=[user_id, profile_id])

    # ------------------------------------------------------------------------------------------- queries

    def authenticate(self, access_token: str) -> Account:
        """Verify an access token and that its user is still active (so deactivation bites at once)."""
        user_id, session_id = token_subject(self.settings.jwt_secret, access_token)
        with self.connection() as conn:
            row = conn.execute(ACCOUNT_SQL, (session_id, user_id), prepare=True).fetchone()
        return account_of(user_id, row)

    def view(self, user: User) -> dict[str, Any]:
        """The /me shape of a User: an uploaded avatar as a 24-hour download URL of its checked copy, else the URL
        the user set."""
        avatar = user.avatar
        return {
            "id": str(user.id),
            "email": user.email,
            "full_name": user.full_name,
            "role": user.role,
            "is_active": user.is_active and not user.deleted,
            "timezone": user.timezone,
            "language": user.language,
            "currency": user.currency,
            "avatar_url": user.avatar_url if avatar is None else self.avatar_url(avatar.key, avatar.content_type),
            "email_notifications": user.email_notifications,
        }

    def avatar_url(self, key: str, content_type: str) -> str:
        """A 24-hour download URL of an avatar's checked copy (of a User, or of a read model's record of one)."""
        return self.storage.download_url(key, avatar_filename(content_type), content_type)

    def me(self, actor: Account) -> dict[str, Any]:
        """The caller's own account (a single-stream read of their own User)."""
        return self.view(self._user(actor.user_id))

    # ------------------------------------------------------------------------------------------- helpers

    def _user(self, user_id: UUID) -> User:
        try:
            user: Any = self.repository.get(user_id)
        except AggregateNotFoundError:
            raise NotFound("no such user") from None
        if not isinstance(user, User):
            raise NotFound("no such user")
        return user

    def _check_upload(self, upload: AvatarUpload) -> None:
        """The first time an avatar upload is used, copy it to a key its owner cannot write and check that copy
        (deleted again when it is not the announced image); avatars are served from the copy."""
        if upload.checked_key is not None:
            return
        checked_key = f"checked/avatars/{upload.id}"
        stored = self.storage.copy_to_check(upload.key, checked_key)
        try:
            upload.check_stored(stored, checked_key)
        except DomainError:
            if stored is not None:
                self.storage.remove(checked_key)
            raise

    def _account_by_email(self, email: str) -> Any:
        with self.connection() as conn:
            return conn.execute(
                "SELECT user_id, password_hash, role, is_active, deleted FROM identity_accounts WHERE email = %s",
                (email,),
            ).fetchone()

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _open_session(self, user: User, writes: list[SideWrite]) -> Tokens:
        family = uuid.uuid4()
        user.log_in(family)
        token, token_hash = new_refresh_token(family)
        writes.append(("INSERT INTO identity_sessions (family_id, user_id) VALUES (%s, %s)", (family, user.id)))
        writes.append(
            (
                "INSERT INTO identity_refresh_tokens (token_hash, family_id, user_id, expires_at) VALUES (%s, %s, %s, now() + %s)",
                (token_hash, family, user.id, timedelta(days=self.settings.refresh_token_days)),
            )
        )
        access = issue_access(
            self.settings.jwt_secret, str(user.id), user.role, self.settings.access_token_seconds, family
        )
        return Tokens(access, token, self.settings.access_token_seconds)

    def _record_revocation(self, user_id: UUID, family_id: UUID, reason: str) -> int:
        def end(got: Loaded) -> int:
            user = got.need(User, user_id, "no such user")
            user.end_session(family_id, reason)
            return self.record(user)

        return self.command(end, changes=[user_id])


def _tutor_side(user: User, profile: TutorProfile | None, reason: str) -> TutorProfile | None:
    """The user's tutor profile (`profile`, None if they never had one), told whether the account can still teach
    (saved with the user, in one transaction): a deactivated, deleted or re-roled tutor leaves search and booking,
    and comes back when active as a tutor again. None when there is no profile or nothing changed."""
    if profile is None:
        return None
    if user.is_active and not user.deleted and user.role == "tutor":
        profile.reopen_account()
    else:
        profile.close_account(reason)
    return profile if profile.pending_events else None
