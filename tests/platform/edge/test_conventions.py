"""The contract's conventions over HTTP: X-Request-ID, nosniff, read-your-writes headers (X-Event-Position,
X-Projection-Position, X-Min-Position), size limit, unknown routes, Idempotency-Key, rate limits, health and
readiness, the OpenAPI document and its docs page, and the test clock."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import psycopg
import pytest
from litestar.testing import TestClient

from api.app import create_app
from application.settings import Settings, parse_rate_limits
from tests.support.api import (
    API,
    PASSWORD,
    Actor,
    after,
    all_events,
    error_fields,
    event_position,
    media_type,
    ok,
    problem,
    projection_position,
    reg_body,
    signup,
    unique_email,
)
from tests.support.system import make_settings

pytestmark = pytest.mark.cloned_database

MB = 1_048_576
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def app_with(prepared: Settings, projectors: Any) -> Iterator[Any]:
    """Build extra apps over the test's database with other settings (each behind its own TestClient)."""
    opened: list[Any] = []

    def build(**overrides: Any) -> Any:
        overrides.setdefault("pool_size", 3)  # the PostgreSQL server is shared: keep extra apps small
        redis_url = overrides.pop("redis_url", prepared.redis_url)
        settings = make_settings(prepared.database_url, redis_url, **overrides)
        c = TestClient(create_app(settings), base_url="http://testserver.local", timeout=30)
        c.__enter__()
        opened.append(c)
        return c

    yield build
    for c in opened:
        c.__exit__(None, None, None)


# ------------------------------------------------------------------------------- request id and nosniff


def test_x_request_id_is_echoed_or_generated(client: Any, student: Actor) -> None:
    rid = f"client-{secrets.token_hex(8)}"
    for r in (
        client.get(f"{API}/me", headers={**student.auth, "X-Request-ID": rid}),
        client.get(f"{API}/me", headers={"X-Request-ID": rid}),  # 401
        client.get(f"{API}/no/such/route", headers={"X-Request-ID": rid}),
        client.patch(f"{API}/me", json={"timezone": "Nowhere/Land"}, headers={**student.auth, "X-Request-ID": rid}),
        client.get("/healthz", headers={"X-Request-ID": rid}),
    ):
        assert r.headers.get("X-Request-ID") == rid, (r.status_code, dict(r.headers))
    generated = [client.get(f"{API}/subjects").headers.get("X-Request-ID") for _ in range(3)]
    generated.append(client.get(f"{API}/nope").headers.get("X-Request-ID"))
    for g in generated:
        assert g, "a response without X-Request-ID"
    assert len(set(generated)) == len(generated), "generated request ids repeat"
    # one the server will not carry (too long) is replaced by a generated one
    long = "x" * 5000
    r = client.get(f"{API}/subjects", headers={"X-Request-ID": long})
    assert r.status_code == 200 and r.headers.get("X-Request-ID") not in (None, "", long)


def test_every_response_carries_nosniff_and_a_request_id(client: Any, student: Actor) -> None:
    responses = [
        client.get("/healthz"),
        client.get("/readyz"),
        client.get("/schema/openapi.json"),
        client.get("/schema"),
        client.get("/schema/assets/swagger-ui.css"),
        client.get(f"{API}/subjects"),
        client.get(f"{API}/me", headers=student.auth),
        client.get(f"{API}/me"),
        client.get(f"{API}/admin/users", headers=student.auth),
        client.get("/definitely/not/here"),
        client.delete(f"{API}/subjects"),
        client.post(f"{API}/auth/login", json={"email": student.email, "password": "Wr0ng-pass"}),
        client.post(f"{API}/auth/register", json=reg_body()),
        client.post(f"{API}/auth/register", content=b"{", headers={"Content-Type": "application/json"}),
        client.post(f"{API}/auth/register", content=b"x" * (MB + 1), headers={"Content-Type": "application/json"}),
        client.post(f"{API}/auth/logout", json={"refresh_token": student.refresh}, headers=student.auth),
    ]
    statuses = {r.status_code for r in responses}
    assert {200, 201, 204, 400, 401, 403, 404, 405, 413} <= statuses, statuses
    for r in responses:
        assert r.headers.get("X-Content-Type-Options") == "nosniff", (r.request.url, r.status_code, dict(r.headers))
        assert r.headers.get("X-Request-ID"), (r.request.url, r.status_code)


