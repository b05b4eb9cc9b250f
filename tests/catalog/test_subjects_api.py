"""Subjects over HTTP: the public catalog (GET /subjects) and the admin commands that create, rename and retire."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.api import API, Actor, after, error_fields, event_position, ok, problem, projection_position

pytestmark = pytest.mark.cloned_database

SUBJECTS = f"{API}/subjects"
ADMIN = f"{API}/admin/subjects"


def catalog(client: Any, headers: dict[str, str] | None = None, **params: Any) -> list[dict[str, Any]]:
    r = client.get(SUBJECTS, params={"limit": 100, **params}, headers=headers or {})
    body = ok(r)
    assert set(body) == {"items", "next_cursor"}, body
    projection_position(r)
    for item in body["items"]:
        assert set(item) == {"id", "name", "category", "active"} and item["active"] is True, item
    return body["items"]  # type: ignore[no-any-return]


def create(client: Any, admin: Actor, name: str, category: str = "STEM") -> tuple[dict[str, Any], Any]:
    r = client.post(ADMIN, json={"name": name, "category": category}, headers=admin.auth)
    return ok(r, 201), r


def test_anyone_browses_the_catalog(client: Any, student: Actor) -> None:
    for headers in ({}, student.auth, {"Authorization": "Bearer not-even-a-token"}):
        r = client.get(SUBJECTS, headers=headers)
        assert ok(r) == {"items": [], "next_cursor": None}
        projection_position(r)


def test_admin_creates_renames_and_retires_a_subject(client: Any, admin: Actor, student: Actor) -> None:
    body, r = create(client, admin, "  Algebra ", "Mathematics")
    assert set(body) == {"id", "name", "category", "active"}, body
    uuid.UUID(body["id"])
    assert (body["name"], body["category"], body["active"]) == ("Algebra", "Mathematics", True)
    event_position(r)
    assert catalog(client, after(r)) == [body]
    assert catalog(client, {**student.auth, **after(r)}) == [body]
    # rename keeps the id
    r = client.patch(f"{ADMIN}/{body['id']}", json={"name": "Linear Algebra"}, headers=admin.auth)
    renamed = ok(r)
    event_position(r)
    assert renamed == {**body, "name": "Linear Algebra"}
    assert catalog(client, after(r)) == [renamed]
    # retire: active false, gone from the catalog, and retiring twice is harmless
    r = client.delete(f"{ADMIN}/{body['id']}", headers=admin.auth)
    retired = ok(r)
    event_position(r)
    assert retired == {**renamed, "active": False}
    assert catalog(client, after(r)) == []
    assert ok(client.delete(f"{ADMIN}/{body['id']}", headers=admin.auth)) == retired


def test_the_catalog_filters_by_category_sorts_by_name_and_paginates(client: Any, admin: Actor) -> None:
    made = [
        create(client, admin, n, c)
        for n, c in (("Physics", "Science"), ("Biology", "Science"), ("Art", "Humanities"), ("Chemistry", "Science"))
    ]
    seen = after(*(r for _, r in made))
    assert [s["name"] for s in catalog(client, seen)] == ["Art", "Biology", "Chemistry", "Physics"]
    assert [s["name"] for s in catalog(client, seen, category="Science")] == ["Biology", "Chemistry", "Physics"]
    assert catalog(client, seen, category="Nothing") == []
    names, cursor = [], None
    for _ in range(4):
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = ok(client.get(SUBJECTS, params=params))
        names.append([s["name"] for s in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert names == [["Art", "Biology", "Chemistry"], ["Physics"]]
    for bad in (0, 101):
        assert "limit" in error_fields(problem(client.get(SUBJECTS, params={"limit": bad}), 422, "validation-failed"))
    problem(client.get(SUBJECTS, params={"cursor": "@@@"}), 422, "validation-failed")
    # without ?limit= a page holds 20
    more = [create(client, admin, f"Extra {i:02d}", "Bulk")[1] for i in range(17)]
    page = ok(client.get(SUBJECTS, headers=after(*more)))
    assert len(page["items"]) == 20 and page["next_cursor"], len(page["items"])
    rest = ok(client.get(SUBJECTS, params={"cursor": page["next_cursor"]}))
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None


def test_subject_validation(client: Any, admin: Actor) -> None:
    for payload, field in (
        ({"name": "", "category": "STEM"}, "name"),
        ({"name": "   ", "category": "STEM"}, "name"),
        ({"name": "x" * 101, "category": "STEM"}, "name"),
        ({"name": "Maths", "category": " "}, "category"),
        ({"name": "Maths"}, "category"),
        ({"category": "STEM"}, "name"),
        ({"name": 5, "category": "STEM"}, "name"),
        ({"name": None, "category": "STEM"}, "name"),
    ):
        body = problem(client.post(ADMIN, json=payload, headers=admin.auth), 422, "validation-failed")
        assert field in str(body["errors"]), (payload, body)
    problem(
        client.post(ADMIN, content=b"{name:", headers={**admin.auth, "Content-Type": "application/json"}),
        400,
        "malformed-request",
    )
    body, r = create(client, admin, "Geometry")
    renames: list[dict[str, Any]] = [{"name": ""}, {"name": "y" * 101}, {}, {"name": None}]
    for payload in renames:
        p = problem(client.patch(f"{ADMIN}/{body['id']}", json=payload, headers=admin.auth), 422, "validation-failed")
        assert "name" in str(p["errors"]), p
    problem(
        client.patch(f"{ADMIN}/{body['id']}", content=b"[", headers={**admin.auth, "Content-Type": "application/json"}),
        400,
        "malformed-request",
    )
    assert catalog(client, after(r)) == [body], "nothing but Geometry was created, and it was never renamed"


def test_unknown_subjects_are_404(client: Any, admin: Actor) -> None:
    for target in (str(uuid.uuid4()), admin.id):  # nothing, and an aggregate that is not a subject
        problem(client.patch(f"{ADMIN}/{target}", json={"name": "X"}, headers=admin.auth), 404, "not-found")
        problem(client.delete(f"{ADMIN}/{target}", headers=admin.auth), 404, "not-found")
    problem(client.delete(f"{ADMIN}/not-a-uuid", headers=admin.auth), (404, 422))


def test_only_admins_curate_the_catalog(
    client: Any, admin: Actor, student: Actor, tutor: Actor, finance: Actor
) -> None:
    body, r = create(client, admin, "Music", "Arts")
    for actor in (student, tutor, finance):
        problem(client.post(ADMIN, json={"name": "Hacking", "category": "X"}, headers=actor.auth), 403, "forbidden")
        problem(client.post(ADMIN, json={"name": ""}, headers=actor.auth), (403, 422))
        problem(client.patch(f"{ADMIN}/{body['id']}", json={"name": "Noise"}, headers=actor.auth), 403, "forbidden")
        problem(client.delete(f"{ADMIN}/{body['id']}", headers=actor.auth), 403, "forbidden")
    for headers in ({}, {"Authorization": "Bearer nope"}):
        problem(client.post(ADMIN, json={"name": "Hacking", "category": "X"}, headers=headers), 401, "unauthorized")
        problem(client.patch(f"{ADMIN}/{body['id']}", json={"name": "Noise"}, headers=headers), 401, "unauthorized")
        problem(client.delete(f"{ADMIN}/{body['id']}", headers=headers), 401, "unauthorized")
    assert catalog(client, after(r)) == [body]
