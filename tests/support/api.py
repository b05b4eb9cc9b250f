"""Builders and assertions for tests through the HTTP API: accounts registered or made staff (with their tokens),
read-your-writes headers, validation problems and the audit log read page by page."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from application.settings import Settings
from tests.support.http import PROBLEMS, media_type, ok, problem, where  # noqa: F401  (re-exported for the HTTP tests)

API = "/api/v1"
PASSWORD = "Passw0rd-test"
USER_FIELDS = {
    "id",
    "email",
    "full_name",
    "role",
    "is_active",
    "timezone",
    "language",
    "currency",
    "avatar_url",
    "email_notifications",
}
EVENT_FIELDS = {
    "position",
    "aggregate_id",
    "aggregate_version",
    "type",
    "recorded_at",
    "actor_id",
    "actor_role",
    "correlation_id",
    "causation_id",
    "data",
}


def error_fields(body: dict[str, Any]) -> set[str]:
    """The `field` of each item of a validation problem's errors[] (which must be a non-empty list)."""
    errors = body.get("errors")
    assert isinstance(errors, list) and errors, f"validation problem without errors[]: {body}"
    for e in errors:
        assert isinstance(e, dict) and isinstance(e.get("field"), str) and isinstance(e.get("message"), str), body
    return {e["field"] for e in errors}


def event_position(r: httpx.Response) -> int:
    """X-Event-Position of a command response (asserted present and a positive integer)."""
    raw = r.headers.get("X-Event-Position")
    assert raw is not None, f"command response without X-Event-Position: {where(r)}"
    assert raw.isdigit() and int(raw) > 0, f"X-Event-Position {raw!r}"
    return int(raw)


def projection_position(r: httpx.Response) -> int:
    """X-Projection-Position of a query response (asserted present and a non-negative integer)."""
    raw = r.headers.get("X-Projection-Position")
    assert raw is not None, f"query response without X-Projection-Position: {where(r)}"
    assert raw.isdigit(), f"X-Projection-Position {raw!r}"
    return int(raw)


def after(*responses: httpx.Response, headers: dict[str, str] | None = None) -> dict[str, str]:
    """Headers for a query that must reflect the given command responses (X-Min-Position)."""
    out = dict(headers or {})
    out["X-Min-Position"] = str(max(event_position(r) for r in responses))
    return out


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{secrets.token_hex(5)}@example.test"


def reg_body(
    email: str | None = None, password: str = PASSWORD, role: str = "student", full_name: str = "Some One"
) -> dict[str, Any]:
    return {"email": email or unique_email(role), "password": password, "full_name": full_name, "role": role}


@dataclass
class Actor:
    """A signed-in account as the tests hold it."""

    id: str
    email: str
    role: str
    access: str
    refresh: str
    password: str = PASSWORD

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


def signup(
    client: Any,
    role: str = "student",
    *,
    full_name: str = "Test User",
    email: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[Actor, httpx.Response]:
    """Register through the API; the actor and the raw 201 response."""
    body = reg_body(email, role=role, full_name=full_name)
    r = client.post(f"{API}/auth/register", json=body, headers=headers or {})
    out = ok(r, 201)
    u = out["user"]
    return Actor(u["id"], u["email"], u["role"], out["access_token"], out["refresh_token"]), r


def login(client: Any, email: str, password: str = PASSWORD) -> dict[str, Any]:
    return ok(client.post(f"{API}/auth/login", json={"email": email, "password": password}), 200)  # type: ignore[no-any-return]


def all_events(client: Any, admin: Actor, headers: dict[str, str] | None = None, **params: Any) -> list[dict[str, Any]]:
    """Every /admin/events item for these filters, following next_cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        p = dict(params, limit=100)
        if cursor:
            p["cursor"] = cursor
        body = ok(client.get(f"{API}/admin/events", params=p, headers={**admin.auth, **(headers or {})}))
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("/admin/events did not end within 100 pages")


def register(
    client: Any, role: str = "student", email: str | None = None, password: str = PASSWORD, full_name: str = "Test User"
) -> dict[str, Any]:
    """Register through the API; returns the response body (user + tokens)."""
    email = email or f"{role}-{secrets.token_hex(6)}@example.test"
    r = client.post(
        "/api/v1/auth/register", json={"email": email, "password": password, "full_name": full_name, "role": role}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def staff_login(client: Any, settings: Settings, role: str = "admin") -> dict[str, Any]:
    """Create a staff account the way the CLI does, then log in through the API."""
    from application import context
    from application.identity import Identity

    email = f"{role}-{secrets.token_hex(6)}@example.test"
    with context.acting(actor_role="system"):
        Identity(settings).register(email, PASSWORD, f"Staff {role}", role, staff=True)
    r = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = dict(r.json())
    body["email"] = email
    return body


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def staff(client: Any, settings: Settings, role: str) -> Actor:
    """A staff account (`staff_login`) as an Actor, its role checked through /me."""
    tokens = staff_login(client, settings, role)
    me = ok(client.get(f"{API}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}))
    assert me["role"] == role, me
    return Actor(me["id"], me["email"], role, tokens["access_token"], tokens["refresh_token"])


def z(t: datetime) -> str:
    """An instant as the API writes it: RFC 3339 in UTC with a Z."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


# paging parameters every paged list refuses with 422 validation-failed
BAD_PAGES: tuple[dict[str, object], ...] = (
    {"limit": 0},
    {"limit": 101},
    {"limit": "many"},
    {"cursor": "%%%"},
    {"cursor": "bm90IGEgY3Vyc29y"},  # base64 of "not a cursor"
    {"cursor": "WzEsMl0"},  # base64 of [1,2]: JSON, but not this list's
)
