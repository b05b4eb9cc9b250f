"""One user in full for the admin console (GET /admin/users/{id}: the account and the whole tutor profile, from the
read models) and an admin's edits of a user's profile (PATCH /admin/users/{id} with the fields and the rule of
PATCH /me, the admin the events' actor), beside the role and activity changes and their self-lockout."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from application.settings import Settings
from tests.support.api import (
    API,
    USER_FIELDS,
    Actor,
    after,
    all_events,
    error_fields,
    ok,
    problem,
    projection_position,
    signup,
)
from tests.support.world import make_subject

pytestmark = pytest.mark.cloned_database

USERS = f"{API}/admin/users"
DETAIL_FIELDS = USER_FIELDS - {"email_notifications"} | {"deleted", "registered_at", "tutor_profile"}
PROFILE_FIELDS = {
    "status",
    "bio",
    "location",
    "languages",
    "experience",
    "subjects",
    "hourly_rate",
    "availability",
    "documents",
    "completeness",
    "feedback",
    "submitted_at",
    "auto_confirm",
    "min_notice_minutes",
    "account_open",
    "listed",
    "rating_average",
    "rating_count",
}


def detail(client: Any, admin: Actor, user_id: str, *responses: Any) -> dict[str, Any]:
    """GET /admin/users/{id} once the read models reflect `responses`."""
    r = client.get(f"{USERS}/{user_id}", headers=after(*responses, headers=admin.auth) if responses else admin.auth)
    body = ok(r)
    projection_position(r)
    assert set(body) == DETAIL_FIELDS, body
    return body  # type: ignore[no-any-return]


def test_a_student_in_full_has_no_tutor_profile(client: Any, admin: Actor) -> None:
    s, r = signup(client, "student", full_name="Detail Student")
    got = detail(client, admin, s.id, r)
    assert got["id"] == s.id and got["email"] == s.email and got["full_name"] == "Detail Student"
    assert (got["role"], got["is_active"], got["deleted"], got["tutor_profile"]) == ("student", True, False, None)
    assert (got["timezone"], got["language"], got["currency"], got["avatar_url"]) == ("UTC", "en", "USD", None)
    registered = datetime.fromisoformat(got["registered_at"].replace("Z", "+00:00"))
    assert got["registered_at"].endswith("Z") and abs((datetime.now(UTC) - registered).total_seconds()) < 120
    # a deleted user is still shown, marked deleted
    gone = client.delete(f"{USERS}/{s.id}", headers=admin.auth)
    ok(gone)
    got = detail(client, admin, s.id, gone)
    assert (got["deleted"], got["is_active"]) == (True, False)


def test_a_tutor_in_full_has_their_whole_profile(client: Any, admin: Actor, prepared: Settings) -> None:
    t, _ = signup(client, "tutor", full_name="Detail Tutor")
    subject = make_subject(prepared)
    body = {
        "personal": {"bio": "Physics, patiently.", "location": "Lisbon", "languages": ["en", "pt"]},
        "experience": {"years": 4, "education": "MSc Physics", "certifications": ["CELTA"]},
        "subjects": [subject],
        "hourly_rate": {"amount": 4500, "currency": "EUR"},
        "availability": {
            "timezone": "Europe/Lisbon",
            "weekly": [{"weekday": 0, "start": "17:00", "end": "20:00"}],
            "blocks": [{"start": "2031-01-06T17:00:00Z", "end": "2031-01-06T18:00:00Z"}],
            "openings": [],
        },
        "min_notice_minutes": 120,
    }
    ok(client.patch(f"{API}/tutor/profile", json=body, headers=t.auth))
    ok(client.post(f"{API}/tutor/profile/submit", headers=t.auth))
    r = client.post(f"{API}/admin/tutors/{t.id}/reject", json={"feedback": "Add a certificate."}, headers=admin.auth)
    ok(r)
    got = detail(client, admin, t.id, r)
    assert got["role"] == "tutor"
    p = got["tutor_profile"]
    assert set(p) == PROFILE_FIELDS, p
    assert (p["status"], p["feedback"], p["completeness"]) == ("rejected", "Add a certificate.", 80)
    assert (p["bio"], p["location"], p["languages"]) == ("Physics, patiently.", "Lisbon", ["en", "pt"])
    assert p["experience"] == {"years": 4, "education": "MSc Physics", "certifications": ["CELTA"]}
    (subj,) = p["subjects"]
    assert subj["id"] == subject and subj["name"].startswith("Maths") and subj["active"] is True, subj
    assert subj["category"] == "science"
    assert p["hourly_rate"] == {"amount": 4500, "currency": "EUR"}
    assert p["availability"] == {
        "timezone": "Europe/Lisbon",
        "weekly": [{"weekday": 0, "start": "17:00", "end": "20:00"}],
        "blocks": [{"start": "2031-01-06T17:00:00Z", "end": "2031-01-06T18:00:00Z"}],
        "openings": [],
    }
    assert (p["documents"], p["min_notice_minutes"], p["auto_confirm"]) == ([], 120, False)
    assert (p["account_open"], p["listed"], p["rating_average"], p["rating_count"]) == (True, False, None, 0)
    submitted = datetime.fromisoformat(p["submitted_at"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - submitted).total_seconds()) < 120
    # a new tutor's draft is there from registration on
    fresh, r = signup(client, "tutor")
    p = detail(client, admin, fresh.id, r)["tutor_profile"]
    assert (p["status"], p["completeness"], p["hourly_rate"], p["submitted_at"], p["subjects"]) == (
        "draft", 0, None, None, [],
    )  # fmt: skip


def test_only_admins_see_a_user_in_full_and_unknown_ids_are_404(
    client: Any, admin: Actor, student: Actor, tutor: Actor, finance: Actor
) -> None:
    url = f"{USERS}/{student.id}"
    problem(client.get(url), 401, "unauthorized")
    for who in (student, tutor, finance):
        problem(client.get(url, headers=who.auth), 403, "forbidden")
    problem(client.get(f"{USERS}/{uuid.uuid4()}", headers=admin.auth), 404, "not-found")
    problem(client.get(f"{USERS}/not-a-uuid", headers=admin.auth), 404)


def test_an_admin_edits_a_users_profile_as_its_actor(client: Any, admin: Actor, student: Actor) -> None:
    change = {"full_name": "  Renamed By Admin ", "timezone": "America/Sao_Paulo", "language": "pt-BR",
              "currency": "BRL"}  # fmt: skip
    r = client.patch(f"{USERS}/{student.id}", json=change, headers=admin.auth)
    out = ok(r)
    assert set(out) == USER_FIELDS
    assert (out["full_name"], out["timezone"], out["language"], out["currency"]) == (
        "Renamed By Admin", "America/Sao_Paulo", "pt-BR", "BRL",
    )  # fmt: skip
    assert (out["role"], out["is_active"]) == ("student", True)
    me = ok(client.get(f"{API}/me", headers=after(r, headers=student.auth)))
    assert (me["full_name"], me["timezone"], me["language"], me["currency"]) == (
        "Renamed By Admin", "America/Sao_Paulo", "pt-BR", "BRL",
    )  # fmt: skip
    got = detail(client, admin, student.id, r)
    assert (got["full_name"], got["timezone"], got["currency"]) == ("Renamed By Admin", "America/Sao_Paulo", "BRL")
    (event,) = all_events(client, admin, after(r), aggregate_id=student.id, type="User.ProfileUpdated")
    assert (event["actor_id"], event["actor_role"]) == (admin.id, "admin"), event
    assert event["data"]["changes"]["full_name"] == "Renamed By Admin"
    # the same values again change nothing and record nothing
    again = client.patch(f"{USERS}/{student.id}", json=change, headers=admin.auth)
    ok(again)
    assert len(all_events(client, admin, after(again), aggregate_id=student.id, type="User.ProfileUpdated")) == 1
    # the avatar is not one of the fields an admin patches (it has its own route with a reason)
    r = client.patch(f"{USERS}/{student.id}", json={"avatar_url": "https://x.example/a.png"}, headers=admin.auth)
    assert ok(r)["avatar_url"] is None


BAD_PROFILES: list[dict[str, Any]] = [
    {"timezone": "CEST"},
    {"timezone": "+02:00"},
    {"timezone": ""},
    {"currency": "usd"},
    {"currency": "EURO"},
    {"language": "German"},
    {"full_name": "   "},
    {"full_name": ""},
    {"full_name": "x" * 201},
    {"timezone": None},
    {"full_name": 5},
    {"timezone": "Mars/Base", "currency": "eur", "language": "english"},
]


@pytest.mark.parametrize("bad", BAD_PROFILES)
def test_an_admins_profile_edit_is_checked_exactly_as_patch_me(
    client: Any, admin: Actor, student: Actor, bad: dict[str, Any]
) -> None:
    on_me = problem(client.patch(f"{API}/me", json=bad, headers=student.auth), 422, "validation-failed")
    by_admin = problem(client.patch(f"{USERS}/{student.id}", json=bad, headers=admin.auth), 422, "validation-failed")
    assert by_admin["errors"] == on_me["errors"], (on_me, by_admin)
    assert error_fields(by_admin) <= set(bad), by_admin
    me = ok(client.get(f"{API}/me", headers=student.auth))
    assert (me["full_name"], me["timezone"], me["currency"], me["language"]) == ("Stu Dent", "UTC", "USD", "en")


def test_a_bad_field_refuses_the_whole_change(client: Any, admin: Actor, student: Actor) -> None:
    body = {"full_name": "Half Done", "role": "tutor", "currency": "usd"}
    problem(client.patch(f"{USERS}/{student.id}", json=body, headers=admin.auth), 422, "validation-failed")
    r = client.patch(f"{USERS}/{student.id}", json={"role": "nobody"}, headers=admin.auth)
    assert error_fields(problem(r, 422, "validation-failed")) == {"role"}
    me = ok(client.get(f"{API}/me", headers=student.auth))
    assert (me["full_name"], me["role"], me["currency"]) == ("Stu Dent", "student", "USD")


def test_role_and_activity_still_change_and_self_lockout_still_holds(client: Any, admin: Actor) -> None:
    s, _ = signup(client, "student", full_name="Lock Test")
    r = client.patch(f"{USERS}/{s.id}", json={"role": "tutor", "is_active": False, "full_name": "Lock Tested"},
                     headers=admin.auth)  # fmt: skip
    out = ok(r)
    assert (out["role"], out["is_active"], out["full_name"]) == ("tutor", False, "Lock Tested")
    problem(client.get(f"{API}/me", headers=s.auth), 401)  # deactivation bites at once
    types = [e["type"] for e in all_events(client, admin, after(r), aggregate_id=s.id)]
    assert {"User.ProfileUpdated", "User.RoleChanged", "User.Deactivated"} <= set(types), types
    back = client.patch(f"{USERS}/{s.id}", json={"is_active": True}, headers=admin.auth)
    assert ok(back)["is_active"] is True
    # an admin's own account: role and activity refused as before, with the profile change of the same request
    for body in ({"role": "student"}, {"is_active": False}, {"full_name": "Not Me", "role": "finance"},
                 {"timezone": "Europe/Paris", "is_active": False}):  # fmt: skip
        problem(client.patch(f"{USERS}/{admin.id}", json=body, headers=admin.auth), 409, "self-lockout")
    problem(client.delete(f"{USERS}/{admin.id}", headers=admin.auth), 409, "self-lockout")
    me = ok(client.get(f"{API}/me", headers=admin.auth))
    assert (me["role"], me["is_active"], me["timezone"]) == ("admin", True, "UTC")
    assert me["full_name"] != "Not Me"
    # what changes nothing, and the admin's own name, pass
    mine = client.patch(f"{USERS}/{admin.id}", json={"full_name": "Chief Admin", "role": "admin", "is_active": True},
                        headers=admin.auth)  # fmt: skip
    assert ok(mine)["full_name"] == "Chief Admin"


def test_editing_an_unknown_or_deleted_user_is_404(client: Any, admin: Actor) -> None:
    problem(client.patch(f"{USERS}/{uuid.uuid4()}", json={"full_name": "X"}, headers=admin.auth), 404, "not-found")
    s, _ = signup(client, "student")
    ok(client.delete(f"{USERS}/{s.id}", headers=admin.auth))
    problem(client.patch(f"{USERS}/{s.id}", json={"full_name": "Back"}, headers=admin.auth), 404, "not-found")


def test_students_and_anonymous_callers_cannot_edit_profiles(client: Any, student: Actor, tutor: Actor) -> None:
    problem(client.patch(f"{USERS}/{tutor.id}", json={"full_name": "X"}), 401, "unauthorized")
    problem(client.patch(f"{USERS}/{tutor.id}", json={"full_name": "X"}, headers=student.auth), 403, "forbidden")
    problem(client.patch(f"{USERS}/{student.id}", json={"full_name": "X"}, headers=student.auth), 403, "forbidden")
