"""Audit over HTTP: GET /admin/events (shape, every filter, pagination), who did what (actor and correlation),
no secrets in the log, and GET /admin/aggregates/{id}/history with and without ?version=."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.api import (
    API,
    EVENT_FIELDS,
    PASSWORD,
    Actor,
    after,
    all_events,
    error_fields,
    event_position,
    ok,
    problem,
    projection_position,
    reg_body,
    signup,
)

pytestmark = pytest.mark.cloned_database

EVENTS = f"{API}/admin/events"


def history_url(aggregate_id: str) -> str:
    return f"{API}/admin/aggregates/{aggregate_id}/history"


def instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0), f"not a UTC instant: {text}"
    return value


def test_event_items_have_the_contract_shape(client: Any, admin: Actor) -> None:
    rid = f"audit-shape-{secrets.token_hex(4)}"
    r = client.post(f"{API}/auth/register", json=reg_body(full_name="Shape Check"), headers={"X-Request-ID": rid})
    user = ok(r, 201)["user"]
    q = client.get(EVENTS, params={"aggregate_id": user["id"]}, headers={**admin.auth, **after(r)})
    body = ok(q)
    assert set(body) == {"items", "next_cursor"} and body["next_cursor"] is None, body
    assert projection_position(q) >= event_position(r)
    first = body["items"][0]
    assert set(first) == EVENT_FIELDS, first
    assert first["type"] == "User.Registered" and first["aggregate_id"] == user["id"]
    assert first["aggregate_version"] == 1 and isinstance(first["position"], int)
    assert first["correlation_id"] == rid
    assert first["data"]["email"] == user["email"] and first["data"]["full_name"] == "Shape Check"
    assert "causation_id" in first
    instant(first["recorded_at"])
    everything = all_events(client, admin)
    positions = [e["position"] for e in everything]
    assert positions == sorted(positions) and len(set(positions)) == len(positions), "events are in log order"
    for e in everything:
        assert set(e) == EVENT_FIELDS, e
        uuid.UUID(e["aggregate_id"])
        assert isinstance(e["data"], dict) and isinstance(e["aggregate_version"], int)
        instant(e["recorded_at"])
    # the versions of one aggregate count up from 1
    mine = [e["aggregate_version"] for e in everything if e["aggregate_id"] == user["id"]]
    assert mine == list(range(1, len(mine) + 1))


def test_a_commands_events_carry_its_request_id_as_correlation_id(client: Any, admin: Actor, student: Actor) -> None:
    rid = f"corr-{secrets.token_hex(6)}"
    r = client.post(f"{API}/auth/register", json=reg_body(), headers={"X-Request-ID": rid})
    assert r.headers["X-Request-ID"] == rid
    new_id = ok(r, 201)["user"]["id"]
    found = all_events(client, admin, after(r), correlation_id=rid)
    assert found, "no event carries the request's X-Request-ID"
    assert {e["correlation_id"] for e in found} == {rid}
    assert {e["aggregate_id"] for e in found} >= {new_id}
    assert "User.Registered" in {e["type"] for e in found}
    assert max(e["position"] for e in found) == event_position(r), "X-Event-Position is the last event recorded"
    # and an admin command's
    rid2 = f"corr-{secrets.token_hex(6)}"
    r2 = client.patch(
        f"{API}/admin/users/{student.id}", json={"role": "tutor"}, headers={**admin.auth, "X-Request-ID": rid2}
    )
    ok(r2)
    found2 = all_events(client, admin, after(r2), correlation_id=rid2)
    assert ("User.RoleChanged", student.id) in [(e["type"], e["aggregate_id"]) for e in found2], found2
    assert {e["correlation_id"] for e in found2} == {rid2}
    assert max(e["position"] for e in found2) == event_position(r2)
    assert all_events(client, admin, correlation_id=f"corr-{secrets.token_hex(6)}") == []


def test_an_admins_role_change_is_recorded_with_the_admin_as_actor(client: Any, admin: Actor, student: Actor) -> None:
    r = client.patch(f"{API}/admin/users/{student.id}", json={"role": "tutor"}, headers=admin.auth)
    ok(r)
    changes = all_events(client, admin, after(r), aggregate_id=student.id, type="User.RoleChanged")
    assert len(changes) == 1, changes
    e = changes[0]
    assert (e["actor_id"], e["actor_role"]) == (admin.id, "admin"), e
    assert e["data"]["role"] == "tutor" and e["data"].get("previous") in (None, "student"), e
    # the student's own profile change names the student
    r = client.patch(f"{API}/me", json={"language": "fr"}, headers=student.auth)
    ok(r)
    own = all_events(client, admin, after(r), aggregate_id=student.id, type="User.ProfileUpdated")
    assert [(x["actor_id"], x["actor_role"]) for x in own] == [(student.id, "tutor")]


def test_filters_by_aggregate_type_actor_and_position(client: Any, admin: Actor, student: Actor, tutor: Actor) -> None:
    ra = client.patch(f"{API}/admin/users/{student.id}", json={"is_active": False}, headers=admin.auth)
    rb = client.patch(f"{API}/admin/users/{student.id}", json={"is_active": True}, headers=admin.auth)
    rc = client.patch(f"{API}/me", json={"full_name": "Tutor Renamed"}, headers=tutor.auth)
    seen = after(ra, rb, rc)
    full = all_events(client, admin, seen)
    by_agg = all_events(client, admin, aggregate_id=student.id)
    assert by_agg == [e for e in full if e["aggregate_id"] == student.id] and len(by_agg) >= 4
    by_type = all_events(client, admin, type="User.Deactivated")
    assert [(e["aggregate_id"], e["type"]) for e in by_type] == [(student.id, "User.Deactivated")]
    by_actor = all_events(client, admin, actor_id=admin.id)
    assert by_actor == [e for e in full if e["actor_id"] == admin.id]
    assert {e["type"] for e in by_actor} >= {"User.Deactivated", "User.Reactivated"}
    tutors = all_events(client, admin, actor_id=tutor.id)
    assert "User.ProfileUpdated" in [e["type"] for e in tutors]
    assert tutors == [e for e in full if e["actor_id"] == tutor.id]
    both = all_events(client, admin, aggregate_id=student.id, actor_id=admin.id)
    assert [e["type"] for e in both] == ["User.Deactivated", "User.Reactivated"]
    cut = event_position(ra)
    tail = all_events(client, admin, after_position=cut)
    assert tail == [e for e in full if e["position"] > cut] and tail
    assert all_events(client, admin, after_position=full[-1]["position"]) == []
    assert all_events(client, admin, aggregate_id=str(uuid.uuid4())) == []
    assert all_events(client, admin, type="No.Such") == []


def test_events_paginate_by_cursor(client: Any, admin: Actor) -> None:
    r = None
    for _ in range(3):
        _, r = signup(client)
    assert r is not None
    full = all_events(client, admin, after(r))
    assert len(full) >= 9
    got: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = ok(client.get(EVENTS, params=params, headers=admin.auth))
        pages += 1
        assert len(body["items"]) <= 2
        got.extend(e["position"] for e in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(body["items"]) == 2
    assert got == [e["position"] for e in full] and pages == (len(full) + 1) // 2
    # a cursor and after_position together: the later of the two wins
    first = ok(client.get(EVENTS, params={"limit": 2}, headers=admin.auth))
    both = ok(
        client.get(
            EVENTS, params={"limit": 100, "cursor": first["next_cursor"], "after_position": 5}, headers=admin.auth
        )
    )
    assert [e["position"] for e in both["items"]] == [p for p in got if p > max(5, got[1])]


def test_from_and_to_select_by_recorded_at_on_the_test_clock(client: Any, admin: Actor) -> None:
    days = [datetime(2031, 3, d, 12, 0, tzinfo=UTC) for d in (1, 2, 3)]
    made = []
    try:
        for d in days:
            ok(client.put(f"{API}/admin/test-clock", json={"now": d.isoformat()}, headers=admin.auth))
            r = client.post(
                f"{API}/admin/subjects", json={"name": f"Day {d.day}", "category": "Time"}, headers=admin.auth
            )
            made.append((ok(r, 201)["id"], r))
    finally:
        ok(client.delete(f"{API}/admin/test-clock", headers=admin.auth))
    seen = after(made[-1][1])

    def subjects(**params: str) -> list[str]:
        return [e["aggregate_id"] for e in all_events(client, admin, seen, type="Subject.Created", **params)]

    ids = [m[0] for m in made]
    assert subjects() == ids
    assert subjects(**{"from": "2031-03-02T00:00:00Z"}) == ids[1:]
    assert subjects(to="2031-03-02T00:00:00Z") == ids[:1]
    assert subjects(**{"from": "2031-03-02T00:00:00Z", "to": "2031-03-03T00:00:00Z"}) == ids[1:2]
    assert subjects(**{"from": "2031-03-02T13:00:00+01:00", "to": "2031-03-02T13:00:01+01:00"}) == ids[1:2]
    assert subjects(**{"from": "2031-03-04T00:00:00Z"}) == []
    for e in all_events(client, admin, seen, type="Subject.Created"):
        assert instant(e["recorded_at"]).date() in {d.date() for d in days}


def test_bad_filters_are_422(client: Any, admin: Actor) -> None:
    for params, field in (
        ({"aggregate_id": "not-a-uuid"}, "aggregate_id"),
        ({"actor_id": "42"}, "actor_id"),
        ({"from": "yesterday"}, "from"),
        ({"to": "soon"}, "to"),
        ({"after_position": "x"}, "after_position"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"cursor": "***"}, "cursor"),
    ):
        body = problem(client.get(EVENTS, params=params, headers=admin.auth), 422, "validation-failed")
        assert field in str(body["errors"]), (params, body)


def test_no_secret_ever_enters_the_event_log(client: Any, admin: Actor) -> None:
    password = f"Sup3r-secret-{secrets.token_hex(6)}"
    new_password_attempt = f"An0ther-secret-{secrets.token_hex(6)}"
    body = reg_body(password=password)
    reg = ok(client.post(f"{API}/auth/register", json=body), 201)
    tokens = [reg["access_token"], reg["refresh_token"]]
    logged = ok(client.post(f"{API}/auth/login", json={"email": body["email"], "password": password}))
    tokens += [logged["access_token"], logged["refresh_token"]]
    rotated = ok(client.post(f"{API}/auth/refresh", json={"refresh_token": logged["refresh_token"]}))
    tokens += [rotated["access_token"], rotated["refresh_token"]]
    # reuse (revokes the family) and logout record events too
    problem(client.post(f"{API}/auth/refresh", json={"refresh_token": logged["refresh_token"]}), 401)
    bearer = {"Authorization": f"Bearer {reg['access_token']}"}
    r = client.post(f"{API}/auth/logout", json={"refresh_token": reg["refresh_token"]}, headers=bearer)
    assert r.status_code == 204
    problem(client.post(f"{API}/auth/register", json={**body, "password": new_password_attempt}), 409)
    problem(client.post(f"{API}/auth/login", json={"email": body["email"], "password": new_password_attempt}), 401)
    log = all_events(client, admin, after(r))
    mine = [e for e in log if e["aggregate_id"] == reg["user"]["id"]]
    assert {"User.Registered", "User.SessionStarted", "User.SessionRevoked"} <= {e["type"] for e in mine}, mine
    text = json.dumps(log)
    secrets_seen = [password, new_password_attempt, PASSWORD, "$argon2", *tokens]
    # the random part of a refresh token alone is a secret as well
    secrets_seen += [t.rsplit(".", 1)[-1] for t in tokens if t.startswith("rt.")]
    for s in secrets_seen:
        assert s not in text, f"a secret ({s[:12]}…) appears in the event log"
    for e in log:
        for key in e["data"]:
            assert not any(w in key.lower() for w in ("password", "hash", "token", "secret")), (key, e)


def test_history_shows_an_aggregate_at_a_version_and_at_its_latest(client: Any, admin: Actor, student: Actor) -> None:
    r1 = client.patch(f"{API}/me", json={"full_name": "Second Name"}, headers=student.auth)
    r2 = client.patch(f"{API}/admin/users/{student.id}", json={"role": "tutor"}, headers=admin.auth)
    ok(r1), ok(r2)
    h = client.get(history_url(student.id), headers={**admin.auth, **after(r1, r2)})
    latest = ok(h)
    projection_position(h)
    assert {"aggregate_id", "version", "events", "state"} <= set(latest), latest
    assert latest["aggregate_id"] == student.id
    versions = [e["aggregate_version"] for e in latest["events"]]
    assert versions == list(range(1, latest["version"] + 1)), versions
    for e in latest["events"]:
        assert set(e) == EVENT_FIELDS and e["aggregate_id"] == student.id
    assert latest["events"][-1]["type"] == "User.RoleChanged"
    assert (latest["state"]["role"], latest["state"]["full_name"]) == ("tutor", "Second Name")
    assert latest["state"]["email"] == student.email
    first = ok(client.get(history_url(student.id), params={"version": 1}, headers=admin.auth))
    assert first["version"] == 1 and [e["type"] for e in first["events"]] == ["User.Registered"]
    assert (first["state"]["role"], first["state"]["full_name"], first["state"]["email"]) == (
        "student",
        "Stu Dent",
        student.email,
    )
    assert first["events"][0] == latest["events"][0]
    middle = ok(client.get(history_url(student.id), params={"version": latest["version"] - 1}, headers=admin.auth))
    assert (middle["state"]["role"], middle["state"]["full_name"]) == ("student", "Second Name")
    assert middle["events"] == latest["events"][:-1]
    # a subject's history too
    rs = client.post(f"{API}/admin/subjects", json={"name": "Chemistry", "category": "Science"}, headers=admin.auth)
    sid = ok(rs, 201)["id"]
    rr = client.patch(f"{API}/admin/subjects/{sid}", json={"name": "Organic Chemistry"}, headers=admin.auth)
    ok(rr)
    sh = ok(client.get(history_url(sid), headers={**admin.auth, **after(rr)}))
    assert sh["version"] == 2 and sh["state"]["name"] == "Organic Chemistry"
    assert ok(client.get(history_url(sid), params={"version": 1}, headers=admin.auth))["state"]["name"] == "Chemistry"


def test_history_errors(client: Any, admin: Actor, student: Actor) -> None:
    problem(client.get(history_url(str(uuid.uuid4())), headers=admin.auth), 404, "not-found")
    problem(client.get(history_url(str(uuid.uuid4())), params={"version": 1}, headers=admin.auth), 404, "not-found")
    problem(client.get(history_url("not-a-uuid"), headers=admin.auth), (404, 422))
    for bad in (0, -3):
        body = problem(
            client.get(history_url(student.id), params={"version": bad}, headers=admin.auth), 422, "validation-failed"
        )
        assert "version" in error_fields(body)
    problem(client.get(history_url(student.id), params={"version": "one"}, headers=admin.auth), 422)


def test_only_admins_read_the_log(client: Any, student: Actor, tutor: Actor, finance: Actor) -> None:
    for actor in (student, tutor, finance):
        problem(client.get(EVENTS, headers=actor.auth), 403, "forbidden")
        problem(client.get(EVENTS, params={"aggregate_id": "bad"}, headers=actor.auth), 403, "forbidden")
        problem(client.get(history_url(student.id), headers=actor.auth), 403, "forbidden")
        problem(client.get(history_url(actor.id), headers=actor.auth), 403, "forbidden")
    for headers in ({}, {"Authorization": "Bearer x.y.z"}):
        problem(client.get(EVENTS, headers=headers), 401, "unauthorized")
        problem(client.get(history_url(student.id), headers=headers), 401, "unauthorized")