# ------------------------------------------------------------------------------------ read-your-writes


ME, USERS = f"{API}/me", f"{API}/admin/users"


def last_write(dsn: str, user_id: str) -> int | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT position FROM tutorconnect_last_writes WHERE user_id = %s", (user_id,)).fetchone()
    return None if row is None else int(row[0])


def test_a_command_keeps_its_callers_last_write_with_its_events(
    client: Any, admin: Actor, student: Actor, prepared: Settings
) -> None:
    """ADR 0004: the append that records a command's events keeps, in the same transaction, the caller's newest
    written position, so it is there by the time the answer arrives; a query keeps nothing, and someone else's
    command keeps their own position."""
    dsn = prepared.database_url
    before = last_write(dsn, student.id)
    assert ok(client.get(ME, headers=student.auth))["id"] == student.id
    assert last_write(dsn, student.id) == before  # a query is not a write
    first = event_position(client.patch(ME, json={"full_name": "First Name"}, headers=student.auth))
    assert last_write(dsn, student.id) == first
    second = event_position(client.patch(ME, json={"full_name": "Second Name"}, headers=student.auth))
    assert second > first and last_write(dsn, student.id) == second
    changed = event_position(client.patch(f"{USERS}/{student.id}", json={"is_active": False}, headers=admin.auth))
    assert last_write(dsn, admin.id) == changed and last_write(dsn, student.id) == second
    # registration and login are the new user's own writes (nobody is signed in yet)
    email = unique_email("rw")
    registered = client.post(f"{API}/auth/register", json=reg_body(email))
    assert last_write(dsn, registered.json()["user"]["id"]) == event_position(registered)
    logged_in = client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert last_write(dsn, registered.json()["user"]["id"]) == event_position(logged_in)


