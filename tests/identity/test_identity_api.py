"""Identity over HTTP: register, login, refresh rotation and reuse detection, logout, /me (GET, PATCH)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest

from tests.support.api import (
    API,
    PASSWORD,
    USER_FIELDS,
    Actor,
    error_fields,
    event_position,
    login,
    ok,
    problem,
    reg_body,
    signup,
    unique_email,
)

pytestmark = pytest.mark.cloned_database

REGISTER = f"{API}/auth/register"
LOGIN = f"{API}/auth/login"
REFRESH = f"{API}/auth/refresh"
LOGOUT = f"{API}/auth/logout"
ME = f"{API}/me"


def lifetime(access_token: str) -> int:
    claims = jwt.decode(access_token, options={"verify_signature": False})
    return int(claims["exp"]) - int(claims["iat"])


def refresh(client: Any, token: Any) -> Any:
    return client.post(REFRESH, json={"refresh_token": token})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------------------------------------ register


@pytest.mark.parametrize("role", ["student", "tutor"])
def test_register_returns_201_with_the_user_and_a_bearer_token_pair(client: Any, role: str) -> None:
    email = unique_email(role)
    r = client.post(REGISTER, json=reg_body(email, role=role, full_name="  Ada Lovelace "))
    body = ok(r, 201)
    assert set(body) == {"user", "access_token", "refresh_token", "token_type", "expires_in"}, body
    assert body["token_type"] == "bearer" and body["expires_in"] == 1800
    assert body["access_token"] and body["refresh_token"] and body["access_token"] != body["refresh_token"]
    assert lifetime(body["access_token"]) == 1800
    user = body["user"]
    assert set(user) == USER_FIELDS, user
    uuid.UUID(user["id"])
    assert user == {
        "id": user["id"],
        "email": email,
        "full_name": "Ada Lovelace",
        "role": role,
        "is_active": True,
        "timezone": "UTC",
        "language": "en",
        "currency": "USD",
        "avatar_url": None,
        "email_notifications": True,
    }
    event_position(r)
    assert ok(client.get(ME, headers=bearer(body["access_token"]))) == user


def test_register_trims_and_lower_cases_the_email_and_login_does_the_same(client: Any) -> None:
    email = unique_email("norm")
    body = ok(client.post(REGISTER, json=reg_body(f"  \t{email.upper()}  ")), 201)
    assert body["user"]["email"] == email
    for variant in (email, email.upper(), f"   {email.title()} "):
        tokens = login(client, variant)
        assert ok(client.get(ME, headers=bearer(tokens["access_token"])))["id"] == body["user"]["id"]


def test_a_duplicate_email_is_409_in_any_case_or_spacing_and_changes_nothing(client: Any, admin: Actor) -> None:
    first, r0 = signup(client, "student", full_name="First Owner")
    for variant in (first.email, first.email.upper(), f"  {first.email}  ", f"\t{first.email.title()}\n"):
        p = problem(
            client.post(REGISTER, json=reg_body(variant, password="Other-passw0rd", role="tutor")), 409, "email-taken"
        )
        assert "Other-passw0rd" not in str(p)
    # the first account is untouched: its password, its role, and it is the only account with that email
    problem(client.post(LOGIN, json={"email": first.email, "password": "Other-passw0rd"}), 401)
    me = ok(client.get(ME, headers=bearer(login(client, first.email)["access_token"])))
    assert (me["id"], me["role"], me["full_name"]) == (first.id, "student", "First Owner")
    listed = ok(
        client.get(
            f"{API}/admin/users",
            params={"q": first.email},
            headers={**admin.auth, "X-Min-Position": str(event_position(r0))},
        )
    )
    assert [u["id"] for u in listed["items"]] == [first.id]


def test_weak_passwords_are_422_naming_the_password_and_leave_the_email_free(client: Any) -> None:
    email = unique_email("weak")
    for weak in ("Short1a", "abcdef1", "onlyletters", "1234567890", "        ", "", "!!!!!!!!!!"):
        body = problem(client.post(REGISTER, json=reg_body(email, password=weak)), 422, "validation-failed")
        assert "password" in error_fields(body), body
        problem(client.post(LOGIN, json={"email": email, "password": weak}), 401, "invalid-credentials")
    # exactly eight characters with a letter and a digit is enough
    assert ok(client.post(REGISTER, json=reg_body(email, password="abcdefg1")), 201)["user"]["email"] == email


def test_registration_refuses_roles_other_than_student_and_tutor(client: Any) -> None:
    email = unique_email("role")
    for role in ("admin", "finance", "superuser", "", "Student", None, 1):
        body = problem(client.post(REGISTER, json=reg_body(email, role=role)), 422, "validation-failed")  # type: ignore[arg-type]
        assert "role" in str(body["errors"]), body
    problem(client.post(LOGIN, json={"email": email, "password": PASSWORD}), 401, "invalid-credentials")
    assert ok(client.post(REGISTER, json=reg_body(email, role="tutor")), 201)["user"]["role"] == "tutor"


def test_registration_without_a_field_is_422_naming_it(client: Any) -> None:
    for field in ("email", "password", "full_name", "role"):
        body = reg_body()
        del body[field]
        p = problem(client.post(REGISTER, json=body), 422, "validation-failed")
        assert field in str(p["errors"]) + p["detail"], p
        if field != "email":
            problem(client.post(LOGIN, json={"email": body["email"], "password": PASSWORD}), 401)


def test_registration_field_validation_is_422_naming_the_field(client: Any) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"email": "not-an-email"}, "email"),
        ({"email": "two@@example.test"}, "email"),
        ({"email": "   "}, "email"),
        ({"full_name": "   "}, "full_name"),
        ({"full_name": "x" * 201}, "full_name"),
        ({"email": 12345}, "email"),
        ({"password": None}, "password"),
        ({"full_name": ["a"]}, "full_name"),
    ]
    for change, field in cases:
        body = problem(client.post(REGISTER, json={**reg_body(), **change}), 422, "validation-failed")
        assert field in str(body["errors"]), (change, body)


def test_a_body_that_is_not_json_is_400_malformed_request(client: Any, student: Actor) -> None:
    for path, headers in ((REGISTER, {}), (LOGIN, {}), (REFRESH, {}), (LOGOUT, student.auth), (ME, student.auth)):
        for raw in (b"{not json", b'{"email": "a@b.c",}', b"\xff\xfe"):
            method = client.patch if path == ME else client.post
            r = method(path, content=raw, headers={**headers, "Content-Type": "application/json"})
            problem(r, 400, "malformed-request")
        # well-formed JSON of the wrong shape is a validation failure
        for raw in (b"[1, 2]", b'"a string"', b"null", b"42"):
            method = client.patch if path == ME else client.post
            r = method(path, content=raw, headers={**headers, "Content-Type": "application/json"})
            problem(r, 422, "validation-failed")
        problem(
            client.post(path, content=b"", headers={**headers, "Content-Type": "application/json"})
            if path != ME
            else client.patch(path, content=b"", headers={**headers, "Content-Type": "application/json"}),
            (400, 422),
        )
    assert ok(client.get(ME, headers=student.auth))["full_name"] == "Stu Dent"


# --------------------------------------------------------------------------------------------------- login


def test_login_returns_a_token_pair_and_records_a_session(client: Any, student: Actor) -> None:
    r = client.post(LOGIN, json={"email": student.email, "password": PASSWORD})
    body = ok(r)
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}, body
    assert body["token_type"] == "bearer" and body["expires_in"] == 1800
    assert lifetime(body["access_token"]) == 1800
    assert body["refresh_token"] != student.refresh
    event_position(r)
    assert ok(client.get(ME, headers=bearer(body["access_token"])))["id"] == student.id


def test_login_gives_the_same_401_for_a_wrong_password_and_an_unknown_email(client: Any, student: Actor) -> None:
    wrong = client.post(LOGIN, json={"email": student.email, "password": "Wr0ng-password"})
    unknown = client.post(LOGIN, json={"email": unique_email("ghost"), "password": PASSWORD})
    a, b = problem(wrong, 401, "invalid-credentials"), problem(unknown, 401, "invalid-credentials")
    assert a == b, f"login failures differ: {a} vs {b}"
    assert wrong.headers.get("WWW-Authenticate") == unknown.headers.get("WWW-Authenticate")
    assert "X-Event-Position" not in wrong.headers


def test_login_with_missing_or_mistyped_fields_is_422(client: Any) -> None:
    for body in ({}, {"email": "a@example.test"}, {"password": PASSWORD}, {"email": 1, "password": 2}):
        problem(client.post(LOGIN, json=body), 422, "validation-failed")


# -------------------------------------------------------------------------------------------------- tokens


def test_refresh_rotates_the_pair_and_the_old_refresh_token_stops_working(client: Any, student: Actor) -> None:
    r = refresh(client, student.refresh)
    pair = ok(r)
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}, pair
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 1800
    assert lifetime(pair["access_token"]) == 1800
    assert pair["refresh_token"] != student.refresh
    event_position(r)
    assert ok(client.get(ME, headers=bearer(pair["access_token"])))["id"] == student.id
    problem(refresh(client, student.refresh), 401, "unauthorized")
    # presenting the spent token was reuse: the whole family, the new token included, is revoked
    problem(refresh(client, pair["refresh_token"]), 401, "unauthorized")


def test_refresh_with_anything_but_a_live_refresh_token_is_refused(client: Any, student: Actor) -> None:
    for junk in ("", "garbage", "rt.", "rt.00000000000000000000000000000000.nope", student.access):
        problem(refresh(client, junk), 401, "unauthorized")
    problem(refresh(client, None), 422, "validation-failed")
    problem(client.post(REFRESH, json={}), 422, "validation-failed")
    ok(refresh(client, student.refresh))


def test_reusing_a_spent_refresh_token_revokes_its_whole_family_only(client: Any, student: Actor) -> None:
    other = login(client, student.email)  # a second session: another family
    first = ok(refresh(client, student.refresh))
    second = ok(refresh(client, first["refresh_token"]))
    problem(refresh(client, first["refresh_token"]), 401, "unauthorized")  # reuse of a spent token ...
    problem(refresh(client, second["refresh_token"]), 401, "unauthorized")  # ... kills the newest one too
    problem(refresh(client, student.refresh), 401, "unauthorized")
    # the other family is untouched, and the password still opens a new one
    again = ok(refresh(client, other["refresh_token"]))
    ok(refresh(client, again["refresh_token"]))
    ok(refresh(client, login(client, student.email)["refresh_token"]))


def test_logout_needs_a_user_and_revokes_only_that_family(client: Any, student: Actor, tutor: Actor) -> None:
    other = login(client, student.email)  # family B
    a2 = ok(refresh(client, student.refresh))["refresh_token"]  # family A, rotated once
    r = client.post(LOGOUT, json={"refresh_token": a2})
    problem(r, 401, "unauthorized")
    assert r.headers.get("WWW-Authenticate", "").lower().startswith("bearer")
    problem(client.post(LOGOUT, json={"refresh_token": a2}, headers=bearer("not.a.jwt")), 401, "unauthorized")
    # someone else's session is not yours to end
    problem(client.post(LOGOUT, json={"refresh_token": a2}, headers=tutor.auth), (403, 404))
    a3 = ok(refresh(client, a2))["refresh_token"]  # ... so family A still works
    problem(client.post(LOGOUT, json={}, headers=student.auth), 422, "validation-failed")
    r = client.post(LOGOUT, json={"refresh_token": a3}, headers=student.auth)
    assert r.status_code == 204 and not r.content, r.text
    event_position(r)
    problem(refresh(client, a3), 401, "unauthorized")
    # the session has ended everywhere at once: its access tokens too (sessions end everywhere); family B is
    # untouched, its access token and its refresh token alike
    problem(client.get(ME, headers=student.auth), 401, "unauthorized")
    ok(client.get(ME, headers=bearer(other["access_token"])))
    ok(refresh(client, other["refresh_token"]))


def test_logout_twice_is_harmless(client: Any, student: Actor) -> None:
    r = client.post(LOGOUT, json={"refresh_token": student.refresh}, headers=student.auth)
    assert r.status_code == 204, r.text
    # the session's access token ended with it: a repeated logout is told so, and nothing changes
    problem(client.post(LOGOUT, json={"refresh_token": student.refresh}, headers=student.auth), 401, "unauthorized")
    other = login(client, student.email)
    r = client.post(LOGOUT, json={"refresh_token": student.refresh}, headers=bearer(other["access_token"]))
    assert r.status_code == 204, r.text  # the same refresh token again, from a live session: harmless
    problem(refresh(client, student.refresh), 401)
    ok(client.get(ME, headers=bearer(other["access_token"])))


# ------------------------------------------------------------------------------------------------------ /me


def test_me_shows_the_callers_account(client: Any, tutor: Actor) -> None:
    me = ok(client.get(ME, headers=tutor.auth))
    assert set(me) == USER_FIELDS
    assert (me["id"], me["email"], me["role"], me["is_active"], me["full_name"]) == (
        tutor.id,
        tutor.email,
        "tutor",
        True,
        "Tu Tor",
    )


def test_patch_me_changes_the_profile(client: Any, student: Actor) -> None:
    change = {
        "full_name": " Grace Hopper ",
        "timezone": "Europe/Berlin",
        "language": "pt-BR",
        "currency": "EUR",
        "avatar_url": "https://cdn.example.test/a.png",
    }
    r = client.patch(ME, json=change, headers=student.auth)
    body = ok(r)
    event_position(r)
    assert body == {**body, **change, "full_name": "Grace Hopper"}, body
    assert set(body) == USER_FIELDS
    again = ok(client.get(ME, headers=student.auth))
    assert again == body
    # a subset; avatar back to null
    body = ok(client.patch(ME, json={"avatar_url": None}, headers=student.auth))
    assert body["avatar_url"] is None and body["timezone"] == "Europe/Berlin"
    assert ok(client.patch(ME, json={}, headers=student.auth)) == body


def test_patch_me_refuses_a_time_zone_that_is_not_iana(client: Any, student: Actor) -> None:
    ok(client.patch(ME, json={"timezone": "Asia/Tokyo"}, headers=student.auth))
    for zone in ("Mars/Olympus_Mons", "Europe/Berln", "GMT+25", "CEST", "+02:00", "not a zone", "", "asia/tokyo"):
        body = problem(client.patch(ME, json={"timezone": zone}, headers=student.auth), 422, "validation-failed")
        assert error_fields(body) == {"timezone"}, body
    assert ok(client.get(ME, headers=student.auth))["timezone"] == "Asia/Tokyo"
    for zone in ("America/Sao_Paulo", "UTC", "Pacific/Chatham"):
        assert ok(client.patch(ME, json={"timezone": zone}, headers=student.auth))["timezone"] == zone


def test_patch_me_validation_is_422_naming_the_field(client: Any, student: Actor) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"full_name": "  "}, "full_name"),
        ({"full_name": "x" * 201}, "full_name"),
        ({"language": "English"}, "language"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"avatar_url": "h" * 2001}, "avatar_url"),
        ({"timezone": None}, "timezone"),
        ({"full_name": 5}, "full_name"),
        ({"language": ["en"]}, "language"),
    ]
    for change, field in cases:
        body = problem(client.patch(ME, json=change, headers=student.auth), 422, "validation-failed")
        assert field in str(body["errors"]), (change, body)
    me = ok(client.get(ME, headers=student.auth))
    assert (me["full_name"], me["language"], me["currency"], me["avatar_url"], me["timezone"]) == (
        "Stu Dent",
        "en",
        "USD",
        None,
        "UTC",
    )


def test_patch_me_cannot_change_role_email_or_activity(client: Any, student: Actor) -> None:
    for sneaky in (
        {"role": "admin"},
        {"email": "boss@example.test"},
        {"is_active": False},
        {"id": str(uuid.uuid4())},
        {"role": "admin", "full_name": "Sneaky"},
    ):
        r = client.patch(ME, json=sneaky, headers=student.auth)
        assert r.status_code in (200, 400, 422), r.text
        if r.status_code >= 400:
            problem(r, (400, 422))
    me = ok(client.get(ME, headers=student.auth))
    assert (me["id"], me["role"], me["email"], me["is_active"]) == (student.id, "student", student.email, True)
    problem(client.get(f"{API}/admin/users", headers=student.auth), 403, "forbidden")


@pytest.mark.filterwarnings("ignore:The HMAC key is")  # the HS512 forgery below uses the HS256 key
def test_me_needs_a_valid_access_token(client: Any, student: Actor, prepared: Any) -> None:
    secret = prepared.jwt_secret

    def token(secret: str = secret, **claims: Any) -> str:
        base = {
            "sub": student.id,
            "role": "student",
            "iat": int(time.time()),
            "exp": int(time.time()) + 600,
            "typ": "access",
        }
        base.update(claims)
        return jwt.encode({k: v for k, v in base.items() if v is not None}, secret, algorithm="HS256")

    assert ok(client.get(ME, headers=bearer(token())))["id"] == student.id  # the forgeries below differ in one thing
    bad_tokens = [
        token(iat=1, exp=2),  # expired
        token(secret="someone-elses-secret-" + "x" * 30),  # wrong key
        token(typ="refresh"),  # not an access token
        token(typ=None),
        token(exp=None),
        token(sub=str(uuid.uuid4())),  # nobody
        token(sub="not-a-uuid"),
        jwt.encode({"sub": student.id, "typ": "access", "iat": 1, "exp": 4_000_000_000}, secret, algorithm="HS512"),
        "abc.def.ghi",
        student.refresh,
    ]
    for headers in [
        {},
        bearer(""),
        {"Authorization": student.access},
        {"Authorization": f"Basic {student.access}"},
        *(bearer(t) for t in bad_tokens),
    ]:
        r = client.get(ME, headers=headers)
        problem(r, 401, "unauthorized")
        assert r.headers.get("WWW-Authenticate", "").lower().startswith("bearer"), dict(r.headers)
        problem(client.patch(ME, json={"full_name": "Nobody"}, headers=headers), 401, "unauthorized")
    assert ok(client.get(ME, headers=student.auth))["full_name"] == "Stu Dent"
