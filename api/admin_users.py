"""Admin user management: list and filter, one user in full, change role, activity or profile, override the avatar,
soft delete."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, put

from api.deps import command, decode_cursor, encode_cursor, like_pattern, limit_of, query, reading
from api.guards import ADMIN, BEARER
from api.identity import ProfileUpdate
from api.schemas.identity import (
    AdminUserDetailOut,
    AdminUserOut,
    AdminUserPage,
    UserAccountOut,
    admin_user_detail_out,
)
from api.services import Services
from application.accounts import Account
from application.identity import Identity
from domain.errors import NotFound, ValidationFailed
from domain.user import ADMIN_PROFILE_FIELDS


class AdminUserUpdate(ProfileUpdate):
    """PATCH /admin/users/{id}: any subset of role, activity and the profile fields PATCH /me takes (but the
    avatar, which has its own route), checked by the same rule."""

    role: str | msgspec.UnsetType = msgspec.UNSET
    is_active: bool | msgspec.UnsetType = msgspec.UNSET


class AvatarOverride(msgspec.Struct):
    """PUT /admin/users/{id}/avatar: an avatar upload of the admin's own (POST /me/avatar), or null to remove the
    user's picture, and why (1 to 500 characters)."""

    upload_id: UUID | None
    reason: str


USER_SQL = (
    "SELECT user_id, email, full_name, role, is_active, deleted, timezone, language, currency, avatar_url, avatar_key,"
    " avatar_type, registered_at FROM users_directory WHERE user_id = %s"
)
# The tutor's row with the subjects it names, in the tutor's order (retired ones included).
TUTOR_SQL = (
    "SELECT t.status, t.bio, t.location, t.languages, t.experience, t.hourly_amount, t.currency, t.availability,"
    " t.documents, t.completeness, t.feedback, t.submitted_at, t.auto_confirm, t.min_notice_minutes, t.account_open,"
    " t.listed, t.rating_avg, t.rating_count, coalesce((SELECT json_agg(json_build_object('id', u.id, 'name',"
    " coalesce(s.name, ''), 'category', coalesce(s.category, ''), 'active', coalesce(s.active, false)) ORDER BY u.i)"
    " FROM unnest(t.subject_ids) WITH ORDINALITY u(id, i) LEFT JOIN tutors_subject_names s ON s.subject_id = u.id),"
    " '[]') AS subjects FROM tutors t WHERE t.tutor_id = %s"
)
DETAIL_READ_MODELS = ("users_directory", "tutors")


def admin_user_detail(conn: Any, user_id: UUID, services: Services) -> AdminUserDetailOut:
    """One user as the admin sees them, from the read models (`conn`, once DETAIL_READ_MODELS are as fresh as
    needed): the account and, for anyone who has a tutor profile, all of it. 404 for an unknown id."""
    user = conn.execute(USER_SQL, (user_id,)).fetchone()
    if user is None:
        raise NotFound("no such user")
    tutor = conn.execute(TUTOR_SQL, (user_id,)).fetchone()
    return admin_user_detail_out(user, tutor, services.identity, services.tutoring)


def flag(name: str, raw: str | None) -> bool | None:
    """A true/false query parameter (None when absent); 422 naming it otherwise."""
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ValidationFailed([(name, "true or false")])


