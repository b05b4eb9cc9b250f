"""Admin user management over HTTP: the filtered, paginated user list; role and activity changes that bite at
once; soft deletion; and that only admins may do any of it."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import pytest

from tests.support.api import (
    API,
    PASSWORD,
    Actor,
    after,
    all_events,
    error_fields,
    event_position,
    login,
    ok,
    problem,
    projection_position,
    signup,
)

pytestmark = pytest.mark.cloned_database

USERS = f"{API}/admin/users"
ME = f"{API}/me"
LOGIN = f"{API}/auth/login"
REFRESH = f"{API}/auth/refresh"
LIST_FIELDS = {"id", "email", "full_name", "role", "is_active"}


def listed(client: Any, admin: Actor, headers: dict[str, str] | None = None, **params: Any) -> list[dict[str, Any]]:
    """One page (up to 100) of /admin/users for these filters."""
    params.setdefault("limit", 100)
    r = client.get(USERS, params=params, headers={**admin.auth, **(headers or {})})
    body = ok(r)
    assert set(body) == {"items", "next_cursor"}, body
    projection_position(r)
    for item in body["items"]:
        assert LIST_FIELDS <= set(item), item
    return body["items"]  # type: ignore[no-any-return]


def ids(items: list[dict[str, Any]]) -> set[str]:
    return {u["id"] for u in items}


def test_the_list_filters_by_role_activity_and_text(client: Any, admin: Actor) -> None:
    marker = secrets.token_hex(4)
    s, _ = signup(client, "student", full_name=f"Filter Student {marker}")
    t, rt = signup(client, "tutor", full_name=f"Filter Tutor {marker}")
    other, ro = signup(client, "student", full_name="Someone Else")
    seen = after(rt, ro)
    everyone = listed(client, admin, seen)
    assert {s.id, t.id, other.id, admin.id} <= ids(everyone)
    mine = {u["id"]: u for u in everyone}[s.id]
    assert (mine["email"], mine["full_name"], mine["role"], mine["is_active"]) == (
        s.email,
        f"Filter Student {marker}",
        "student",
        True,
    )
    assert ids(listed(client, admin, seen, q=marker)) == {s.id, t.id}
    assert ids(listed(client, admin, seen, q=marker.upper())) == {s.id, t.id}  # case-insensitive
    assert ids(listed(client, admin, seen, q=f"tutor {marker}")) == {t.id}
    assert ids(listed(client, admin, seen, q=marker, role="student")) == {s.id}
    assert ids(listed(client, admin, seen, q=marker, role="tutor")) == {t.id}
    assert ids(listed(client, admin, seen, role="admin")) == {admin.id}
    assert all(u["role"] == "student" for u in listed(client, admin, seen, role="student"))
    assert ids(listed(client, admin, seen, q=marker, is_active="true")) == {s.id, t.id}
    assert ids(listed(client, admin, seen, q=marker, is_active="false")) == set()
    # q matches the e-mail too (the local part carries no marker)
    assert ids(listed(client, admin, seen, q=other.email)) == {other.id}
    assert ids(listed(client, admin, seen, q=other.email.split("@")[0].upper())) == {other.id}
    r = client.patch(f"{USERS}/{t.id}", json={"is_active": False}, headers=admin.auth)
    ok(r)
    assert ids(listed(client, admin, after(r), q=marker, is_active="false")) == {t.id}
    assert ids(listed(client, admin, after(r), q=marker, is_active="true")) == {s.id}
    body = problem(client.get(USERS, params={"is_active": "maybe"}, headers=admin.auth), 422, "validation-failed")
    assert "is_active" in error_fields(body)


def test_q_is_a_literal_substring_where_percent_and_underscore_are_not_wildcards(client: Any, admin: Actor) -> None:
    m = secrets.token_hex(3)
    pct, _ = signup(client, full_name=f"Promo 100%_{m} off")
    near, _ = signup(client, full_name=f"Promo 100ab{m} off")  # matches 100%_ if % and _ were wildcards
    under, _ = signup(client, full_name=f"snake_case{m}")
    plain, r = signup(client, full_name=f"snakeXcase{m}")  # matches snake_case if _ were a wildcard
    seen = after(r)
    assert ids(listed(client, admin, seen, q=f"100%_{m}")) == {pct.id}
    assert ids(listed(client, admin, seen, q=f"%_{m}")) == {pct.id}
    assert ids(listed(client, admin, seen, q=f"0%{m}")) == set()
    assert ids(listed(client, admin, seen, q="e_c")) & {under.id, plain.id} == {under.id}
    assert ids(listed(client, admin, seen, q=f"snake_case{m}")) == {under.id}
    assert ids(listed(client, admin, seen, q=f"snake%case{m}")) == set()
    assert ids(listed(client, admin, seen, q="\\")) == set()
    assert ids(listed(client, admin, seen, q=f"100ab{m}")) == {near.id}
    assert ids(listed(client, admin, seen, q=m)) == {pct.id, near.id, under.id, plain.id}


def test_keyset_pagination_chains_without_duplicates(client: Any, admin: Actor) -> None:
    marker = secrets.token_hex(4)
    made = [signup(client, full_name=f"Page {i} {marker}") for i in range(5)]
    seen = after(made[-1][1])
    pages: list[list[str]] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"q": marker, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = client.get(USERS, params=params, headers={**admin.auth, **seen})
        body = ok(r)
        pages.append([u["id"] for u in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str) and cursor
    assert [len(p) for p in pages] == [2, 2, 1], pages
    flat = [i for p in pages for i in p]
    assert len(flat) == len(set(flat)) == 5
    assert set(flat) == {a.id for a, _ in made}
    # one page of 5 holds the same users in the same order, and says it is the last
    whole = ok(client.get(USERS, params={"q": marker, "limit": 5}, headers=admin.auth))
    assert [u["id"] for u in whole["items"]] == flat and whole["next_cursor"] is None
    # the default page size is 20 and the maximum 100
    assert ok(client.get(USERS, params={"limit": 100}, headers=admin.auth))["next_cursor"] is None
    for bad in (0, -1, 101, 1000):
        body = problem(client.get(USERS, params={"limit": bad}, headers=admin.auth), 422, "validation-failed")
        assert "limit" in error_fields(body)
    problem(client.get(USERS, params={"limit": "ten"}, headers=admin.auth), (400, 422))
    problem(client.get(USERS, params={"cursor": "%%%not-a-cursor"}, headers=admin.auth), 422, "validation-failed")


def test_admin_changes_a_role_and_it_applies_at_once(client: Any, admin: Actor, student: Actor) -> None:
    r = client.patch(f"{USERS}/{student.id}", json={"role": "tutor"}, headers=admin.auth)
    body = ok(r)
    event_position(r)
    assert (body["id"], body["role"], body["email"], body["is_active"]) == (student.id, "tutor", student.email, True)
    # the existing access token now acts as a tutor; /me says so
    assert ok(client.get(ME, headers=student.auth))["role"] == "tutor"
    # session consistency: the admin's next query sees its own write without X-Min-Position
    assert [u["role"] for u in listed(client, admin, q=student.email)] == ["tutor"]
    for bad in ("superuser", "", "ADMIN"):
        p = problem(
            client.patch(f"{USERS}/{student.id}", json={"role": bad}, headers=admin.auth), 422, "validation-failed"
        )
        assert "role" in error_fields(p)
    for bad_body in ({"role": None}, {"is_active": None}, {"is_active": "no"}, {"role": 3}):
        p = problem(client.patch(f"{USERS}/{student.id}", json=bad_body, headers=admin.auth), 422, "validation-failed")
        assert set(bad_body) <= error_fields(p) or str(next(iter(bad_body))) in str(p["errors"]), p
    problem(
        client.patch(
            f"{USERS}/{student.id}", content=b"{role", headers={**admin.auth, "Content-Type": "application/json"}
        ),
        400,
        "malformed-request",
    )
    assert ok(client.get(ME, headers=student.auth))["role"] == "tutor"
    # both at once; and an empty change is a no-op
    body = ok(client.patch(f"{USERS}/{student.id}", json={"role": "finance", "is_active": True}, headers=admin.auth))
    assert (body["role"], body["is_active"]) == ("finance", True)
    assert ok(client.patch(f"{USERS}/{student.id}", json={}, headers=admin.auth))["role"] == "finance"


def test_a_demoted_admin_loses_admin_routes_at_once(client: Any, admin: Actor, student: Actor) -> None:
    problem(client.get(USERS, headers=student.auth), 403, "forbidden")
    ok(client.patch(f"{USERS}/{student.id}", json={"role": "admin"}, headers=admin.auth))
    promoted = {"Authorization": f"Bearer {login(client, student.email)['access_token']}"}
    ok(client.get(USERS, headers=promoted))
    ok(client.patch(f"{USERS}/{student.id}", json={"role": "student"}, headers=admin.auth))
    # the token still says admin, but the account no longer is: refused without waiting for it to expire
    problem(client.get(USERS, headers=promoted), 403, "forbidden")
    problem(client.patch(f"{USERS}/{admin.id}", json={"role": "student"}, headers=promoted), 403, "forbidden")
    assert ok(client.get(ME, headers=admin.auth))["role"] == "admin"


def test_patch_or_delete_of_an_unknown_user_is_404(client: Any, admin: Actor) -> None:
    subject = ok(
        client.post(f"{API}/admin/subjects", json={"name": "Maths", "category": "STEM"}, headers=admin.auth), 201
    )
    for target in (str(uuid.uuid4()), subject["id"]):  # nobody, and an aggregate that is not a user
        problem(client.patch(f"{USERS}/{target}", json={"role": "tutor"}, headers=admin.auth), 404, "not-found")
        problem(client.delete(f"{USERS}/{target}", headers=admin.auth), 404, "not-found")
    problem(client.patch(f"{USERS}/not-a-uuid", json={"role": "tutor"}, headers=admin.auth), (404, 422))
    problem(client.delete(f"{USERS}/12345", headers=admin.auth), (404, 422))


def test_deactivation_locks_the_user_out_at_once_and_reactivation_lets_them_back(
    client: Any, admin: Actor, student: Actor
) -> None:
    ok(client.get(ME, headers=student.auth))
    wrong = problem(client.post(LOGIN, json={"email": student.email, "password": "Wr0ng-pass"}), 401)
    r = client.patch(f"{USERS}/{student.id}", json={"is_active": False}, headers=admin.auth)
    assert ok(r)["is_active"] is False
    problem(client.get(ME, headers=student.auth), 401, "unauthorized")  # no waiting
    problem(client.patch(ME, json={"full_name": "Still Here"}, headers=student.auth), 401, "unauthorized")
    locked = problem(client.post(LOGIN, json={"email": student.email, "password": PASSWORD}), 401)
    assert locked == wrong, "a locked account must look like a wrong password"
    problem(client.post(REFRESH, json={"refresh_token": student.refresh}), 401)
    assert [u["is_active"] for u in listed(client, admin, after(r), q=student.email)] == [False]
    # deactivating twice is harmless
    assert (
        ok(client.patch(f"{USERS}/{student.id}", json={"is_active": False}, headers=admin.auth))["is_active"] is False
    )
    r = client.patch(f"{USERS}/{student.id}", json={"is_active": True}, headers=admin.auth)
    assert ok(r)["is_active"] is True
    back = login(client, student.email)
    me = ok(client.get(ME, headers={"Authorization": f"Bearer {back['access_token']}"}))
    assert (me["id"], me["is_active"]) == (student.id, True)
    assert [u["is_active"] for u in listed(client, admin, after(r), q=student.email)] == [True]


def test_delete_is_a_soft_delete_that_keeps_the_history(client: Any, admin: Actor, student: Actor) -> None:
    rp = client.patch(ME, json={"full_name": "About To Leave"}, headers=student.auth)
    ok(rp)
    before = all_events(client, admin, after(rp), aggregate_id=student.id)
    assert [e["type"] for e in before][:1] == ["User.Registered"] and len(before) >= 3, before
    rd = client.delete(f"{USERS}/{student.id}", headers=admin.auth)
    body = ok(rd)
    event_position(rd)
    assert (body["id"], body["is_active"]) == (student.id, False)
    problem(client.get(ME, headers=student.auth), 401, "unauthorized")
    problem(client.post(LOGIN, json={"email": student.email, "password": PASSWORD}), 401)
    problem(client.post(REFRESH, json={"refresh_token": student.refresh}), 401)
    kept = all_events(client, admin, after(rd), aggregate_id=student.id)
    assert kept[: len(before)] == before, "deleting a user changed or lost events"
    assert kept[-1]["actor_id"] == admin.id and kept[-1]["actor_role"] == "admin", kept[-1]
    history = ok(client.get(f"{API}/admin/aggregates/{student.id}/history", headers=admin.auth))
    assert len(history["events"]) == len(kept) and history["state"]["full_name"] == "About To Leave"
    # listed (if at all) as inactive; the email stays taken; it cannot be deleted or changed again
    assert all(u["is_active"] is False for u in listed(client, admin, after(rd), q=student.email))
    problem(
        client.post(
            f"{API}/auth/register",
            json={"email": student.email, "password": PASSWORD, "full_name": "Again", "role": "student"},
        ),
        409,
        "email-taken",
    )
    problem(client.delete(f"{USERS}/{student.id}", headers=admin.auth), 404, "not-found")
    problem(client.patch(f"{USERS}/{student.id}", json={"is_active": True}, headers=admin.auth), 404, "not-found")
    problem(client.get(ME, headers=student.auth), 401)


def test_only_admins_manage_users(client: Any, admin: Actor, student: Actor, tutor: Actor, finance: Actor) -> None:
    for actor in (student, tutor, finance):
        problem(client.get(USERS, headers=actor.auth), 403, "forbidden")
        problem(client.get(USERS, params={"limit": 0}, headers=actor.auth), 403, "forbidden")
        problem(client.patch(f"{USERS}/{student.id}", json={"is_active": False}, headers=actor.auth), 403, "forbidden")
        problem(client.patch(f"{USERS}/{actor.id}", json={"role": "admin"}, headers=actor.auth), 403, "forbidden")
        problem(client.patch(f"{USERS}/{uuid.uuid4()}", json={"role": "admin"}, headers=actor.auth), 403, "forbidden")
        problem(client.delete(f"{USERS}/{tutor.id}", headers=actor.auth), 403, "forbidden")
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {admin.refresh}"}):
        for r in (
            client.get(USERS, headers=headers),
            client.patch(f"{USERS}/{student.id}", json={"is_active": False}, headers=headers),
            client.delete(f"{USERS}/{tutor.id}", headers=headers),
        ):
            problem(r, 401, "unauthorized")
    # nothing happened to anyone
    for actor, role in ((student, "student"), (tutor, "tutor"), (finance, "finance")):
        me = ok(client.get(ME, headers=actor.auth))
        assert (me["role"], me["is_active"]) == (role, True)


def test_an_admin_cannot_lock_themselves_out(client: Any, admin: Actor, student: Actor) -> None:
    me = f"{USERS}/{admin.id}"
    for body in ({"role": "student"}, {"role": "finance"}, {"is_active": False}, {"role": "tutor", "is_active": False}):
        problem(client.patch(me, json=body, headers=admin.auth), 409, "self-lockout")
    problem(client.delete(me, headers=admin.auth), 409, "self-lockout")
    # nothing was recorded, and the account still works
    events = all_events(client, admin, aggregate_id=admin.id)
    assert not {"User.RoleChanged", "User.Deactivated", "User.Deleted"} & {e["type"] for e in events}
    assert ok(client.get(ME, headers=admin.auth))["role"] == "admin"
    # what changes nothing is no lockout; another admin may still do all of it
    assert ok(client.patch(me, json={"role": "admin", "is_active": True}, headers=admin.auth))["role"] == "admin"
    ok(client.patch(f"{USERS}/{student.id}", json={"role": "admin"}, headers=admin.auth))
    other = {"Authorization": f"Bearer {login(client, student.email)['access_token']}"}
    ok(client.patch(me, json={"is_active": False}, headers=other))
    problem(client.get(ME, headers=admin.auth), 401, "unauthorized")
