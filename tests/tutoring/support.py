"""Small helpers for the tutoring HTTP tests: problem+json checks, read-your-writes headers, actors, and builders
for subjects and approved tutors (all through the public API)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx

from application.settings import Settings
from tests.support.api import PASSWORD, staff_login
from tests.support.http import PROBLEMS, media_type, ok, problem, where  # noqa: F401  (re-exported for this folder's tests)

API = "/api/v1"
PUBLIC_TUTOR_KEYS = {
    "id",
    "full_name",
    "bio",
    "languages",
    "subjects",
    "hourly_rate",
    "rating_average",
    "rating_count",
    "next_slot",
}
PROFILE_KEYS = {
    "id",
    "status",
    "completeness",
    "feedback",
    "personal",
    "experience",
    "subjects",
    "hourly_rate",
    "availability",
    "auto_confirm",
    "min_notice_minutes",
}


def position(r: httpx.Response) -> int:
    raw = r.headers.get("X-Event-Position")
    assert raw is not None and raw.isdigit(), f"no X-Event-Position: {where(r)}"
    return int(raw)


def after(*responses: httpx.Response, auth: dict[str, str] | None = None) -> dict[str, str]:
    """Headers for a query that must see the given commands' events (X-Min-Position), plus auth if given."""
    return {**(auth or {}), "X-Min-Position": str(max(position(r) for r in responses))}


@dataclass
class Actor:
    id: str
    email: str
    role: str
    access: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


def signup(client: Any, role: str = "student", full_name: str = "Test User") -> Actor:
    email = f"{role}-{secrets.token_hex(6)}@example.test"
    r = client.post(
        f"{API}/auth/register", json={"email": email, "password": PASSWORD, "full_name": full_name, "role": role}
    )
    body = ok(r, 201)
    return Actor(body["user"]["id"], body["user"]["email"], role, body["access_token"])


def staff(client: Any, settings: Settings, role: str = "admin") -> Actor:
    tokens = staff_login(client, settings, role)
    me = ok(client.get(f"{API}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}))
    return Actor(me["id"], me["email"], role, tokens["access_token"])


def create_subject(client: Any, admin: Actor, name: str, category: str = "Mathematics") -> dict[str, Any]:
    body: dict[str, Any] = ok(
        client.post(f"{API}/admin/subjects", json={"name": name, "category": category}, headers=admin.auth), 201
    )
    return body


def fill_profile(
    client: Any,
    tutor: Actor,
    subjects: list[str],
    *,
    amount: int = 4000,
    currency: str = "USD",
    bio: str = "Patient tutor with years of classroom practice.",
    timezone: str = "UTC",
    weekly: list[dict[str, Any]] | None = None,
    min_notice_minutes: int = 0,
    blocks: list[dict[str, str]] | None = None,
    openings: list[dict[str, str]] | None = None,
) -> httpx.Response:
    """The four non-document steps in one PATCH (80 %)."""
    r: httpx.Response = client.patch(
        f"{API}/tutor/profile",
        json={
            "personal": {"bio": bio, "location": "Remote", "languages": ["en"]},
            "experience": {"years": 4, "education": "MSc", "certifications": []},
            "subjects": subjects,
            "hourly_rate": {"amount": amount, "currency": currency},
            "availability": {
                "timezone": timezone,
                "weekly": weekly
                if weekly is not None
                else [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(7)],
                "blocks": blocks or [],
                "openings": openings or [],
            },
            "min_notice_minutes": min_notice_minutes,
        },
        headers=tutor.auth,
    )
    body = ok(r)
    assert body["completeness"] == 80, body
    return r


def approved_tutor(
    client: Any, admin: Actor, subjects: list[str], full_name: str = "Tu Tor", **profile: Any
) -> tuple[Actor, httpx.Response]:
    """A tutor registered, filled to 80 %, submitted and approved; returns the approval response too."""
    tutor = signup(client, "tutor", full_name)
    fill_profile(client, tutor, subjects, **profile)
    ok(client.post(f"{API}/tutor/profile/submit", headers=tutor.auth))
    r = client.post(f"{API}/admin/tutors/{tutor.id}/approve", headers=admin.auth)
    assert ok(r)["status"] == "approved"
    return tutor, r


def set_clock(client: Any, admin: Actor, now: str) -> None:
    ok(client.put(f"{API}/admin/test-clock", json={"now": now}, headers=admin.auth))


# a small but real PDF (its signature checked on completion)
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n" + bytes(range(256)) * 4


def announce(
    client: Any, tutor: Actor, data: bytes = PDF, content_type: str = "application/pdf", filename: str = "diploma.pdf"
) -> httpx.Response:
    """POST /tutor/documents for `data` (the presigned upload in the answer)."""
    r: httpx.Response = client.post(
        f"{API}/tutor/documents",
        json={"filename": filename, "content_type": content_type, "size": len(data)},
        headers=tutor.auth,
    )
    return r


def put(url: str, data: bytes, content_type: str) -> None:
    """PUT to a presigned S3 URL."""
    r = httpx.put(url, content=data, headers={"Content-Type": content_type}, timeout=30)
    assert r.status_code == 200, f"S3 PUT -> {r.status_code}: {r.text[:500]}"


def upload_document(
    client: Any, tutor: Actor, data: bytes = PDF, content_type: str = "application/pdf", filename: str = "diploma.pdf"
) -> httpx.Response:
    """Announce, PUT and complete a document; the completion's answer (the uploaded document)."""
    doc = ok(announce(client, tutor, data, content_type, filename), 201)
    put(doc["upload_url"], data, content_type)
    r: httpx.Response = client.post(f"{API}/tutor/documents/{doc['id']}/complete", headers=tutor.auth)
    assert ok(r)["status"] == "uploaded"
    return r
