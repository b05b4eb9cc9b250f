"""Audit.state_at: an aggregate's state at every version, replayed from its own stream."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from application.audit import Audit
from application.catalog import Catalog
from application.identity import Identity
from application.settings import Settings
from domain.errors import NotFound
from domain.user import EmailClaim
from tests.support.api import PASSWORD


def test_user_state_at_each_version(prepared: Settings) -> None:
    identity = Identity(prepared)
    out = identity.register("Ann@Example.test", PASSWORD, "Ann Lee", "student")  # v1 Registered, v2 SessionStarted
    assert out.tokens is not None
    account = identity.authenticate(out.tokens.access_token)
    uid = account.user_id
    identity.update_profile(account, {"timezone": "Europe/Berlin", "language": "de"})  # v3
    identity.admin_update(uid, role="tutor")  # v4
    identity.admin_update(uid, is_active=False)  # v5
    identity.admin_update(uid, is_active=True)  # v6
    identity.admin_delete(uid)  # v7

    base = {
        "email": "ann@example.test",
        "full_name": "Ann Lee",
        "role": "student",
        "is_active": True,
        "deleted": False,
        "timezone": "UTC",
        "language": "en",
        "currency": "USD",
        "avatar_url": None,
        "avatar": None,
        "email_notifications": True,
    }
    changes: list[dict[str, Any]] = [
        {},
        {},
        {"timezone": "Europe/Berlin", "language": "de"},
        {"role": "tutor"},
        {"is_active": False},
        {"is_active": True},
        {"deleted": True, "is_active": False},
    ]
    events = list(identity.repository.event_store.get(uid))
    assert len(events) == len(changes)

    audit = Audit(prepared)
    expected = dict(base)
    for version, change in enumerate(changes, start=1):
        expected.update(change)
        at, state, kind = audit.state_at(uid, version)
        assert (at, kind) == (version, "User")
        assert json.loads(json.dumps(state)) == state  # plain JSON values only
        assert set(state) == {*base, "registered_at", "id", "version", "created_on", "modified_on"}
        assert {k: state[k] for k in base} == expected, f"state at version {version}"
        assert state["id"] == str(uid) and state["version"] == version
        assert datetime.fromisoformat(state["created_on"]) == events[0].timestamp  # type: ignore[attr-defined]
        assert datetime.fromisoformat(state["modified_on"]) == events[version - 1].timestamp  # type: ignore[attr-defined]
        assert datetime.fromisoformat(state["registered_at"]) == events[0].registered_at  # type: ignore[attr-defined]

    latest = audit.state_at(uid, None)
    assert latest[0] == 7 and latest[1]["deleted"] is True
    assert audit.state_at(uid, 99)[0] == 7  # a version past the head shows the newest state


def test_state_at_other_aggregates_and_unknown_ids(prepared: Settings) -> None:
    catalog = Catalog(prepared)
    view, _ = catalog.create_subject("Algebra", "Maths")
    sid = UUID(view["id"])
    catalog.rename_subject(sid, "Linear Algebra")
    catalog.retire_subject(sid)
    audit = Audit(prepared)
    states = [audit.state_at(sid, v) for v in (1, 2, 3)]
    assert [(at, kind) for at, _, kind in states] == [(1, "Subject"), (2, "Subject"), (3, "Subject")]
    assert [(s["name"], s["active"]) for _, s, _ in states] == [
        ("Algebra", True),
        ("Linear Algebra", True),
        ("Linear Algebra", False),
    ]

    identity = Identity(prepared)
    out = identity.register("bob@example.test", PASSWORD, "Bob", "tutor")
    at, claim, kind = audit.state_at(EmailClaim.create_id("BOB@example.test"), 1)
    assert (at, kind, claim["email"], claim["user_id"]) == (1, "EmailClaim", "bob@example.test", out.user["id"])

    with pytest.raises(NotFound):
        audit.state_at(uuid4(), None)
    with pytest.raises(NotFound):
        audit.state_at(uuid4(), 1)
