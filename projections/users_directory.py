"""users_directory: one row per user for the admin list and lookups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from domain.user import User
from projections.runtime import Envelope, Projection, topic_of


class UsersDirectory(Projection):
    """Users by role, activity and text; soft-deleted users stay, marked inactive."""

    name = "users_directory"
    version = 1
    tables = ("users_directory",)
    topics = tuple(
        topic_of(c)
        for c in (
            User.Registered,
            User.ProfileUpdated,
            User.RoleChanged,
            User.Deactivated,
            User.Reactivated,
            User.Deleted,
        )
    )

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        table = t["users_directory"]
        for e in events:
            d = e.data
            if e.type == "User.Registered":
                cur.execute(
                    f"INSERT INTO {table} (user_id, email, full_name, role, is_active, registered_at,"
                    " registered_position, updated_position, search) VALUES (%s, %s, %s, %s, true, %s, %s, %s,"
                    " lower(%s || ' ' || %s))",
                    (
                        e.aggregate_id,
                        d["email"],
                        d["full_name"],
                        d["role"],
                        d["registered_at"],
                        e.position,
                        e.position,
                        d["full_name"],
                        d["email"],
                    ),
                )
            elif e.type == "User.ProfileUpdated":
                changes = {
                    k: v
                    for k, v in d["changes"].items()
                    if k in ("full_name", "timezone", "language", "currency", "avatar_url")
                }
                if not changes:
                    continue
                sets = ", ".join(f"{k} = %s" for k in changes)
                cur.execute(
                    f"UPDATE {table} SET {sets}, updated_position = %s WHERE user_id = %s",
                    (*changes.values(), e.position, e.aggregate_id),
                )
                if "full_name" in changes:
                    cur.execute(
                        f"UPDATE {table} SET search = lower(full_name || ' ' || email) WHERE user_id = %s",
                        (e.aggregate_id,),
                    )
            elif e.type == "User.RoleChanged":
                cur.execute(
                    f"UPDATE {table} SET role = %s, updated_position = %s WHERE user_id = %s",
                    (d["role"], e.position, e.aggregate_id),
                )
            elif e.type in ("User.Deactivated", "User.Reactivated"):
                cur.execute(
                    f"UPDATE {table} SET is_active = %s, updated_position = %s WHERE user_id = %s",
                    (e.type == "User.Reactivated", e.position, e.aggregate_id),
                )
            elif e.type == "User.Deleted":
                cur.execute(
                    f"UPDATE {table} SET deleted = true, is_active = false, updated_position = %s WHERE user_id = %s",
                    (e.position, e.aggregate_id),
                )
