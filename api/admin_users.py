"""Admin user management: list and filter, change role or activity, soft delete."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, patch

from api.deps import command, decode_cursor, encode_cursor, like_pattern, limit_of, query, reading
from api.guards import ADMIN, BEARER
from api.schemas.identity import AdminUserOut, AdminUserPage, UserAccountOut
from api.services import Services
from application.identity import Account
from domain.errors import ValidationFailed


class AdminUserUpdate(msgspec.Struct):
    """PATCH /admin/users/{id}."""

    role: str | msgspec.UnsetType = msgspec.UNSET
    is_active: bool | msgspec.UnsetType = msgspec.UNSET


def _bool(name: str, raw: str | None) -> bool | None:
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ValidationFailed([(name, "true or false")])


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
        role: str | None = None,
        is_active: str | None = None,
        q: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Response[AdminUserPage]:
        """Users, newest first; filters role, is_active and q (literal substring of name or email)."""
        n = limit_of(limit)
        where: list[str] = ["true"]
        params: list[Any] = []
        if role:
            where.append("role = %s")
            params.append(role)
        active = _bool("is_active", is_active)
        if active is not None:
            where.append("is_active = %s")
            params.append(active)
        if q:
            where.append("search LIKE %s ESCAPE '\\'")
            params.append(like_pattern(q))
        after = decode_cursor(cursor, int)
        if after is not None:
            where.append("registered_position < %s")
            params.append(int(after))
        sql = (
            "SELECT user_id, email, full_name, role, is_active, deleted, timezone, language, currency, avatar_url,"
            " registered_at, registered_position FROM users_directory WHERE "
            + " AND ".join(where)
            + " ORDER BY registered_position DESC LIMIT %s"
        )
        with reading(request, ("users_directory",), request.user) as (conn, pos):
            rows = conn.execute(sql, (*params, n + 1)).fetchall()
        next_cursor = encode_cursor(rows[n - 1]["registered_position"]) if len(rows) > n else None
        return query(AdminUserPage([AdminUserOut.of(r) for r in rows[:n]], next_cursor), pos)

    @patch("/{user_id:uuid}", sync_to_thread=True)
    def update_user(
        self, request: Request[Account, Any, Any], services: Services, user_id: UUID, data: AdminUserUpdate
    ) -> Response[UserAccountOut]:
        """Change a user's role and/or activity (deactivation locks them out at once)."""
        role = None if data.role is msgspec.UNSET else data.role
        active = None if data.is_active is msgspec.UNSET else data.is_active
        o = services.identity.admin_update(user_id, role=role, is_active=active, by=request.user.user_id)
        services.accounts.forget(user_id)  # at once in this process; the others hear it from the commit's NOTIFY
        return command(request, UserAccountOut.of(o.user), o.position)

    @delete("/{user_id:uuid}", status_code=200, sync_to_thread=True)
    def delete_user(
        self, request: Request[Account, Any, Any], services: Services, user_id: UUID
    ) -> Response[UserAccountOut]:
        """Soft delete: the history stays, the account closes."""
        o = services.identity.admin_delete(user_id, by=request.user.user_id)
        services.accounts.forget(user_id)  # at once in this process; the others hear it from the commit's NOTIFY
        return command(request, UserAccountOut.of(o.user), o.position)
