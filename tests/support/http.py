"""The HTTP assertions every test folder shares: a JSON success (`ok`) and an RFC 9457 problem (`problem`), with
the request, status and body in the failure message."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEMS = "https://tutorconnect.dev/problems/"


def where(r: httpx.Response) -> str:
    """The request and its answer, for a failure message."""
    return f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:800]}"


def media_type(r: httpx.Response) -> str:
    return str(r.headers.get("content-type", "")).split(";")[0].strip().lower()


def ok(r: httpx.Response, status: int = 200) -> Any:
    """Assert a JSON success with exactly `status`; return the body (None for an empty one)."""
    assert r.status_code == status, f"wanted {status}: {where(r)}"
    if not r.content:
        return None
    assert media_type(r) == "application/json", f"content-type {r.headers.get('content-type')}: {where(r)}"
    return r.json()


def problem(r: httpx.Response, status: int | tuple[int, ...], slug: str | None = None) -> dict[str, Any]:
    """Assert an RFC 9457 problem with `status` (or one of them) and, if given, the type ending in `slug`."""
    wanted = (status,) if isinstance(status, int) else status
    assert r.status_code in wanted, f"wanted {wanted} {slug or ''}: {where(r)}"
    assert media_type(r) == "application/problem+json", f"content-type {r.headers.get('content-type')}: {where(r)}"
    body = r.json()
    assert isinstance(body, dict), where(r)
    assert body.get("status") == r.status_code, f"problem status field: {body}"
    assert isinstance(body.get("type"), str) and body["type"].startswith(PROBLEMS), f"problem type: {body}"
    assert isinstance(body.get("title"), str) and body["title"], f"problem title: {body}"
    assert isinstance(body.get("detail"), str), f"problem detail: {body}"
    if slug is not None:
        assert body["type"] == PROBLEMS + slug, f"wanted type …/{slug}, got {body['type']}: {body}"
    if r.status_code in (429, 503):  # rate limits and anything unavailable say when to come back
        assert int(r.headers["Retry-After"]) >= 1, f"no Retry-After: {dict(r.headers)}"
    return body
