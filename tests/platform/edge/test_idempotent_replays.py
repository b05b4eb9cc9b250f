"""Idempotent replays are authorised like new requests, and what is kept for them holds no readable secret."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from application.settings import Settings
from tests.support.api import API, Actor, ok, problem

pytestmark = pytest.mark.cloned_database


def test_a_replay_after_deactivation_is_401(client: Any, admin: Actor, student: Actor) -> None:
    h = {**student.auth, "Idempotency-Key": str(uuid.uuid4())}
    first = ok(client.patch(f"{API}/me", json={"full_name": "Alpha"}, headers=h))
    assert ok(client.patch(f"{API}/me", json={"full_name": "Alpha"}, headers=h)) == first  # a replay, while active
    ok(client.patch(f"{API}/admin/users/{student.id}", json={"is_active": False}, headers=admin.auth))
    r = client.patch(f"{API}/me", json={"full_name": "Alpha"}, headers=h)
    problem(r, 401, "unauthorized")
    assert "idempotent-replayed" not in r.headers


def test_a_replay_after_losing_the_role_is_403(client: Any, admin: Actor, prepared: Settings) -> None:
    from tests.support.api import staff

    other = staff(client, prepared, "admin")
    h = {**other.auth, "Idempotency-Key": str(uuid.uuid4())}
    body = {"name": "Optics", "category": "Science"}
    ok(client.post(f"{API}/admin/subjects", json=body, headers=h), 201)
    ok(client.patch(f"{API}/admin/users/{other.id}", json={"role": "student"}, headers=admin.auth))
    r = client.post(f"{API}/admin/subjects", json=body, headers=h)  # same caller, same key, same body
    problem(r, 403, "forbidden")
    assert "idempotent-replayed" not in r.headers


def test_stored_responses_are_sealed(client: Any, student: Actor, prepared: Settings) -> None:
    key = str(uuid.uuid4())
    h = {**student.auth, "Idempotency-Key": key}
    name = "Sealed " + uuid.uuid4().hex
    r1 = client.patch(f"{API}/me", json={"full_name": name}, headers=h)
    assert ok(r1)["full_name"] == name
    with psycopg.connect(prepared.database_url) as conn:
        row = conn.execute("SELECT body FROM idempotency_keys WHERE key = %s", (key,)).fetchone()
    assert row is not None and name.encode() not in bytes(row[0]) and bytes(row[0]).startswith(b"TCS1")
    r2 = client.patch(f"{API}/me", json={"full_name": name}, headers=h)
    assert r2.headers.get("idempotent-replayed") == "true" and r2.content == r1.content


def test_a_duplicate_while_the_first_still_runs_is_409(client: Any, student: Actor, prepared: Settings) -> None:
    """The first request's claim is in place but it has not answered yet (its row has no status)."""
    import hashlib

    key, body = str(uuid.uuid4()), b'{"full_name": "Twice"}'
    digest = hashlib.sha256(b"\n".join([b"PATCH", f"{API}/me".encode(), b"", body])).digest()
    with psycopg.connect(prepared.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO idempotency_keys (scope, key, request_hash) VALUES (%s, %s, %s)",
            (f"user:{student.id}", key, digest),
        )
    h = {**student.auth, "Idempotency-Key": key, "content-type": "application/json"}
    r = client.patch(f"{API}/me", content=body, headers=h)
    problem(r, 409, "idempotency-key-in-flight")
    assert r.headers.get("retry-after") == "1"
    problem(client.patch(f"{API}/me", content=b'{"full_name": "Other"}', headers=h), 422, "idempotency-key-reused")
