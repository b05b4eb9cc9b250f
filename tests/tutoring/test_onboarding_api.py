"""Tutor onboarding through the real app, real PostgreSQL, real projections and a real S3 (seaweedfs):
profile builder, document uploads, submission, the admin approval queue, rejection and resubmission, approval,
suspension, and who may do what."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from application.settings import Settings
from tests.tutoring.support import (
    API,
    PDF,
    PROFILE_KEYS,
    PUBLIC_TUTOR_KEYS,
    Actor,
    after,
    announce,
    approved_tutor,
    create_subject,
    fill_profile,
    ok,
    problem,
    put,
    signup,
    staff,
    upload_document,
)

DOC_KEYS = {"id", "filename", "content_type", "size", "status", "uploaded_at", "download_url"}


def parse(t: str) -> datetime:
    return datetime.fromisoformat(t.replace("Z", "+00:00"))


@pytest.fixture
def admin(s3_client: Any, s3_settings: Settings) -> Actor:
    return staff(s3_client, s3_settings, "admin")


@pytest.fixture
def subject(s3_client: Any, admin: Actor) -> dict[str, Any]:
    return create_subject(s3_client, admin, "Linear Algebra")


def test_onboarding_round_trip(s3_client: Any, admin: Actor, subject: dict[str, Any]) -> None:
    c = s3_client
    tutor = signup(c, "tutor", "Ada Lovelace")

    # a fresh profile: draft, 0 %
    p = ok(c.get(f"{API}/tutor/profile", headers=tutor.auth))
    assert set(p) == PROFILE_KEYS
    assert (p["id"], p["status"], p["completeness"], p["feedback"]) == (tutor.id, "draft", 0, None)
    assert ok(c.get(f"{API}/tutor/documents", headers=tutor.auth))["items"] == []

    # each builder step adds 20 %
    steps: list[tuple[dict[str, Any], int]] = [
        (
            {"personal": {"bio": "Mathematician; I explain engines.", "location": "London", "languages": ["en", "fr"]}},
            20,
        ),
        ({"experience": {"years": 12, "education": "Self-taught", "certifications": ["Analytical Engine"]}}, 40),
        ({"subjects": [subject["id"]], "hourly_rate": {"amount": 5500, "currency": "GBP"}}, 60),
        (
            {
                "availability": {
                    "timezone": "Europe/London",
                    "weekly": [{"weekday": d, "start": "09:00", "end": "18:00"} for d in range(5)],
                }
            },
            80,
        ),
    ]
    last = None
    for body, expected in steps:
        last = c.patch(f"{API}/tutor/profile", json=body, headers=tutor.auth)
        got = ok(last)
        assert got["completeness"] == expected, (body, got)
        assert got["status"] == "draft"
    assert last is not None
    p = ok(c.get(f"{API}/tutor/profile", headers=after(last, auth=tutor.auth)))
    assert p["personal"] == {
        "bio": "Mathematician; I explain engines.",
        "location": "London",
        "languages": ["en", "fr"],
    }
    assert p["experience"]["years"] == 12 and p["subjects"] == [subject["id"]]
    assert p["hourly_rate"] == {"amount": 5500, "currency": "GBP"}
    assert p["availability"]["timezone"] == "Europe/London" and len(p["availability"]["weekly"]) == 5
    # a step with nothing new changes nothing
    assert ok(c.patch(f"{API}/tutor/profile", json=steps[0][0], headers=tutor.auth))["completeness"] == 80

    # documents: announce -> presigned PUT
    r = announce(c, tutor)
    doc = ok(r, 201)
    assert set(doc) >= {"id", "filename", "content_type", "size", "status", "upload_url", "upload_method", "expires_at"}
    assert (doc["filename"], doc["content_type"], doc["size"], doc["status"], doc["upload_method"]) == (
        "diploma.pdf",
        "application/pdf",
        len(PDF),
        "pending",
        "PUT",
    )
    assert doc["upload_url"].startswith("http")
    assert parse(doc["expires_at"]) > datetime.now(UTC)
    listed = ok(c.get(f"{API}/tutor/documents", headers=after(r, auth=tutor.auth)))["items"]
    assert [(d["id"], d["status"], d["download_url"]) for d in listed] == [(doc["id"], "pending", None)]
    assert set(listed[0]) == DOC_KEYS

    # complete before the bytes are there: upload-missing, and nothing counts yet
    problem(c.post(f"{API}/tutor/documents/{doc['id']}/complete", headers=tutor.auth), 422, "upload-missing")
    assert ok(c.get(f"{API}/tutor/profile", headers=tutor.auth))["completeness"] == 80

    put(doc["upload_url"], PDF, "application/pdf")
    r = c.post(f"{API}/tutor/documents/{doc['id']}/complete", headers=tutor.auth)
    done = ok(r)
    assert (done["id"], done["status"], done["size"]) == (doc["id"], "uploaded", len(PDF))
    assert done["uploaded_at"]
    fetched = httpx.get(done["download_url"], timeout=30)
    assert fetched.status_code == 200 and fetched.content == PDF
    # completing again is harmless
    assert ok(c.post(f"{API}/tutor/documents/{doc['id']}/complete", headers=tutor.auth))["status"] == "uploaded"

    p = ok(c.get(f"{API}/tutor/profile", headers=after(r, auth=tutor.auth)))
    assert p["completeness"] == 100
    listed = ok(c.get(f"{API}/tutor/documents", headers=after(r, auth=tutor.auth)))["items"]
    assert [(d["id"], d["status"]) for d in listed] == [(doc["id"], "uploaded")]
    assert httpx.get(listed[0]["download_url"], timeout=30).content == PDF

    # not public before approval
    problem(c.get(f"{API}/tutors/{tutor.id}", headers=after(r)), 404)

    # submit -> pending_approval; twice -> 409
    r = c.post(f"{API}/tutor/profile/submit", headers=tutor.auth)
    assert ok(r)["status"] == "pending_approval"
    problem(c.post(f"{API}/tutor/profile/submit", headers=tutor.auth), 409, "wrong-status")

    # the admin queue shows the tutor with documents
    queue = ok(c.get(f"{API}/admin/tutors", params={"status": "pending_approval"}, headers=after(r, auth=admin.auth)))
    mine = [i for i in queue["items"] if i["id"] == tutor.id]
    assert len(mine) == 1, queue
    item = mine[0]
    assert set(item) >= {"id", "full_name", "email", "submitted_at", "completeness", "documents"}
    assert (item["full_name"], item["email"], item["completeness"]) == ("Ada Lovelace", tutor.email, 100)
    assert parse(item["submitted_at"]) <= datetime.now(UTC)
    assert [(d["id"], d["filename"], d["status"]) for d in item["documents"]] == [
        (doc["id"], "diploma.pdf", "uploaded")
    ]
    assert httpx.get(item["documents"][0]["download_url"], timeout=30).content == PDF
    assert "key" not in item["documents"][0]
    assert queue["next_cursor"] is None

    # reject with feedback (empty feedback is refused)
    problem(c.post(f"{API}/admin/tutors/{tutor.id}/reject", json={"feedback": "  "}, headers=admin.auth), 422)
    r = c.post(
        f"{API}/admin/tutors/{tutor.id}/reject", json={"feedback": "Please add your certificate."}, headers=admin.auth
    )
    assert ok(r)["status"] == "rejected"
    p = ok(c.get(f"{API}/tutor/profile", headers=after(r, auth=tutor.auth)))
    assert (p["status"], p["feedback"]) == ("rejected", "Please add your certificate.")
    queue = ok(c.get(f"{API}/admin/tutors", params={"status": "pending_approval"}, headers=after(r, auth=admin.auth)))
    assert tutor.id not in [i["id"] for i in queue["items"]]
    rejected = ok(c.get(f"{API}/admin/tutors", params={"status": "rejected"}, headers=after(r, auth=admin.auth)))
    assert tutor.id in [i["id"] for i in rejected["items"]]
    problem(c.post(f"{API}/admin/tutors/{tutor.id}/approve", headers=admin.auth), 409, "wrong-status")

    # edit, resubmit, approve
    r = c.patch(
        f"{API}/tutor/profile",
        json={"experience": {"certifications": ["Analytical Engine", "Royal Society"]}},
        headers=tutor.auth,
    )
    p = ok(r)
    assert (p["status"], p["feedback"], p["completeness"]) == ("rejected", "Please add your certificate.", 100)
    r = c.post(f"{API}/tutor/profile/submit", headers=tutor.auth)
    assert ok(r)["status"] == "pending_approval"
    queue = ok(c.get(f"{API}/admin/tutors", params={"status": "pending_approval"}, headers=after(r, auth=admin.auth)))
    assert tutor.id in [i["id"] for i in queue["items"]]
    r = c.post(f"{API}/admin/tutors/{tutor.id}/approve", headers=admin.auth)
    assert ok(r)["status"] == "approved"
    p = ok(c.get(f"{API}/tutor/profile", headers=after(r, auth=tutor.auth)))
    assert (p["status"], p["feedback"]) == ("approved", None)

    # now public, in search and in detail
    found = ok(c.get(f"{API}/tutors", headers=after(r)))
    assert [t["id"] for t in found["items"]] == [tutor.id]
    item = found["items"][0]
    assert set(item) >= PUBLIC_TUTOR_KEYS
    assert item["full_name"] == "Ada Lovelace" and item["hourly_rate"] == {"amount": 5500, "currency": "GBP"}
    assert item["subjects"] == [{"id": subject["id"], "name": subject["name"], "category": subject["category"]}]
    assert (item["rating_average"], item["rating_count"]) == (None, 0)
    detail = ok(c.get(f"{API}/tutors/{tutor.id}", headers=after(r)))
    assert set(detail) >= PUBLIC_TUTOR_KEYS | {"experience", "reviews", "next_slots"}
    assert detail["experience"] == {
        "years": 12,
        "education": "Self-taught",
        "certifications": ["Analytical Engine", "Royal Society"],
    }
    assert detail["reviews"] == [] and detail["next_slots"]
    assert "email" not in detail and "documents" not in detail

    # both rounds are in the history
    events = ok(
        c.get(
            f"{API}/admin/events",
            params={"type": "TutorProfile.Submitted", "limit": 100},
            headers=after(r, auth=admin.auth),
        )
    )["items"]
    assert len([e for e in events if e["actor_id"] == tutor.id]) == 2, events


def test_submit_needs_80_percent_and_a_subject(s3_client: Any, admin: Actor, subject: dict[str, Any]) -> None:
    c = s3_client
    tutor = signup(c, "tutor")
    problem(c.post(f"{API}/tutor/profile/submit", headers=tutor.auth), 422, "profile-incomplete")
    ok(
        c.patch(
            f"{API}/tutor/profile", json={"personal": {"bio": "Hi"}, "experience": {"years": 1}}, headers=tutor.auth
        )
    )
    problem(c.post(f"{API}/tutor/profile/submit", headers=tutor.auth), 422, "profile-incomplete")
    r = c.patch(
        f"{API}/tutor/profile",
        json={"availability": {"timezone": "Asia/Tokyo", "weekly": [{"weekday": 2, "start": "10:00", "end": "12:00"}]}},
        headers=tutor.auth,
    )
    assert ok(r)["completeness"] == 60
    upload_document(c, tutor)
    p = ok(c.get(f"{API}/tutor/profile", headers=tutor.auth))
    assert p["completeness"] == 80 and p["subjects"] == []
    # 80 % but no subject and rate: still incomplete
    problem(c.post(f"{API}/tutor/profile/submit", headers=tutor.auth), 422, "profile-incomplete")
    # a rate of 0 is refused
    problem(
        c.patch(
            f"{API}/tutor/profile",
            json={"subjects": [subject["id"]], "hourly_rate": {"amount": 0, "currency": "USD"}},
            headers=tutor.auth,
        ),
        422,
    )
    r = c.patch(
        f"{API}/tutor/profile",
        json={"subjects": [subject["id"]], "hourly_rate": {"amount": 100, "currency": "USD"}},
        headers=tutor.auth,
    )
    assert ok(r)["completeness"] == 100
    assert ok(c.post(f"{API}/tutor/profile/submit", headers=tutor.auth))["status"] == "pending_approval"


def test_roles_and_ownership(s3_client: Any, admin: Actor, subject: dict[str, Any]) -> None:
    c = s3_client
    student = signup(c, "student")
    tutor = signup(c, "tutor", "First Tutor")
    other = signup(c, "tutor", "Second Tutor")
    fill_profile(c, tutor, [subject["id"]])
    ok(c.post(f"{API}/tutor/profile/submit", headers=tutor.auth))

    # only admins decide
    for who in (student, tutor, other):
        problem(c.post(f"{API}/admin/tutors/{tutor.id}/approve", headers=who.auth), 403)
        problem(c.post(f"{API}/admin/tutors/{tutor.id}/reject", json={"feedback": "no"}, headers=who.auth), 403)
        problem(c.post(f"{API}/admin/tutors/{tutor.id}/suspend", json={"reason": "x"}, headers=who.auth), 403)
        problem(c.get(f"{API}/admin/tutors", headers=who.auth), 403)
    problem(c.post(f"{API}/admin/tutors/{tutor.id}/approve"), 401)
    assert ok(c.get(f"{API}/tutor/profile", headers=tutor.auth))["status"] == "pending_approval"
    # unknown tutor
    problem(c.post(f"{API}/admin/tutors/{student.id}/approve", headers=admin.auth), 404)

    # a student (or an admin) has no /tutor/* at all
    for who in (student, admin):
        problem(c.get(f"{API}/tutor/profile", headers=who.auth), 403)
        problem(c.patch(f"{API}/tutor/profile", json={"personal": {"bio": "x"}}, headers=who.auth), 403)
        problem(c.post(f"{API}/tutor/profile/submit", headers=who.auth), 403)
        problem(announce(c, who), 403)
        problem(c.get(f"{API}/tutor/documents", headers=who.auth), 403)
    problem(c.get(f"{API}/tutor/profile"), 401)

    # each tutor sees only their own documents, and cannot complete another's
    mine = upload_document(c, tutor)
    theirs = ok(announce(c, other, filename="other.pdf"), 201)
    put(theirs["upload_url"], PDF, "application/pdf")
    docs = ok(c.get(f"{API}/tutor/documents", headers=after(mine, auth=tutor.auth)))["items"]
    assert [d["id"] for d in docs] == [mine.json()["id"]]
    docs = ok(c.get(f"{API}/tutor/documents", headers=after(mine, auth=other.auth)))["items"]
    assert [d["id"] for d in docs] == [theirs["id"]]
    problem(c.post(f"{API}/tutor/documents/{theirs['id']}/complete", headers=tutor.auth), 404)
    problem(c.post(f"{API}/tutor/documents/{mine.json()['id']}/complete", headers=other.auth), 404)


def test_upload_rules(s3_client: Any, admin: Actor) -> None:
    c = s3_client
    tutor = signup(c, "tutor")
    problem(
        c.post(
            f"{API}/tutor/documents",
            json={"filename": "x.exe", "content_type": "application/x-msdownload", "size": 10},
            headers=tutor.auth,
        ),
        422,
        "unsupported-file",
    )
    problem(
        c.post(
            f"{API}/tutor/documents",
            json={"filename": "x.gif", "content_type": "image/gif", "size": 10},
            headers=tutor.auth,
        ),
        422,
        "unsupported-file",
    )  # allowed on messages, not on documents
    problem(
        c.post(
            f"{API}/tutor/documents",
            json={"filename": "big.pdf", "content_type": "application/pdf", "size": 10 * 1_048_576 + 1},
            headers=tutor.auth,
        ),
        422,
        "file-too-large",
    )
    for ctype in ("application/pdf", "image/jpeg", "image/png"):
        ok(
            c.post(
                f"{API}/tutor/documents",
                json={"filename": "max", "content_type": ctype, "size": 10 * 1_048_576},
                headers=tutor.auth,
            ),
            201,
        )
    problem(
        c.post(
            f"{API}/tutor/documents",
            json={"filename": "empty.pdf", "content_type": "application/pdf", "size": 0},
            headers=tutor.auth,
        ),
        422,
    )

    # the stored object is what is checked: a pdf announced, html uploaded
    doc = ok(announce(c, tutor), 201)
    put(doc["upload_url"], b"<html>hi</html>", "text/html")
    problem(c.post(f"{API}/tutor/documents/{doc['id']}/complete", headers=tutor.auth), 422, "unsupported-file")
    # nothing uploaded counts
    assert ok(c.get(f"{API}/tutor/profile", headers=tutor.auth))["completeness"] == 0
    # an unknown document id
    problem(c.post(f"{API}/tutor/documents/{admin.id}/complete", headers=tutor.auth), 404)


def test_suspend_hides_and_reinstate_shows(s3_client: Any, admin: Actor, subject: dict[str, Any]) -> None:
    c = s3_client
    tutor, r = approved_tutor(c, admin, [subject["id"]], "Visible Tutor")
    assert tutor.id in [t["id"] for t in ok(c.get(f"{API}/tutors", headers=after(r)))["items"]]
    ok(c.get(f"{API}/tutors/{tutor.id}", headers=after(r)))
    window = {"from": "2030-01-07T00:00:00Z", "to": "2030-01-08T00:00:00Z"}

    r = c.post(f"{API}/admin/tutors/{tutor.id}/suspend", json={"reason": "complaints"}, headers=admin.auth)
    assert ok(r)["status"] == "suspended"
    problem(c.get(f"{API}/tutors/{tutor.id}", headers=after(r)), 404)
    problem(c.get(f"{API}/tutors/{tutor.id}/slots", params=window, headers=after(r)), 404)
    assert tutor.id not in [t["id"] for t in ok(c.get(f"{API}/tutors", headers=after(r)))["items"]]
    assert ok(c.get(f"{API}/tutor/profile", headers=after(r, auth=tutor.auth)))["status"] == "suspended"
    problem(c.post(f"{API}/admin/tutors/{tutor.id}/suspend", json={"reason": "again"}, headers=admin.auth), 409)
    problem(c.post(f"{API}/tutor/profile/submit", headers=tutor.auth), 409, "wrong-status")

    r = c.post(f"{API}/admin/tutors/{tutor.id}/reinstate", headers=admin.auth)
    assert ok(r)["status"] == "approved"
    assert ok(c.get(f"{API}/tutors/{tutor.id}", headers=after(r)))["id"] == tutor.id
    assert ok(c.get(f"{API}/tutors/{tutor.id}/slots", params=window, headers=after(r)))["items"]
    assert tutor.id in [t["id"] for t in ok(c.get(f"{API}/tutors", headers=after(r)))["items"]]
    problem(c.post(f"{API}/admin/tutors/{tutor.id}/reinstate", headers=admin.auth), 409)


def test_retired_subject_cannot_be_chosen(s3_client: Any, admin: Actor, subject: dict[str, Any]) -> None:
    c = s3_client
    old = create_subject(c, admin, "Latin Grammar", "Languages")
    r = c.delete(f"{API}/admin/subjects/{old['id']}", headers=admin.auth)
    assert ok(r)["active"] is False
    listed = ok(c.get(f"{API}/subjects", headers=after(r)))["items"]
    assert old["id"] not in [s["id"] for s in listed] and subject["id"] in [s["id"] for s in listed]

    tutor = signup(c, "tutor")
    body = problem(
        c.patch(
            f"{API}/tutor/profile",
            json={"subjects": [old["id"]], "hourly_rate": {"amount": 1000, "currency": "EUR"}},
            headers=tutor.auth,
        ),
        422,
    )
    assert body.get("errors"), body
    problem(c.patch(f"{API}/tutor/profile", json={"subjects": [subject["id"], old["id"]]}, headers=tutor.auth), 422)
    # an id that is no subject at all
    problem(c.patch(f"{API}/tutor/profile", json={"subjects": [tutor.id]}, headers=tutor.auth), 422)
    problem(c.patch(f"{API}/tutor/profile", json={"subjects": ["not-a-uuid"]}, headers=tutor.auth), 422)
    p = ok(c.get(f"{API}/tutor/profile", headers=tutor.auth))
    assert p["subjects"] == [] and p["completeness"] == 0

    # a subject retired after it was chosen stays on the profile
    r = c.patch(
        f"{API}/tutor/profile",
        json={"subjects": [subject["id"]], "hourly_rate": {"amount": 1000, "currency": "EUR"}},
        headers=tutor.auth,
    )
    assert ok(r)["completeness"] == 20
    ok(c.delete(f"{API}/admin/subjects/{subject['id']}", headers=admin.auth))
    assert ok(c.get(f"{API}/tutor/profile", headers=tutor.auth))["subjects"] == [subject["id"]]


def test_profile_validation(s3_client: Any) -> None:
    c = s3_client
    tutor = signup(c, "tutor")
    bad: list[dict[str, Any]] = [
        {"availability": {"timezone": "Mars/Olympus", "weekly": []}},
        {"availability": {"timezone": "CEST"}},
        {"availability": {"timezone": "UTC", "weekly": [{"weekday": 7, "start": "09:00", "end": "10:00"}]}},
        {"availability": {"timezone": "UTC", "weekly": [{"weekday": 1, "start": "10:00", "end": "09:00"}]}},
        {"availability": {"timezone": "UTC", "weekly": [{"weekday": 1, "start": "9:00", "end": "10:00"}]}},
        {
            "availability": {
                "timezone": "UTC",
                "blocks": [{"start": "2030-01-01T10:00:00", "end": "2030-01-01T11:00:00"}],
            }
        },
        {"experience": {"years": -1}},
        {"hourly_rate": {"amount": 10.5, "currency": "USD"}},
        {"hourly_rate": {"amount": 1000, "currency": "usd"}},
        {"min_notice_minutes": -5},
        {"unknown_step": {}},
    ]
    for body in bad:
        r = c.patch(f"{API}/tutor/profile", json=body, headers=tutor.auth)
        assert r.status_code in (400, 422), (body, r.status_code, r.text)
    assert ok(c.get(f"{API}/tutor/profile", headers=tutor.auth))["completeness"] == 0
