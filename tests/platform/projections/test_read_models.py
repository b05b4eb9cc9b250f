"""The read models' rows after each command of the application layer (users_directory, subjects)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row

from application.accounts import Account
from application.catalog import Catalog
from application.identity import Identity
from application.settings import Settings
from domain.errors import NotFound
from projections.runner import Projection, Runner
from projections.subjects import Subjects
from projections.users_directory import UsersDirectory
from tests.platform.projections.support import head, tracking

pytestmark = pytest.mark.small_pool


class Model:
    """One projection kept up to date on demand (a Runner on its active generation) and read through its view."""

    def __init__(self, dsn: str, projection: Projection, key: str) -> None:
        self.dsn, self.projection, self.key = dsn, projection, key
        self.runner = Runner(dsn, projection, 1, batch_size=3)

    def row(self, ident: Any, position: int) -> dict[str, Any]:
        """Catch up, check the projection reached `position` (the command's), and return the row."""
        self.runner.catch_up()
        assert self.runner.position() >= position
        rows = self.rows()
        assert ident in rows, f"no {self.projection.name} row for {ident}"
        return rows[ident]

    def rows(self) -> dict[Any, dict[str, Any]]:
        with psycopg.connect(self.dsn, row_factory=dict_row) as c:
            return {r[self.key]: r for r in c.execute(f"SELECT * FROM {self.projection.name}").fetchall()}


@pytest.fixture
def users(prepared: Settings) -> Iterator[Model]:
    m = Model(prepared.database_url, UsersDirectory(), "user_id")
    yield m
    m.runner.close()


@pytest.fixture
def subjects(prepared: Settings) -> Iterator[Model]:
    m = Model(prepared.database_url, Subjects(), "subject_id")
    yield m
    m.runner.close()


def event_position(dsn: str, aggregate_id: UUID, type_: str) -> int:
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "SELECT max(notification_id) FROM tutorconnect_events WHERE originator_id = %s AND topic LIKE %s",
            (aggregate_id, f"%:{type_}"),
        ).fetchone()
    assert row is not None and row[0] is not None, f"no {type_} event for {aggregate_id}"
    return int(row[0])


def test_users_directory_follows_a_user_through_its_life(prepared: Settings, users: Model) -> None:
    dsn = prepared.database_url
    identity = Identity(prepared)

    o = identity.register("  Alice.Liddell@Example.TEST ", "Passw0rd-test", "Alice Liddell", "student")
    alice = Account(UUID(o.user["id"]), "student")
    registered = event_position(dsn, alice.user_id, "User.Registered")
    row = users.row(alice.user_id, o.position)
    assert registered <= o.position
    assert {k: v for k, v in row.items() if k != "registered_at"} == {
        "user_id": alice.user_id,
        "email": "alice.liddell@example.test",
        "full_name": "Alice Liddell",
        "role": "student",
        "is_active": True,
        "deleted": False,
        "timezone": "UTC",
        "language": "en",
        "currency": "USD",
        "avatar_url": None,
        "avatar_key": None,
        "avatar_type": None,
        "registered_position": registered,
        "updated_position": registered,
        "search": "alice liddell alice.liddell@example.test",
    }
    assert isinstance(row["registered_at"], datetime)
    assert row["registered_at"] == identity._user(alice.user_id).registered_at

    ob = identity.register("bob@example.test", "Passw0rd-test", "Bob Tutor", "tutor")
    bob_id = UUID(ob.user["id"])
    bob = users.row(bob_id, ob.position)
    assert (bob["role"], bob["is_active"], bob["registered_position"]) == ("tutor", True, bob["updated_position"])
    assert bob["registered_position"] > registered

    # Profile update: every directory field, and the search text follows the name.
    o = identity.update_profile(
        alice,
        {
            "full_name": "Alice Pleasance",
            "timezone": "Europe/London",
            "language": "pt-BR",
            "currency": "GBP",
            "avatar_url": "https://example.test/alice.png",
        },
    )
    row = users.row(alice.user_id, o.position)
    assert (row["full_name"], row["timezone"], row["language"], row["currency"], row["avatar_url"]) == (
        "Alice Pleasance",
        "Europe/London",
        "pt-BR",
        "GBP",
        "https://example.test/alice.png",
    )
    assert row["search"] == "alice pleasance alice.liddell@example.test"
    assert (row["registered_position"], row["updated_position"]) == (registered, o.position)
    o = identity.update_profile(alice, {"avatar_url": None, "language": "fr"})
    row = users.row(alice.user_id, o.position)
    assert (row["avatar_url"], row["language"], row["full_name"]) == (None, "fr", "Alice Pleasance")
    assert row["search"] == "alice pleasance alice.liddell@example.test"
    assert row["updated_position"] == o.position
    before = row

    # A login (SessionStarted) is no directory event: the row stays as it was.
    o = identity.login("alice.liddell@example.test", "Passw0rd-test")
    assert users.row(alice.user_id, o.position) == before

    o = identity.admin_update(alice.user_id, role="tutor")
    row = users.row(alice.user_id, o.position)
    assert (row["role"], row["is_active"], row["updated_position"]) == ("tutor", True, o.position)

    o = identity.admin_update(alice.user_id, is_active=False)
    row = users.row(alice.user_id, o.position)
    assert (row["role"], row["is_active"], row["deleted"], row["updated_position"]) == (
        "tutor",
        False,
        False,
        o.position,
    )

    o = identity.admin_update(alice.user_id, is_active=True)
    row = users.row(alice.user_id, o.position)
    assert (row["is_active"], row["deleted"], row["updated_position"]) == (True, False, o.position)

    # Role change and deactivation in one command: two events, both applied.
    o = identity.admin_update(alice.user_id, role="admin", is_active=False)
    row = users.row(alice.user_id, o.position)
    assert (row["role"], row["is_active"], row["updated_position"]) == ("admin", False, o.position)
    assert event_position(dsn, alice.user_id, "User.RoleChanged") < o.position

    o = identity.admin_delete(alice.user_id)
    row = users.row(alice.user_id, o.position)
    assert (row["deleted"], row["is_active"], row["role"], row["updated_position"]) == (
        True,
        False,
        "admin",
        o.position,
    )
    assert (row["email"], row["full_name"], row["registered_position"]) == (
        "alice.liddell@example.test",
        "Alice Pleasance",
        registered,
    )

    # Deleting an already deleted user records nothing; Bob was never touched; the directory is at the head.
    with pytest.raises(NotFound):
        identity.admin_delete(alice.user_id)
    rows = users.rows()
    assert set(rows) == {alice.user_id, bob_id}
    assert rows[bob_id] == bob
    assert tracking(dsn, "users_directory")[0][1:3] == ("active", head(dsn))