def users_page(
    conn: Any, role: str | None, active: bool | None, q: str | None, n: int, after: int | None, identity: Identity
) -> AdminUserPage:
    """Users from `users_directory`, newest first (registered before position `after`, a decoded cursor), filtered
    by role, activity and q (a literal substring of name or email): GET /admin/users and the console's user list.
    The callers check the parameters (`flag`, `decode_cursor`) before they wait for the read model."""
    where: list[str] = ["true"]
    params: list[Any] = []
    if role:
        where.append("role = %s")
        params.append(role)
    if active is not None:
        where.append("is_active = %s")
        params.append(active)
    if q:
        where.append("search LIKE %s ESCAPE '\\'")
        params.append(like_pattern(q))
    if after is not None:
        where.append("registered_position < %s")
        params.append(int(after))
    sql = (
        "SELECT user_id, email, full_name, role, is_active, deleted, timezone, language, currency, avatar_url,"
        " avatar_key, avatar_type, registered_at, registered_position FROM users_directory WHERE "
        + " AND ".join(where)
        + " ORDER BY registered_position DESC LIMIT %s"
    )
    rows = conn.execute(sql, (*params, n + 1)).fetchall()
    next_cursor = encode_cursor(rows[n - 1]["registered_position"]) if len(rows) > n else None
    return AdminUserPage([AdminUserOut.of(r, identity) for r in rows[:n]], next_cursor)


class AdminUsersController(Controller):
    """Admins manage accounts; every change is an event with the admin as actor."""

    path = "/admin/users"
    guards = ADMIN
    tags = ["admin"]
    security = BEARER

    @get("/", sync_to_thread=True)
    def list_users(
        self,
        request: Request[Account, Any, Any],
        services: Services,
        role: str | None = None,
        is_active: str | None = None,
        q: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Response[AdminUserPage]:
        """Users, newest first; filters role, is_active and q (literal substring of name or email)."""
        n, active, after = limit_of(limit), flag("is_active", is_active), decode_cursor(cursor, int)
        with reading(request, ("users_directory",), request.user) as (conn, pos):
            return query(users_page(conn, role, active, q, n, after, services.identity), pos)

    @get("/{user_id:uuid}", sync_to_thread=True)
    def user_detail(
        self, request: Request[Account, Any, Any], services: Services, user_id: UUID
    ) -> Response[AdminUserDetailOut]:
        """One user in full, deleted ones included: the account and their whole tutor profile (null if none)."""
        with reading(request, DETAIL_READ_MODELS, request.user) as (conn, pos):
            return query(admin_user_detail(conn, user_id, services), pos)

    @patch("/{user_id:uuid}", sync_to_thread=True)
    def update_user(
        self, request: Request[Account, Any, Any], services: Services, user_id: UUID, data: AdminUserUpdate
    ) -> Response[UserAccountOut]:
        """Change a user's role, activity (deactivation locks them out at once) and/or name, time zone, language
        and currency (as PATCH /me checks them), in one transaction; the admin is the events' actor."""
        role = None if data.role is msgspec.UNSET else data.role
        active = None if data.is_active is msgspec.UNSET else data.is_active
        o = services.identity.admin_update(
            user_id, role=role, is_active=active, profile=data.changes(ADMIN_PROFILE_FIELDS), by=request.user.user_id
        )
        services.accounts.forget(user_id)  # at once in this process; the others hear it from the commit's NOTIFY
        return command(UserAccountOut.of(o.user), o.position)

    @put("/{user_id:uuid}/avatar", sync_to_thread=True)
    def override_avatar(
        self, request: Request[Account, Any, Any], services: Services, user_id: UUID, data: AvatarOverride
    ) -> Response[UserAccountOut]:
        """Replace a user's avatar with an image the admin uploaded (POST /me/avatar), or remove it (null), saying
        why: recorded as User.AvatarOverridden with the reason, the admin its actor."""
        o = services.identity.override_avatar(user_id, data.upload_id, data.reason, by=request.user.user_id)
        return command(UserAccountOut.of(o.user), o.position)

    @delete("/{user_id:uuid}", status_code=200, sync_to_thread=True)
    def delete_user(
        self, request: Request[Account, Any, Any], services: Services, user_id: UUID
    ) -> Response[UserAccountOut]:
        """Soft delete: the history stays, the account closes."""
        o = services.identity.admin_delete(user_id, by=request.user.user_id)
        services.accounts.forget(user_id)  # at once in this process; the others hear it from the commit's NOTIFY
        return command(UserAccountOut.of(o.user), o.position)
