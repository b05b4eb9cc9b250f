"""users_directory: one row per user for the admin list and lookups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from domain.user import User
from projections.runner import Envelope, Projection, load_rows, replace_rows, topic_of

COLUMNS = (
    "user_id",
    "email",
    "full_name",
    "role",
    "is_active",
    "deleted",
    "timezone",
    "language",
    "currency",
    "avatar_url",
    "avatar_key",
    "avatar_type",
    "registered_at",
    "registered_position",
    "updated_position",
)
PROFILE_FIELDS = ("full_name", "timezone", "language", "currency", "avatar_url")


class UsersDirectory(Projection):
    """Users by role, activity and text; soft-deleted users stay, marked inactive. A user's picture is either
    `avatar_url` (set through PATCH /me) or an uploaded avatar (`avatar_key` of its checked copy, `avatar_type`).

    A batch is folded in memory (see runner.load_rows): the rows it touches are read once, the events applied to
    them in order, and the rows written back with one DELETE and one COPY. `search` is a generated column."""

    name = "users_directory"
    version = 3
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
            User.AvatarChanged,
            User.AvatarOverridden,
        )
    )

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        table = t["users_directory"]
        born = {e.aggregate_id for e in events if e.type == "User.Registered"}
        rows = load_rows(cur, table, COLUMNS, {e.aggregate_id for e in events} - born)
        stored = set(rows)
        for e in events:
            d = e.data
            if e.type == "User.Registered":
                rows[e.aggregate_id] = {
                    "user_id": e.aggregate_id,
                    "email": d["email"],
                    "full_name": d["full_name"],
                    "role": d["role"],
                    "is_active": True,
                    "deleted": False,
                    "timezone": "UTC",
                    "language": "en",
                    "currency": "USD",
                    "avatar_url": None,
                    "avatar_key": None,
                    "avatar_type": None,
                    "registered_at": d["registered_at"],
                    "registered_position": e.position,
                    "updated_position": e.position,
                }
                continue
            row = rows.get(e.aggregate_id)
            if row is None:
                continue  # an event of a user this read model never saw registered: nothing to update
            if e.type == "User.ProfileUpdated":
                changes = {k: v for k, v in d["changes"].items() if k in PROFILE_FIELDS}
                if not changes:
                    continue
                row.update(changes)
                if "avatar_url" in changes:  # a picture elsewhere (or none) replaces an uploaded one
                    row["avatar_key"] = row["avatar_type"] = None
            elif e.type == "User.RoleChanged":
                row["role"] = d["role"]
            elif e.type in ("User.Deactivated", "User.Reactivated"):
                row["is_active"] = e.type == "User.Reactivated"
            elif e.type == "User.Deleted":
                row["deleted"], row["is_active"] = True, False
            elif e.type in ("User.AvatarChanged", "User.AvatarOverridden"):
                # the checked copy's key and type (none: the avatar was removed); the API signs its download URL
                row["avatar_key"], row["avatar_type"], row["avatar_url"] = d["key"], d["content_type"], None
            row["updated_position"] = e.position
        replace_rows(cur, table, COLUMNS, rows.values(), stored)
