"""Avatars through the app with real S3: any user announces an image (POST /me/avatar), PUTs it, and completes it
(POST /me/avatar/{id}/complete), which checks the stored object like documents and attachments (declared type and
size, the bytes really that image) and makes it their avatar; `avatar_url` on /me, the admin list and the admin's
user detail then downloads the checked copy. An admin overrides or removes anyone's avatar with a reason
(PUT /admin/users/{id}/avatar), recorded as User.AvatarOverridden with the admin as actor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from application.settings import Settings
from tests.support.api import API, Actor, after, all_events, error_fields, ok, problem, signup, staff

ME_AVATAR = f"{API}/me/avatar"
USERS = f"{API}/admin/users"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64
GIF = b"GIF89a" + b"\x01\x00\x01\x00" + b"\x00" * 30
PAGE = b"<!doctype html><html><script>document.title='pwned'</script></html>"
UPLOAD_FIELDS = {"id", "filename", "content_type", "size", "status", "upload_url", "upload_method", "expires_at"}


@pytest.fixture
def admin3(s3_client: Any, s3_settings: Settings) -> Actor:
    """An admin of the S3-configured app."""
    return staff(s3_client, s3_settings, "admin")


def _put(url: str, data: bytes, content_type: str) -> None:
    r = httpx.put(url, content=data, headers={"Content-Type": content_type}, timeout=30)
    assert r.status_code == 200, r.text


def _announce(c: Any, who: Actor, content_type: str = "image/png", size: int = 1000) -> dict[str, Any]:
    r = c.post(ME_AVATAR, json={"filename": "me ü.png", "content_type": content_type, "size": size}, headers=who.auth)
    body = ok(r, 201)
    assert set(body) == UPLOAD_FIELDS, body
    assert (body["status"], body["upload_method"], body["content_type"], body["size"]) == (
        "pending", "PUT", content_type, size,
    )  # fmt: skip
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert datetime.now(UTC) < expires <= datetime.now(UTC) + timedelta(minutes=16)
    assert r.headers["X-Event-Position"].isdigit()
    return body  # type: ignore[no-any-return]


def _uploaded(c: Any, who: Actor, data: bytes = PNG, content_type: str = "image/png") -> dict[str, Any]:
    up = _announce(c, who, content_type)
    _put(up["upload_url"], data, content_type)
    return up


def _download(url: str | None) -> httpx.Response:
    assert url, "no avatar_url"
    got = httpx.get(url, timeout=30)
    assert got.status_code == 200, got.text
    return got


def test_a_user_uploads_an_avatar_and_everyone_who_may_see_it_downloads_the_checked_image(
    s3_client: Any, admin3: Actor
) -> None:
    t, _ = signup(s3_client, "tutor", full_name="Pic Tutor")
    up = _uploaded(s3_client, t)
    r = s3_client.post(f"{ME_AVATAR}/{up['id']}/complete", headers=t.auth)
    me = ok(r)
    assert me["id"] == t.id
    got = _download(me["avatar_url"])
    assert got.content == PNG and got.headers["content-type"] == "image/png"
    assert _download(ok(s3_client.get(f"{API}/me", headers=t.auth))["avatar_url"]).content == PNG
    # what the user PUTs afterwards changes nothing: the checked copy is served
    _put(up["upload_url"], PAGE, "text/html")
    detail = ok(s3_client.get(f"{USERS}/{t.id}", headers=after(r, headers=admin3.auth)))
    assert _download(detail["avatar_url"]).content == PNG
    assert detail["tutor_profile"]["status"] == "draft"
    (listed,) = [u for u in ok(s3_client.get(USERS, params={"limit": 100}, headers=admin3.auth))["items"]
                 if u["id"] == t.id]  # fmt: skip
    assert _download(listed["avatar_url"]).headers["content-type"] == "image/png"
    # completing again changes nothing
    again = s3_client.post(f"{ME_AVATAR}/{up['id']}/complete", headers=t.auth)
    assert _download(ok(again)["avatar_url"]).content == PNG
    assert [e["type"] for e in all_events(s3_client, admin3, after(again), aggregate_id=t.id)].count(
        "User.AvatarChanged"
    ) == 1
    # a URL set on /me replaces the uploaded picture (and null removes any)
    r = s3_client.patch(f"{API}/me", json={"avatar_url": "https://pics.example/me.png"}, headers=t.auth)
    assert ok(r)["avatar_url"] == "https://pics.example/me.png"
    assert ok(s3_client.get(f"{USERS}/{t.id}", headers=after(r, headers=admin3.auth)))["avatar_url"] == (
        "https://pics.example/me.png"
    )


def test_announcing_anything_but_an_image_of_at_most_5_mb_is_refused_naming_the_field(
    s3_client: Any, admin3: Actor
) -> None:
    s, _ = signup(s3_client, "student")
    for body, field in (
        ({"filename": "cv.pdf", "content_type": "application/pdf", "size": 100}, "content_type"),
        ({"filename": "a.svg", "content_type": "image/svg+xml", "size": 100}, "content_type"),
        ({"filename": "a.txt", "content_type": "text/plain", "size": 100}, "content_type"),
        ({"filename": "big.png", "content_type": "image/png", "size": 5_242_881}, "size"),
        ({"filename": "none.png", "content_type": "image/png", "size": 0}, "size"),
        ({"filename": "", "content_type": "image/png", "size": 10}, "filename"),
        ({"filename": "a.png", "content_type": "image/png"}, "size"),
        ({"filename": "a.png", "content_type": "image/png", "size": 2.5}, "size"),
    ):
        r = s3_client.post(ME_AVATAR, json=body, headers=s.auth)
        assert error_fields(problem(r, 422, "validation-failed")) == {field}, (body, r.text)
    for content_type in ("image/png", "image/jpeg", "image/webp", "image/gif"):
        _announce(s3_client, s, content_type, 5_242_880)
    problem(s3_client.post(ME_AVATAR, json={"filename": "a.png", "content_type": "image/png", "size": 1}), 401)
    # every role may have an avatar
    _announce(s3_client, admin3)


def test_a_non_image_or_a_missing_upload_is_refused_at_completion(s3_client: Any) -> None:
    s, _ = signup(s3_client, "student")
    liar = _uploaded(s3_client, s, PAGE, "image/png")  # stored as a png, but the bytes are a page
    problem(s3_client.post(f"{ME_AVATAR}/{liar['id']}/complete", headers=s.auth), 422, "unsupported-file")
    other_type = _announce(s3_client, s, "image/png")
    _put(other_type["upload_url"], PNG, "image/gif")  # stored with another type than announced
    problem(s3_client.post(f"{ME_AVATAR}/{other_type['id']}/complete", headers=s.auth), 422, "unsupported-file")
    gif_as_png = _uploaded(s3_client, s, GIF, "image/png")
    problem(s3_client.post(f"{ME_AVATAR}/{gif_as_png['id']}/complete", headers=s.auth), 422, "unsupported-file")
    small = _announce(s3_client, s, "image/png", size=20)
    _put(small["upload_url"], PNG, "image/png")  # more than announced
    problem(s3_client.post(f"{ME_AVATAR}/{small['id']}/complete", headers=s.auth), 422, "file-too-large")
    never = _announce(s3_client, s)
    problem(s3_client.post(f"{ME_AVATAR}/{never['id']}/complete", headers=s.auth), 422, "upload-missing")
    assert ok(s3_client.get(f"{API}/me", headers=s.auth))["avatar_url"] is None
    # fixed within the URL's life, the same upload is accepted
    _put(liar["upload_url"], PNG, "image/png")
    assert (
        _download(ok(s3_client.post(f"{ME_AVATAR}/{liar['id']}/complete", headers=s.auth))["avatar_url"]).content == PNG
    )


def test_an_upload_is_completed_only_by_whoever_made_it(s3_client: Any) -> None:
    a, _ = signup(s3_client, "student")
    b, _ = signup(s3_client, "tutor")
    up = _uploaded(s3_client, a)
    problem(s3_client.post(f"{ME_AVATAR}/{up['id']}/complete", headers=b.auth), 404, "not-found")
    problem(s3_client.post(f"{ME_AVATAR}/{uuid.uuid4()}/complete", headers=a.auth), 404, "not-found")
    problem(s3_client.post(f"{ME_AVATAR}/{up['id']}/complete"), 401)
    assert ok(s3_client.get(f"{API}/me", headers=b.auth))["avatar_url"] is None


def test_an_admin_overrides_and_removes_an_avatar_with_a_reason_recorded(s3_client: Any, admin3: Actor) -> None:
    s, _ = signup(s3_client, "student")
    ok(s3_client.post(f"{ME_AVATAR}/{_uploaded(s3_client, s)['id']}/complete", headers=s.auth))
    mine = _uploaded(s3_client, admin3, GIF, "image/gif")  # the admin uploads through the same route
    url = f"{USERS}/{s.id}/avatar"
    r = s3_client.put(url, json={"upload_id": mine["id"], "reason": "  Not a photo of you. "}, headers=admin3.auth)
    out = ok(r)
    assert out["id"] == s.id
    assert _download(out["avatar_url"]).content == GIF
    assert _download(ok(s3_client.get(f"{API}/me", headers=s.auth))["avatar_url"]).content == GIF
    assert ok(s3_client.get(f"{API}/me", headers=admin3.auth))["avatar_url"] is None  # the admin's own is untouched
    (event,) = all_events(s3_client, admin3, after(r), aggregate_id=s.id, type="User.AvatarOverridden")
    assert (event["actor_id"], event["actor_role"]) == (admin3.id, "admin"), event
    assert event["data"]["reason"] == "Not a photo of you."
    assert event["data"]["upload_id"] == mine["id"] and event["data"]["content_type"] == "image/gif"
    history = ok(s3_client.get(f"{API}/admin/aggregates/{s.id}/history", headers=admin3.auth))
    assert "User.AvatarOverridden" in [e["type"] for e in history["events"]], history
    # removal
    r = s3_client.put(url, json={"upload_id": None, "reason": "Removed on request."}, headers=admin3.auth)
    assert ok(r)["avatar_url"] is None
    assert ok(s3_client.get(f"{USERS}/{s.id}", headers=after(r, headers=admin3.auth)))["avatar_url"] is None
    events = all_events(s3_client, admin3, after(r), aggregate_id=s.id, type="User.AvatarOverridden")
    assert [e["data"]["reason"] for e in events] == ["Not a photo of you.", "Removed on request."]
    assert events[-1]["data"]["upload_id"] is None and events[-1]["actor_id"] == admin3.id
    # the admin's upload, already checked, can be given to a second user without another upload
    other, _ = signup(s3_client, "tutor")
    r = s3_client.put(f"{USERS}/{other.id}/avatar", json={"upload_id": mine["id"], "reason": "x"}, headers=admin3.auth)
    assert _download(ok(r)["avatar_url"]).content == GIF


def test_an_override_is_checked_before_anything_changes(s3_client: Any, admin3: Actor) -> None:
    s, _ = signup(s3_client, "student")
    own = _uploaded(s3_client, s)  # the user's upload is not the admin's to use
    url = f"{USERS}/{s.id}/avatar"
    mine = _uploaded(s3_client, admin3)
    for body, field in (
        ({"upload_id": mine["id"], "reason": ""}, "reason"),
        ({"upload_id": mine["id"], "reason": "   "}, "reason"),
        ({"upload_id": mine["id"], "reason": "x" * 501}, "reason"),
        ({"upload_id": mine["id"]}, "reason"),
        ({"reason": "no upload named"}, "upload_id"),
        ({"upload_id": "not-a-uuid", "reason": "x"}, "upload_id"),
        ({"upload_id": own["id"], "reason": "someone else's upload"}, "upload_id"),
        ({"upload_id": str(uuid.uuid4()), "reason": "unknown upload"}, "upload_id"),
    ):
        r = s3_client.put(url, json=body, headers=admin3.auth)
        assert error_fields(problem(r, 422, "validation-failed")) == {field}, (body, r.text)
    assert (
        ok(s3_client.put(url, json={"upload_id": None, "reason": "x" * 500}, headers=admin3.auth))["avatar_url"] is None
    )
    liar = _uploaded(s3_client, admin3, PAGE, "image/png")
    problem(s3_client.put(url, json={"upload_id": liar["id"], "reason": "x"}, headers=admin3.auth), 422,
            "unsupported-file")  # fmt: skip
    unknown = f"{USERS}/{uuid.uuid4()}/avatar"
    problem(s3_client.put(unknown, json={"upload_id": None, "reason": "x"}, headers=admin3.auth), 404, "not-found")
    assert ok(s3_client.get(f"{API}/me", headers=s.auth))["avatar_url"] is None
    assert not all_events(s3_client, admin3, aggregate_id=s.id, type="User.AvatarOverridden")


def test_only_admins_override_avatars(s3_client: Any, admin3: Actor) -> None:
    s, _ = signup(s3_client, "student")
    t, _ = signup(s3_client, "tutor")
    body = {"upload_id": None, "reason": "x"}
    problem(s3_client.put(f"{USERS}/{t.id}/avatar", json=body), 401, "unauthorized")
    for who in (s, t):
        problem(s3_client.put(f"{USERS}/{t.id}/avatar", json=body, headers=who.auth), 403, "forbidden")
        problem(s3_client.put(f"{USERS}/{uuid.uuid4()}/avatar", json={}, headers=who.auth), 403, "forbidden")