def test_subjects_reflect_create_rename_and_retire(prepared: Settings, subjects: Model) -> None:
    dsn = prepared.database_url
    catalog = Catalog(prepared)

    algebra, p_algebra = catalog.create_subject("  Algebra ", "Maths")
    piano, p_piano = catalog.create_subject("Piano", "Music")
    french, p_french = catalog.create_subject("French", "Languages")
    a_id, p_id, f_id = (UUID(s["id"]) for s in (algebra, piano, french))
    row = subjects.row(a_id, p_french)
    assert row == {
        "subject_id": a_id,
        "name": "Algebra",
        "category": "Maths",
        "active": True,
        "created_position": p_algebra,
    }
    assert subjects.rows()[p_id] == {
        "subject_id": p_id,
        "name": "Piano",
        "category": "Music",
        "active": True,
        "created_position": p_piano,
    }

    _, position = catalog.rename_subject(a_id, "Linear algebra")
    row = subjects.row(a_id, position)
    assert (row["name"], row["category"], row["active"], row["created_position"]) == (
        "Linear algebra",
        "Maths",
        True,
        p_algebra,
    )

    _, position = catalog.retire_subject(p_id)
    row = subjects.row(p_id, position)
    assert (row["name"], row["active"], row["created_position"]) == ("Piano", False, p_piano)

    # Retiring twice and renaming to the same name record nothing; a retired subject can still be renamed.
    events_before = head(dsn)
    catalog.retire_subject(p_id)
    catalog.rename_subject(a_id, "Linear algebra")
    assert head(dsn) == events_before
    _, position = catalog.rename_subject(p_id, "Classical piano")
    row = subjects.row(p_id, position)
    assert (row["name"], row["active"]) == ("Classical piano", False)

    rows = subjects.rows()
    assert set(rows) == {a_id, p_id, f_id}
    assert rows[f_id] == {
        "subject_id": f_id,
        "name": "French",
        "category": "Languages",
        "active": True,
        "created_position": p_french,
    }
    assert [r["name"] for r in sorted(rows.values(), key=lambda r: r["created_position"])] == [
        "Linear algebra",
        "Classical piano",
        "French",
    ]
    assert tracking(dsn, "subjects")[0][1:] == ("active", head(dsn), 6)
