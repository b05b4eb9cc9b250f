"""The edge, route by route: who before what (401, then 403, before any body or parameter is read), and text
PostgreSQL cannot store refused as 422 `validation-failed` naming the field, in bodies, queries and paths."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from litestar.routes import HTTPRoute

from tests.support.api import API, Actor, error_fields, ok, problem, reg_body, signup

pytestmark = pytest.mark.cloned_database

# Routes anyone may call: every other route must have a guard (a new route without one fails here).
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", f"{API}/auth/register"),
    ("POST", f"{API}/auth/login"),
    ("POST", f"{API}/auth/refresh"),
    ("POST", f"{API}/webhooks/stripe"),
    ("GET", f"{API}/subjects"),
    ("GET", f"{API}/tutors"),
    ("GET", f"{API}/tutors/{{tutor_id}}"),
    ("GET", f"{API}/tutors/{{tutor_id}}/slots"),
    ("GET", f"{API}/tutors/{{tutor_id}}/reviews"),
    ("GET", f"{API}/packages"),
    ("GET", f"{API}/calendar/{{feed}}"),  # a calendar feed: its secret token is the credential
}
BAD_BODY = b'{"tutor_id": "not-a-uuid", "start": '  # truncated JSON
BAD_QUERY = {"limit": "many", "cursor": "%%%", "from": "yesterday", "as_of": "soon", "status": "?"}


def _routes(client: Any) -> list[tuple[str, str, tuple[str, ...] | None]]:
    """(method, path template, roles) of every HTTP route; roles None for an unguarded route, () for any user."""
    out = []
    for route in client.app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith(("/schema", "/console")) or route.path == "/":
            continue  # the docs, and the console's pages (cookie sessions: tests/console/test_console_http.py)
        for handler in route.route_handlers:
            guards = handler.resolve_guards()
            roles: tuple[str, ...] | None = None
            for g in guards:
                roles = tuple(getattr(g, "roles", ()))
            for method in handler.http_methods:
                if method in ("HEAD", "OPTIONS"):
                    continue
                out.append((method, route.path_format if hasattr(route, "path_format") else route.path, roles))
    return out


def _concrete(template: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), template)


def test_every_route_checks_the_caller_before_the_body(client: Any, student: Actor, tutor: Actor) -> None:
    routes = _routes(client)
    assert len(routes) > 60, routes
    unguarded = {(m, p) for m, p, roles in routes if roles is None}
    assert unguarded == PUBLIC, f"routes without an auth guard: {sorted(unguarded - PUBLIC)}"
    holders = {"student": student, "tutor": tutor}
    for method, template, roles in routes:
        if roles is None:
            continue
        url = _concrete(template)
        send = {"headers": {"content-type": "application/json"}, "params": BAD_QUERY}
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            send["content"] = BAD_BODY
        r = client.request(method, url, **send)
        problem(r, 401, "unauthorized")
        r = client.request(method, url, **{**send, "headers": {**send["headers"], "authorization": "Bearer x.y.z"}})
        problem(r, 401, "unauthorized")
        outsider = next((a for role, a in holders.items() if roles and role not in roles), None)
        if outsider is not None:
            r = client.request(method, url, **{**send, "headers": {**send["headers"], **outsider.auth}})
            problem(r, 403, "forbidden")


def test_anonymous_booking_with_an_empty_or_truncated_body_is_401(client: Any) -> None:
    for body in (b"", b"{", b'{"tutor_id": "', b"\x00\xff"):
        r = client.post(f"{API}/bookings", content=body, headers={"content-type": "application/json"})
        problem(r, 401, "unauthorized")


def test_a_student_on_an_admin_route_with_a_bad_body_is_403(client: Any, student: Actor) -> None:
    r = client.patch(f"{API}/admin/users/{student.id}", content=b'{"role": ', headers=student.auth)
    problem(r, 403, "forbidden")
    r = client.get(f"{API}/admin/users", params={"q": "\x00", "limit": "x"}, headers=student.auth)
    problem(r, 403, "forbidden")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (
            b'{"email": "a@b.example", "password": "Passw0rd-x", "full_name": "Ann\\u0000Lee", "role": "student"}',
            "full_name",
        ),
        (
            b'{"email": "a@b.example", "password": "Passw0rd-x", "full_name": "Ann\\ud800", "role": "student"}',
            "full_name",
        ),
        (
            b'{"email": "a@b.example", "password": "Passw0rd-x", "full_name": "\\udc00x", "role": "student"}',
            "full_name",
        ),
        (b'{"email": "a\\u0000@b.example", "password": "Passw0rd-x", "full_name": "Ann", "role": "student"}', "email"),
        (
            b'{"email": "a@b.example", "password": "Passw0rd-x", "full_name": "Ann", "role": "student", "x\\u0000": 1}',
            "x\x00",
        ),
    ],
)
def test_unstorable_text_in_a_body_is_422_naming_the_field(client: Any, raw: bytes, field: str) -> None:
    r = client.post(f"{API}/auth/register", content=raw, headers={"content-type": "application/json"})
    body = problem(r, 422, "validation-failed")
    assert error_fields(body) == {field}, body


def test_a_nul_name_never_reaches_the_log(client: Any, admin: Actor) -> None:
    """The outage of the issue: a NUL name was accepted and then stopped every projection of its thread."""
    reg = reg_body(full_name="Eve\x00Null")
    problem(client.post(f"{API}/auth/register", json=reg), 422, "validation-failed")
    ok(client.get(f"{API}/admin/users", headers={**admin.auth, "X-Min-Position": "1"}))
    events = ok(client.get(f"{API}/admin/events", params={"type": "User.Registered"}, headers=admin.auth))["items"]
    assert all(e["data"].get("email") != reg["email"] for e in events)


def test_nested_body_fields_are_named(client: Any, tutor: Actor) -> None:
    patch = json.dumps({"personal": {"bio": "Maths\x00"}, "experience": {"certifications": ["A", "\ud800"]}})
    r = client.patch(
        f"{API}/tutor/profile", content=patch.encode(), headers={**tutor.auth, "content-type": "application/json"}
    )
    assert error_fields(problem(r, 422, "validation-failed")) == {"personal.bio", "experience.certifications[1]"}


def test_unstorable_query_parameters_are_422(client: Any, admin: Actor) -> None:
    for q in ("%00", "a%00b"):
        r = client.get(f"{API}/admin/users?q={q}", headers=admin.auth)
        assert error_fields(problem(r, 422, "validation-failed")) == {"q"}
    r = client.get(f"{API}/tutors?q=%00")
    assert error_fields(problem(r, 422, "validation-failed")) == {"q"}
    r = client.get(f"{API}/admin/events?type=%00&actor_id=x", headers=admin.auth)
    assert "type" in error_fields(problem(r, 422, "validation-failed"))
    # bytes that are not UTF-8 arrive as U+FFFD, which PostgreSQL stores: an ordinary (empty) search
    ok(client.get(f"{API}/admin/users?q=%ED%A0%80", headers=admin.auth))


def test_unstorable_path_segments_are_422(client: Any, admin: Actor) -> None:
    r = client.get(f"{API}/admin/exports/us%00ers", headers=admin.auth)
    assert error_fields(problem(r, 422, "validation-failed")) == {"dataset"}
    r = client.get(f"{API}/finance/accounts/breakage%00/balance", headers=admin.auth)
    assert error_fields(problem(r, 422, "validation-failed")) == {"account"}
    # a segment that no route matches because of such text: the path is named
    for method, path in (("GET", "/tutors/%00"), ("POST", "/bookings/%00/cancel"), ("GET", "/no%00where")):
        r = client.request(method, f"{API}{path}", headers=admin.auth)
        assert error_fields(problem(r, 422, "validation-failed")) == {"path"}
    problem(client.get(f"{API}/tutors/not-a-uuid"), 404, "not-found")  # ordinary unknown paths stay 404


def test_other_control_characters_and_unicode_are_kept(client: Any) -> None:
    actor, _ = signup(client, full_name="Zoë \u0007 \U0001f600 李")
    me = ok(client.get(f"{API}/me", headers=actor.auth))
    assert me["full_name"] == "Zoë \u0007 \U0001f600 李"
