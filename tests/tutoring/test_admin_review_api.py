"""The admin's review of a tutor through the real app and a real S3: verifying documents (404 unknown, 409 not yet
uploaded, idempotent), and the whole profile for review (GET /admin/tutors/{id})."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from application.settings import Settings
from tests.tutoring.support import (
    API,
    PDF,
    PROFILE_KEYS,
    Actor,
    after,
    announce,
    create_subject,
    fill_profile,
    ok,
    problem,
    signup,
    staff,
    upload_document,
)


@pytest.fixture
def admin(s3_client: Any, s3_settings: Settings) -> Actor:
    return staff(s3_client, s3_settings, "admin")


def verify_url(tutor: Actor, document_id: str) -> str:
    return f"{API}/admin/tutors/{tutor.id}/documents/{document_id}/verify"


def test_verify_a_document(s3_client: Any, s3_settings: Settings, admin: Actor) -> None:
    c = s3_client
    tutor = signup(c, "tutor", "Ada Lovelace")
    doc = ok(upload_document(c, tutor))
    pending = ok(announce(c, tutor, filename="later.pdf"), 201)

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

    # the approval queue shows it (the tutor's own list keeps the contract's shape)
    mine = ok(c.get(f"{API}/tutor/documents", headers=after(r, auth=tutor.auth)))["items"]
    assert all("verified" not in d for d in mine) and len(mine) == 2
    queue = ok(c.get(f"{API}/admin/tutors", params={"status": "draft"}, headers=after(r, auth=admin.auth)))["items"]
    (item,) = [i for i in queue if i["id"] == tutor.id]
    assert {d["id"]: (d["verified"], d["verified_by"]) for d in item["documents"]} == {
        doc["id"]: (True, admin.id),
        pending["id"]: (False, None),
    }


# the tutor's own profile, and what only admins see
REVIEW_KEYS = PROFILE_KEYS | {
    "full_name",
    "email",
    "submitted_at",
    "account_open",
    "listed",
    "rating_average",
    "rating_count",
    "documents",
}


def test_the_whole_profile_for_review(s3_client: Any, admin: Actor) -> None:
    c = s3_client
    algebra = create_subject(c, admin, "Linear Algebra", "Mathematics")
    chemistry = create_subject(c, admin, "Organic Chemistry", "Science")
    tutor = signup(c, "tutor", "Ada Lovelace")
    fill_profile(
        c,
        tutor,
        [chemistry["id"], algebra["id"]],
        amount=5500,
        currency="GBP",
        bio="Engines and numbers.",
        timezone="Europe/London",
        weekly=[{"weekday": 0, "start": "09:00", "end": "12:30"}],
        min_notice_minutes=120,
        blocks=[{"start": "2031-01-06T09:00:00+01:00", "end": "2031-01-06T10:00:00+01:00"}],
        openings=[{"start": "2031-01-07T18:00:00Z", "end": "2031-01-07T20:00:00Z"}],
    )
    ok(c.patch(f"{API}/tutor/profile", json={"auto_confirm": True}, headers=tutor.auth))
    doc = ok(upload_document(c, tutor))
    pending = ok(announce(c, tutor, filename="later.pdf"), 201)
    ok(c.post(verify_url(tutor, doc["id"]), headers=admin.auth))
    submitted = c.post(f"{API}/tutor/profile/submit", headers=tutor.auth)
    ok(submitted)
    retired = c.delete(f"{API}/admin/subjects/{chemistry['id']}", headers=admin.auth)
    ok(retired)

    r = c.get(f"{API}/admin/tutors/{tutor.id}", headers=after(submitted, retired, auth=admin.auth))
    body = ok(r)
    assert set(body) == REVIEW_KEYS
    assert r.headers["X-Projection-Position"].isdigit()
    assert (body["id"], body["full_name"], body["email"]) == (tutor.id, "Ada Lovelace", tutor.email)
    assert (body["status"], body["completeness"], body["feedback"]) == ("pending_approval", 100, None)
    assert body["submitted_at"] and (body["account_open"], body["listed"]) == (True, False)
    assert body["personal"] == {"bio": "Engines and numbers.", "location": "Remote", "languages": ["en"]}
    assert body["experience"] == {"years": 4, "education": "MSc", "certifications": []}
    # in the tutor's order, with names as the catalog has them now
    assert body["subjects"] == [
        {"id": chemistry["id"], "name": "Organic Chemistry", "category": "Science", "active": False},
        {"id": algebra["id"], "name": "Linear Algebra", "category": "Mathematics", "active": True},
    ]
    assert body["hourly_rate"] == {"amount": 5500, "currency": "GBP"}
    assert body["availability"] == {
        "timezone": "Europe/London",
        "weekly": [{"weekday": 0, "start": "09:00", "end": "12:30"}],
        "blocks": [{"start": "2031-01-06T08:00:00Z", "end": "2031-01-06T09:00:00Z"}],
        "openings": [{"start": "2031-01-07T18:00:00Z", "end": "2031-01-07T20:00:00Z"}],
    }
    assert (body["auto_confirm"], body["min_notice_minutes"]) == (True, 120)
    assert (body["rating_average"], body["rating_count"]) == (None, 0)
    docs = {d["id"]: d for d in body["documents"]}
    assert set(docs) == {doc["id"], pending["id"]}
    checked, later = docs[doc["id"]], docs[pending["id"]]
    assert (checked["filename"], checked["status"], checked["verified"], checked["verified_by"]) == (
        "diploma.pdf",
        "uploaded",
        True,
        admin.id,
    )
    assert checked["verified_at"] and checked["url"] == checked["download_url"]
    assert httpx.get(checked["url"], timeout=30).content == PDF
    assert (later["status"], later["url"], later["verified"], later["verified_at"]) == ("pending", None, False, None)
    assert "key" not in checked

    # unknown tutor (or a user without a profile): 404; only admins
    problem(c.get(f"{API}/admin/tutors/{admin.id}", headers=admin.auth), 404)
    problem(c.get(f"{API}/admin/tutors/{tutor.id}", headers=tutor.auth), 403)
    student = signup(c, "student")
    problem(c.get(f"{API}/admin/tutors/{tutor.id}", headers=student.auth), 403)
    problem(c.get(f"{API}/admin/tutors/{tutor.id}"), 401)