def test_a_query_waits_for_its_callers_last_write_only(
    client: Any, admin: Actor, student: Actor, prepared: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller's last write is read with the read models' positions: a write the read models have not reached
    holds that caller's queries (503 projection-lagging after the wait), and nobody else's."""
    monkeypatch.setattr("api.deps.MAX_WAIT_S", 0.3)
    head = event_position(client.patch(ME, json={"full_name": "Before The Future"}, headers=student.auth))
    with psycopg.connect(prepared.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE tutorconnect_last_writes SET position = %s WHERE user_id = %s", (head + 1_000_000, student.id)
        )
    r = client.get(f"{API}/bookings", headers=student.auth)
    problem(r, 503, "projection-lagging")
    assert client.get(f"{API}/admin/users", headers=admin.auth).status_code == 200
    with psycopg.connect(prepared.database_url, autocommit=True) as conn:
        conn.execute("UPDATE tutorconnect_last_writes SET position = %s WHERE user_id = %s", (head, student.id))
    assert client.get(f"{API}/bookings", headers=student.auth).status_code == 200


def test_the_last_write_is_kept_while_redis_is_away(app_with: Any, student: Actor, prepared: Settings) -> None:
    """Read-your-writes does not depend on Redis: with Redis unreachable a command still keeps its position."""
    broken = app_with(redis_url="redis://127.0.0.1:1/0", test_clock=False)
    position = event_position(broken.patch(ME, json={"full_name": "No Redis"}, headers=student.auth))
    assert last_write(prepared.database_url, student.id) == position


def test_every_command_carries_x_event_position_of_its_last_event(client: Any, admin: Actor) -> None:
    email = unique_email("pos")
    sid: dict[str, str] = {}
    tokens: dict[str, Any] = {}

    def run(name: str, fn: Any) -> tuple[str, Any]:
        rid = f"{name}-{secrets.token_hex(6)}"
        return rid, fn({"X-Request-ID": rid})

    steps = [
        ("register", lambda h: client.post(f"{API}/auth/register", json=reg_body(email), headers=h)),
        ("login", lambda h: client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD}, headers=h)),
        (
            "refresh",
            lambda h: client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, headers=h),
        ),
        (
            "patch-me",
            lambda h: client.patch(
                f"{API}/me", json={"language": "de"}, headers={**h, "Authorization": f"Bearer {tokens['access_token']}"}
            ),
        ),
        (
            "logout",
            lambda h: client.post(
                f"{API}/auth/logout",
                json={"refresh_token": tokens["refresh_token"]},
                headers={**h, "Authorization": f"Bearer {tokens['access_token']}"},
            ),
        ),
        (
            "subject-create",
            lambda h: client.post(
                f"{API}/admin/subjects", json={"name": "Logic", "category": "Maths"}, headers={**h, **admin.auth}
            ),
        ),
        (
            "subject-rename",
            lambda h: client.patch(
                f"{API}/admin/subjects/{sid['id']}", json={"name": "Formal Logic"}, headers={**h, **admin.auth}
            ),
        ),
        ("subject-retire", lambda h: client.delete(f"{API}/admin/subjects/{sid['id']}", headers={**h, **admin.auth})),
        (
            "role",
            lambda h: client.patch(
                f"{API}/admin/users/{tokens['user_id']}", json={"role": "tutor"}, headers={**h, **admin.auth}
            ),
        ),
        (
            "deactivate",
            lambda h: client.patch(
                f"{API}/admin/users/{tokens['user_id']}", json={"is_active": False}, headers={**h, **admin.auth}
            ),
        ),
        ("delete", lambda h: client.delete(f"{API}/admin/users/{tokens['user_id']}", headers={**h, **admin.auth})),
    ]
    last = 0
    done: list[tuple[str, str, int]] = []
    for name, fn in steps:
        rid, r = run(name, fn)
        assert r.status_code in (200, 201, 204), (name, r.status_code, r.text)
        pos = event_position(r)
        assert pos >= last, f"{name}: X-Event-Position went backwards ({pos} < {last})"
        last = pos
        done.append((name, rid, pos))
        body = r.json() if r.content else {}
        if name == "register":
            tokens.update(body, user_id=body["user"]["id"])
        elif name in ("login", "refresh"):
            tokens.update(body)
        elif name == "subject-create":
            sid["id"] = body["id"]
    for name, rid, pos in done:
        recorded = all_events(client, admin, {"X-Min-Position": str(last)}, correlation_id=rid)
        if name == "refresh":  # a rotation records no event: the position is where the log stood
            assert recorded == [], recorded
            continue
        assert recorded, f"{name} recorded no event under its X-Request-ID"
        assert max(e["position"] for e in recorded) == pos, (name, pos, recorded)


def test_every_query_carries_x_projection_position(client: Any, admin: Actor, student: Actor) -> None:
    r = client.patch(f"{API}/me", json={"language": "it"}, headers=student.auth)
    pos = event_position(r)
    for q in (
        client.get(f"{API}/subjects", headers=after(r)),
        client.get(f"{API}/admin/users", headers={**admin.auth, **after(r)}),
        client.get(f"{API}/admin/events", headers={**admin.auth, **after(r)}),
        client.get(f"{API}/admin/aggregates/{student.id}/history", headers={**admin.auth, **after(r)}),
    ):
        ok(q)
        assert projection_position(q) >= pos, (q.request.url, q.headers.get("X-Projection-Position"), pos)
        assert "X-Event-Position" not in q.headers


def test_me_is_a_query_and_carries_x_projection_position(client: Any, student: Actor) -> None:
    r = client.patch(f"{API}/me", json={"language": "it"}, headers=student.auth)
    q = client.get(f"{API}/me", headers={**student.auth, **after(r)})
    assert ok(q)["language"] == "it"
    assert projection_position(q) >= event_position(r)


def test_x_min_position_waits_and_then_answers_503_projection_lagging(client: Any, admin: Actor) -> None:
    started = time.monotonic()
    r = client.get(f"{API}/subjects", headers={"X-Min-Position": str(10**12)})
    waited = time.monotonic() - started
    problem(r, 503, "projection-lagging")
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert 4.0 <= waited <= 20, f"answered after {waited:.1f}s; the contract waits up to 5 s"
    assert r.headers.get("X-Request-ID") and r.headers.get("X-Content-Type-Options") == "nosniff"
    # a position already reached answers at once
    started = time.monotonic()
    q = client.get(f"{API}/admin/users", headers={**admin.auth, "X-Min-Position": "1"})
    ok(q)
    assert time.monotonic() - started < 3 and projection_position(q) >= 1


def test_a_non_integer_x_min_position_is_422(client: Any, admin: Actor) -> None:
    for raw in ("soon", "1.5", "0x10", "-", "1e3"):
        for url, headers in (
            (f"{API}/subjects", {}),
            (f"{API}/admin/users", admin.auth),
            (f"{API}/admin/events", admin.auth),
        ):
            r = client.get(url, headers={**headers, "X-Min-Position": raw})
            body = problem(r, 422, "validation-failed")
            assert "X-Min-Position" in error_fields(body), body


# ----------------------------------------------------------------------------- sizes and unknown routes


def test_a_body_over_1_mb_is_413_and_1_mb_exactly_is_not(client: Any, admin: Actor) -> None:
    def padded(size: int) -> bytes:
        head = b'{"email": "big@example.test", "password": "Passw0rd-x", "role": "student", "full_name": "'
        tail = b'"}'
        return head + b"x" * (size - len(head) - len(tail)) + tail

    json_ct = {"Content-Type": "application/json"}
    exact = padded(MB)
    assert len(exact) == MB
    r = client.post(f"{API}/auth/register", content=exact, headers=json_ct)
    body = problem(r, 422, "validation-failed")  # read and judged: the name is too long, not the body
    assert "full_name" in error_fields(body)
    for extra_headers in ({}, {"Idempotency-Key": str(uuid.uuid4())}):
        r = client.post(f"{API}/auth/register", content=padded(MB + 1), headers={**json_ct, **extra_headers})
        problem(r, 413, "payload-too-large")
        r = client.post(
            f"{API}/admin/subjects",
            content=b"[" + b"0," * (3 * MB) + b"0]",
            headers={**json_ct, **admin.auth, **extra_headers},
        )
        problem(r, 413, "payload-too-large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit still holds while streaming
        yield b'{"name": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'", "category": "Big"}'

    problem(
        client.post(f"{API}/admin/subjects", content=chunks(), headers={**json_ct, **admin.auth}),
        413,
        "payload-too-large",
    )
    assert ok(client.get(f"{API}/subjects"))["items"] == []


def test_unknown_routes_and_methods_are_problems(client: Any, student: Actor) -> None:
    for url in (f"{API}/nothing-here", f"{API}/admin/nothing", "/nothing", f"{API}/subjects/extra/parts"):
        problem(client.get(url), 404, "not-found")
        problem(client.get(url, headers=student.auth), 404, "not-found")
    problem(client.put(f"{API}/me", json={}, headers=student.auth), 405, "method-not-allowed")
    problem(client.delete(f"{API}/auth/login"), 405, "method-not-allowed")
    problem(client.get(f"{API}/auth/register"), 405, "method-not-allowed")


def test_a_cursor_the_list_did_not_issue_is_422_not_500(client: Any, admin: Actor, student: Actor) -> None:
    """Cursors are opaque: another list's cursor, or a tampered one, is a validation failure on every list."""
    made = [
        client.post(f"{API}/admin/subjects", json={"name": f"Subject {i}", "category": "C"}, headers=admin.auth)
        for i in range(3)
    ]
    seen = after(*made)
    cursors = {
        "subjects": ok(client.get(f"{API}/subjects", params={"limit": 1}, headers=seen))["next_cursor"],
        "users": ok(client.get(f"{API}/admin/users", params={"limit": 1}, headers={**admin.auth, **seen}))[
            "next_cursor"
        ],
        "events": ok(client.get(f"{API}/admin/events", params={"limit": 1}, headers={**admin.auth, **seen}))[
            "next_cursor"
        ],
    }
    assert all(cursors.values()), cursors

    def forged(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    tampered = [forged("abc"), forged({"a": 1}), forged([1, 2, 3]), forged(True), "%%%", forged(["x", "not-a-uuid"])]
    for url, headers, own in (
        (f"{API}/subjects", {}, "subjects"),
        (f"{API}/admin/users", admin.auth, "users"),
        (f"{API}/admin/events", admin.auth, "events"),
    ):
        ok(client.get(url, params={"cursor": cursors[own]}, headers=headers))
        foreign = [
            c for k, c in cursors.items() if k != own and (own, k) not in (("users", "events"), ("events", "users"))
        ]
        for cursor in foreign + tampered:
            r = client.get(url, params={"cursor": cursor}, headers=headers)
            body = problem(r, 422, "validation-failed")
            assert "cursor" in error_fields(body), body


# ----------------------------------------------------------------------------------------- idempotency


def test_the_same_idempotency_key_and_body_replays_the_first_response(client: Any, admin: Actor) -> None:
    key = str(uuid.uuid4())
    payload = {"name": "Astronomy", "category": "Science"}
    h = {**admin.auth, "Idempotency-Key": key}
    r1 = client.post(f"{API}/admin/subjects", json=payload, headers=h)
    first = ok(r1, 201)
    r2 = client.post(f"{API}/admin/subjects", json=payload, headers=h)
    assert ok(r2, 201) == first
    assert r2.headers["X-Event-Position"] == r1.headers["X-Event-Position"]
    assert r2.headers.get("X-Request-ID") and r2.headers.get("X-Content-Type-Options") == "nosniff"
    # the command ran once: one subject, one Subject.Created event
    seen = after(r1)
    assert [s["id"] for s in ok(client.get(f"{API}/subjects", headers=seen))["items"]] == [first["id"]]
    created = all_events(client, admin, seen, type="Subject.Created")
    assert [e["aggregate_id"] for e in created] == [first["id"]]
    # same key, another body (or another route): 422, nothing runs
    for method, url, body in (
        ("POST", f"{API}/admin/subjects", {"name": "Astrology", "category": "Science"}),
        ("PATCH", f"{API}/admin/subjects/{first['id']}", payload),
    ):
        r = client.request(method, url, json=body, headers=h)
        problem(r, 422, "idempotency-key-reused")
        assert "X-Event-Position" not in r.headers
    assert [s["name"] for s in ok(client.get(f"{API}/subjects"))["items"]] == ["Astronomy"]
    # a key is at most 200 characters
    r = client.post(f"{API}/admin/subjects", json=payload, headers={**admin.auth, "Idempotency-Key": "k" * 201})
    problem(r, 422, "validation-failed")


def test_token_issuing_routes_are_not_replayed_so_no_token_is_stored(
    client: Any, admin: Actor, prepared: Settings
) -> None:
    """Replaying /auth/* would need its tokens stored; they are secrets, so the key is ignored there."""
    key = str(uuid.uuid4())
    body = reg_body()
    r1 = client.post(f"{API}/auth/register", json=body, headers={"Idempotency-Key": key})
    ok(r1, 201)
    problem(client.post(f"{API}/auth/register", json=body, headers={"Idempotency-Key": key}), 409, "email-taken")
    registered = all_events(client, admin, after(r1), type="User.Registered")
    assert [e["data"]["email"] for e in registered].count(body["email"]) == 1
    import psycopg

    with psycopg.connect(prepared.database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM idempotency_keys WHERE key = %s", (key,)).fetchone()
    assert stored == (0,)


def test_idempotent_replays_do_not_undo_later_changes(client: Any, student: Actor) -> None:
    key = str(uuid.uuid4())
    h = {**student.auth, "Idempotency-Key": key}
    r1 = client.patch(f"{API}/me", json={"full_name": "Alpha"}, headers=h)
    assert ok(r1)["full_name"] == "Alpha"
    ok(client.patch(f"{API}/me", json={"full_name": "Beta"}, headers=student.auth))
    r3 = client.patch(f"{API}/me", json={"full_name": "Alpha"}, headers=h)
    assert ok(r3) == ok(r1)
    assert ok(client.get(f"{API}/me", headers=student.auth))["full_name"] == "Beta"
    problem(client.patch(f"{API}/me", json={"full_name": "Gamma"}, headers=h), 422, "idempotency-key-reused")
    assert ok(client.get(f"{API}/me", headers=student.auth))["full_name"] == "Beta"
    # an error is replayed as well (the key was spent on it)
    k2 = {**student.auth, "Idempotency-Key": str(uuid.uuid4())}
    p1 = problem(client.patch(f"{API}/me", json={"timezone": "Moon/Base"}, headers=k2), 422, "validation-failed")
    p2 = problem(client.patch(f"{API}/me", json={"timezone": "Moon/Base"}, headers=k2), 422, "validation-failed")
    assert p1 == p2


def test_idempotency_keys_are_scoped_per_caller(client: Any, admin: Actor, prepared: Settings) -> None:
    from tests.support.api import staff

    other_admin = staff(client, prepared, "admin")
    key = str(uuid.uuid4())
    payload = {"name": "Geography", "category": "Humanities"}
    a = ok(client.post(f"{API}/admin/subjects", json=payload, headers={**admin.auth, "Idempotency-Key": key}), 201)
    r = client.post(f"{API}/admin/subjects", json=payload, headers={**other_admin.auth, "Idempotency-Key": key})
    b = ok(r, 201)
    assert a["id"] != b["id"], "another caller's key replayed someone else's response"
    # and with another body it is not 'reused' either: it is their own key
    ok(
        client.post(
            f"{API}/admin/subjects",
            json={"name": "History", "category": "Humanities"},
            headers={**other_admin.auth, "Idempotency-Key": str(uuid.uuid4())},
        ),
        201,
    )
    s1, _ = signup(client)
    s2, _ = signup(client)
    k = str(uuid.uuid4())
    m1 = ok(client.patch(f"{API}/me", json={"language": "fr"}, headers={**s1.auth, "Idempotency-Key": k}))
    m2 = ok(client.patch(f"{API}/me", json={"language": "fr"}, headers={**s2.auth, "Idempotency-Key": k}))
    assert (m1["id"], m2["id"]) == (s1.id, s2.id)
    names = sorted(s["name"] for s in ok(client.get(f"{API}/subjects", headers=after(r)))["items"])
    assert names[:2] == ["Geography", "Geography"]


# ------------------------------------------------------------------------------------------ rate limits


def _fresh_window(seconds: int = 60, room: float = 20.0) -> None:
    """Fixed windows: start where the whole test fits inside one (else the counters reset mid-test)."""
    left = seconds - time.time() % seconds
    if left < room:
        # The limiter counts per wall-clock window (as the contract's "N/minute"); a test that straddled a
        # boundary would see its counter reset. Waiting out the last `room` seconds is the only way in.
        time.sleep(left + 0.2)


def test_rate_limits_answer_429_rate_limited_with_retry_after(app_with: Any) -> None:
    c = app_with(rate_limits=parse_rate_limits("register=2/minute,login=2/minute,default=3/minute"))
    _fresh_window()
    a = ok(c.post(f"{API}/auth/register", json=reg_body(unique_email("rl-a"))), 201)
    b = ok(c.post(f"{API}/auth/register", json=reg_body(unique_email("rl-b"))), 201)
    r = c.post(f"{API}/auth/register", json=reg_body(unique_email("rl-c")))
    problem(r, 429, "rate-limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert r.headers.get("X-Request-ID") and r.headers.get("X-Content-Type-Options") == "nosniff"
    # login: failures count too, and then even the right password waits
    problem(c.post(f"{API}/auth/login", json={"email": a["user"]["email"], "password": "Wr0ng-pass"}), 401)
    ok(c.post(f"{API}/auth/login", json={"email": a["user"]["email"], "password": PASSWORD}))
    r = c.post(f"{API}/auth/login", json={"email": a["user"]["email"], "password": PASSWORD})
    problem(r, 429, "rate-limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    # the rest: per user ...
    auth_a = {"Authorization": f"Bearer {a['access_token']}"}
    auth_b = {"Authorization": f"Bearer {b['access_token']}"}
    for _ in range(3):
        ok(c.get(f"{API}/me", headers=auth_a))
    problem(c.get(f"{API}/me", headers=auth_a), 429, "rate-limited")
    problem(c.patch(f"{API}/me", json={"language": "fr"}, headers=auth_a), 429, "rate-limited")
    ok(c.get(f"{API}/me", headers=auth_b))  # b has its own budget
    # ... or per IP when anonymous
    for _ in range(3):
        ok(c.get(f"{API}/subjects"))
    problem(c.get(f"{API}/subjects"), 429, "rate-limited")
    ok(c.get(f"{API}/subjects", headers=auth_b))
    # health and docs are not limited
    for _ in range(5):
        ok(c.get("/healthz"))
    assert ok(c.get(f"{API}/me", headers=auth_b))["language"] == "en"


# ------------------------------------------------------------------------------------- system endpoints


def test_healthz_and_readyz(client: Any) -> None:
    r = client.get("/healthz")
    assert ok(r) == {"status": "ok"}
    r = client.get("/readyz")
    body = ok(r)
    assert body["status"] == "ready", body
    assert body["checks"]["store"] == "ok" and body["checks"]["broker"] == "ok", body
    lag = body["projection_lag"]
    assert isinstance(lag, dict) and {"users_directory", "audit_log", "subjects"} <= set(lag), body
    assert all(isinstance(v, int) and v >= 0 for v in lag.values()), lag


def test_readyz_is_503_when_the_broker_is_unreachable(app_with: Any) -> None:
    broken = app_with(redis_url="redis://127.0.0.1:1/0", test_clock=False)
    ok(broken.get("/healthz"))  # the process is up ...
    r = broken.get("/readyz")  # ... but not ready
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] != "ready" and body["checks"]["store"] == "ok", body
    assert body["checks"]["broker"] != "ok", body


def test_openapi_describes_every_route(client: Any) -> None:
    r = client.get("/schema/openapi.json")
    assert r.status_code == 200 and "json" in media_type(r), r.headers
    doc = r.json()
    assert str(doc["openapi"]).startswith("3."), doc.get("openapi")
    assert doc["info"]["title"] and doc["info"]["version"]
    wanted = {
        "/api/v1/auth/register": {"post"},
        "/api/v1/auth/login": {"post"},
        "/api/v1/auth/refresh": {"post"},
        "/api/v1/auth/logout": {"post"},
        "/api/v1/me": {"get", "patch"},
        "/api/v1/admin/users": {"get"},
        "/api/v1/admin/users/{user_id}": {"patch", "delete"},
        "/api/v1/admin/events": {"get"},
        "/api/v1/admin/aggregates/{aggregate_id}/history": {"get"},
        "/api/v1/subjects": {"get"},
        "/api/v1/admin/subjects": {"post"},
        "/api/v1/admin/subjects/{subject_id}": {"patch", "delete"},
        "/api/v1/admin/test-clock": {"put", "delete"},
        "/healthz": {"get"},
        "/readyz": {"get"},
    }
    paths = doc["paths"]
    for path, methods in wanted.items():
        assert path in paths, f"{path} missing from OpenAPI"
        assert methods <= set(paths[path]), (path, set(paths[path]))


def test_the_docs_page_loads_only_local_assets_that_exist(client: Any) -> None:
    for page in ("/schema", "/schema/swagger"):
        r = client.get(page)
        assert r.status_code == 200 and media_type(r) == "text/html", (page, r.status_code)
        refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", r.text)
        assert refs, "the docs page loads no script or stylesheet"
        assert any(x.endswith(".js") for x in refs) and any(x.endswith(".css") for x in refs), refs
        for ref in refs:
            assert ref.startswith("/") and not ref.startswith("//"), f"{page} loads a non-local asset: {ref}"
            asset = client.get(ref)
            assert asset.status_code == 200 and len(asset.content) > 100, (ref, asset.status_code)
        assert not re.search(r"(cdn\.jsdelivr|unpkg\.com|cdnjs|googleapis)", r.text), "the docs page uses a CDN"


# ------------------------------------------------------------------------------------------- test clock


def test_the_test_clock_moves_recorded_at_and_only_admins_set_it(client: Any, admin: Actor, student: Actor) -> None:
    when = datetime(2030, 6, 15, 9, 30, tzinfo=UTC)
    for actor in (student,):
        problem(
            client.put(f"{API}/admin/test-clock", json={"now": when.isoformat()}, headers=actor.auth), 403, "forbidden"
        )
        problem(client.delete(f"{API}/admin/test-clock", headers=actor.auth), 403, "forbidden")
    problem(client.put(f"{API}/admin/test-clock", json={"now": when.isoformat()}), 401, "unauthorized")
    problem(client.delete(f"{API}/admin/test-clock"), 401, "unauthorized")
    for bad in ({"now": "next tuesday"}, {}, {"now": None}):
        problem(client.put(f"{API}/admin/test-clock", json=bad, headers=admin.auth), 422, "validation-failed")
    try:
        body = ok(client.put(f"{API}/admin/test-clock", json={"now": "2030-06-15T09:30:00Z"}, headers=admin.auth))
        now = datetime.fromisoformat(str(body["now"]).replace("Z", "+00:00"))
        assert abs(now - when) < timedelta(seconds=5), body
        r = client.patch(f"{API}/me", json={"language": "nl"}, headers=student.auth)
        ok(r)
        moved = all_events(client, admin, after(r), aggregate_id=student.id, type="User.ProfileUpdated")
        at = datetime.fromisoformat(moved[-1]["recorded_at"].replace("Z", "+00:00"))
        assert when <= at < when + timedelta(minutes=1), moved[-1]
        # tokens still run on real time: the student's token keeps working, and new ones start now
        ok(client.get(f"{API}/me", headers=student.auth))
        fresh = ok(client.post(f"{API}/auth/login", json={"email": student.email, "password": PASSWORD}))
        claims = jwt.decode(fresh["access_token"], options={"verify_signature": False})
        assert abs(claims["iat"] - time.time()) < 60 and claims["exp"] - claims["iat"] == 1800, claims
        ok(client.get(f"{API}/me", headers={"Authorization": f"Bearer {fresh['access_token']}"}))
        # a naive instant is taken as UTC
        naive = ok(client.put(f"{API}/admin/test-clock", json={"now": "2030-06-15T09:30:00"}, headers=admin.auth))
        assert abs(datetime.fromisoformat(str(naive["now"]).replace("Z", "+00:00")) - when) < timedelta(seconds=5)
    finally:
        back = ok(client.delete(f"{API}/admin/test-clock", headers=admin.auth))
    real = datetime.now(UTC)
    assert abs(datetime.fromisoformat(str(back["now"]).replace("Z", "+00:00")) - real) < timedelta(seconds=30)
    r = client.patch(f"{API}/me", json={"language": "sv"}, headers=student.auth)
    ok(r)
    latest = all_events(client, admin, after(r), aggregate_id=student.id, type="User.ProfileUpdated")[-1]
    at = datetime.fromisoformat(latest["recorded_at"].replace("Z", "+00:00"))
    assert abs(at - real) < timedelta(seconds=30), latest


def test_the_test_clock_is_404_when_not_enabled(client: Any, admin: Actor, app_with: Any) -> None:
    off = app_with(test_clock=False)
    problem(
        off.put(f"{API}/admin/test-clock", json={"now": "2030-01-01T00:00:00Z"}, headers=admin.auth), 404, "not-found"
    )
    problem(off.delete(f"{API}/admin/test-clock", headers=admin.auth), 404, "not-found")
