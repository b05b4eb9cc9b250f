"""The admin's review of a tutor through the real app and a real S3: verifying documents (404 unknown, 409 not yet
uploaded, idempotent), and the whole profile for review (GET /admin/tutors/{id})."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from application.settings import Settings
from tests.tutoring.support import (
    API,
    Actor,
    after,
    ok,
    problem,
    signup,
    staff,
)

PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n" + bytes(range(256)) * 4


def announce(client: Any, tutor: Actor, filename: str = "diploma.pdf") -> dict[str, Any]:
    r = client.post(
        f"{API}/tutor/documents",
        json={"filename": filename, "content_type": "application/pdf", "size": len(PDF)},
        headers=tutor.auth,
    )
    body: dict[str, Any] = ok(r, 201)
    return body


def upload(client: Any, tutor: Actor, filename: str = "diploma.pdf") -> tuple[dict[str, Any], httpx.Response]:
    """Announce, PUT and complete a pdf: (the announced document, the completion response)."""
    doc = announce(client, tutor, filename)
    put = httpx.put(doc["upload_url"], content=PDF, headers={"Content-Type": "application/pdf"}, timeout=30)
    assert put.status_code == 200, put.text[:500]
    r: httpx.Response = client.post(f"{API}/tutor/documents/{doc['id']}/complete", headers=tutor.auth)
    assert ok(r)["status"] == "uploaded"
    return doc, r


@pytest.fixture
def admin(s3_client: Any, s3_settings: Settings) -> Actor:
    return staff(s3_client, s3_settings, "admin")


def verify_url(tutor: Actor, document_id: str) -> str:
    return f"{API}/admin/tutors/{tutor.id}/documents/{document_id}/verify"


def test_verify_a_document(s3_client: Any, s3_settings: Settings, admin: Actor) -> None:
    c = s3_client
    tutor = signup(c, "tutor", "Ada Lovelace")
    doc, _ = upload(c, tutor)
    pending = announce(c, tutor, "later.pdf")

    # unknown tutor, unknown document: 404; announced but not uploaded: 409, nothing recorded
    problem(c.post(f"{API}/admin/tutors/{admin.id}/documents/{doc['id']}/verify", headers=admin.auth), 404)
    problem(c.post(verify_url(tutor, admin.id), headers=admin.auth), 404)
    problem(c.post(verify_url(tutor, pending["id"]), headers=admin.auth), 409, "wrong-status")
    # a tutor (even the owner) may not verify
    problem(c.post(verify_url(tutor, doc["id"]), headers=tutor.auth), 403)

    r = c.post(verify_url(tutor, doc["id"]), headers=admin.auth)
    first = ok(r)
    assert (first["id"], first["status"], first["verified"], first["verified_by"]) == (
        doc["id"],
        "uploaded",
        True,
        admin.id,
    )
    assert first["verified_at"] and first["download_url"]
    assert "key" not in first

    # again (by another admin): 200, the first verification stands, no new event
    other = staff(c, s3_settings, "admin")
    again = c.post(verify_url(tutor, doc["id"]), headers=other.auth)
    assert {k: ok(again)[k] for k in ("verified", "verified_at", "verified_by")} == {
        "verified": True,
        "verified_at": first["verified_at"],
        "verified_by": admin.id,
    }
    events = ok(
        c.get(
            f"{API}/admin/events",
            params={"type": "TutorProfile.DocumentVerified"},
            headers=after(r, again, auth=admin.auth),
        )
    )["items"]
    assert len(events) == 1, events
    assert (events[0]["actor_id"], events[0]["data"]["document_id"]) == (admin.id, doc["id"])

    # the tutor's own list and the approval queue show it
    mine = ok(c.get(f"{API}/tutor/documents", headers=after(r, auth=tutor.auth)))["items"]
    assert {d["id"]: d["verified"] for d in mine} == {doc["id"]: True, pending["id"]: False}
    queue = ok(c.get(f"{API}/admin/tutors", params={"status": "draft"}, headers=after(r, auth=admin.auth)))["items"]
    (item,) = [i for i in queue if i["id"] == tutor.id]
    assert {d["id"]: (d["verified"], d["verified_by"]) for d in item["documents"]} == {
        doc["id"]: (True, admin.id),
        pending["id"]: (False, None),
    }
