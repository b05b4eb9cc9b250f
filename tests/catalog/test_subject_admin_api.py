"""Through the real app: PATCH /admin/subjects/{id} recategorises (alone or with a rename), and POST
/admin/subjects/{id}/restore brings a retired subject back (an active one: 409); the catalog, its category filter and
the tutors who teach the subject follow."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from application.settings import Settings
from tests.support.api import API, Actor, after, event_position, ok, problem
from tests.support.world import approve_tutor

pytestmark = pytest.mark.cloned_database

SUBJECTS = f"{API}/subjects"
ADMIN = f"{API}/admin/subjects"


def catalog(client: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = ok(client.get(SUBJECTS, params={"limit": 100, **params}, headers=headers))["items"]
    return items


def test_recategorise(client: Any, prepared: Settings, admin: Actor, tutor: Actor) -> None:
    body = ok(client.post(ADMIN, json={"name": "Algebra", "category": "Mathematics"}, headers=admin.auth), 201)
    sid = body["id"]
    approve_tutor(prepared, UUID(tutor.id), subject_id=sid)

    r = client.patch(f"{ADMIN}/{sid}", json={"category": "  Science "}, headers=admin.auth)
    moved = ok(r)
    event_position(r)
    assert moved == {**body, "category": "Science"}
    assert catalog(client, after(r), category="Science") == [moved]
    assert catalog(client, after(r), category="Mathematics") == []
    found = ok(client.get(f"{API}/tutors", headers=after(r)))["items"]
    assert [(t["id"], t["subjects"]) for t in found] == [
        (tutor.id, [{"id": sid, "name": "Algebra", "category": "Science"}])
    ]
    # full-text search finds the tutor by the new category
    by_word = ok(client.get(f"{API}/tutors", params={"q": "science"}, headers=after(r)))["items"]
    assert [t["id"] for t in by_word] == [tutor.id]

    # name and category in one request: one command, both changed
    r = client.patch(f"{ADMIN}/{sid}", json={"name": "Linear Algebra", "category": "Mathematics"}, headers=admin.auth)
    assert ok(r) == {**body, "name": "Linear Algebra"}
    assert catalog(client, after(r)) == [{**body, "name": "Linear Algebra"}]
    detail = ok(client.get(f"{API}/tutors/{tutor.id}", headers=after(r)))
    assert detail["subjects"] == [{"id": sid, "name": "Linear Algebra", "category": "Mathematics"}]
    events = ok(client.get(f"{API}/admin/events", params={"aggregate_id": sid}, headers=after(r, headers=admin.auth)))[
        "items"
    ]
    assert [e["type"] for e in events] == [
        "Subject.Created",
        "Subject.Recategorised",
        "Subject.Renamed",
        "Subject.Recategorised",
    ]
    assert events[1]["data"]["category"] == "Science" and events[1]["actor_id"] == admin.id

    # the same category again records nothing; bad input names its field
    again = client.patch(f"{ADMIN}/{sid}", json={"category": "Mathematics"}, headers=admin.auth)
    assert ok(again)["category"] == "Mathematics"
    for payload in ({"category": ""}, {"category": "  "}, {"category": "c" * 101}, {"category": None}):
        p = problem(client.patch(f"{ADMIN}/{sid}", json=payload, headers=admin.auth), 422, "validation-failed")
        assert "category" in str(p["errors"]), p
    problem(client.patch(f"{ADMIN}/{admin.id}", json={"category": "X"}, headers=admin.auth), 404, "not-found")


def test_restore(client: Any, admin: Actor, student: Actor, tutor: Actor) -> None:
    body = ok(client.post(ADMIN, json={"name": "Piano", "category": "Music"}, headers=admin.auth), 201)
    sid = body["id"]
    problem(client.post(f"{ADMIN}/{sid}/restore", headers=admin.auth), 409, "wrong-status")
    r = client.delete(f"{ADMIN}/{sid}", headers=admin.auth)
    assert ok(r)["active"] is False
    assert catalog(client, after(r)) == []
    for actor in (student, tutor):
        problem(client.post(f"{ADMIN}/{sid}/restore", headers=actor.auth), 403, "forbidden")
    problem(client.post(f"{ADMIN}/{sid}/restore"), 401, "unauthorized")

    r = client.post(f"{ADMIN}/{sid}/restore", headers=admin.auth)
    assert ok(r) == body
    event_position(r)
    assert catalog(client, after(r)) == [body]
    # a tutor can choose it again
    chosen = client.patch(f"{API}/tutor/profile", json={"subjects": [sid]}, headers=tutor.auth)
    assert ok(chosen)["subjects"] == [sid]
    # restoring twice: 409, nothing recorded
    problem(client.post(f"{ADMIN}/{sid}/restore", headers=admin.auth), 409, "wrong-status")
    events = ok(client.get(f"{API}/admin/events", params={"aggregate_id": sid}, headers=after(r, headers=admin.auth)))[
        "items"
    ]
    assert [e["type"] for e in events] == ["Subject.Created", "Subject.Retired", "Subject.Restored"]
    problem(client.post(f"{ADMIN}/{admin.id}/restore", headers=admin.auth), 404, "not-found")
