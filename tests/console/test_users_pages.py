"""The console's Users pages through the real app with S3: the list filtered like GET /admin/users, one user in
full with their avatar (served from the console's origin, as the page's CSP wants) and links to their tutor review
and history, and the forms doing what PATCH/DELETE /admin/users/{id} and PUT /admin/users/{id}/avatar do."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from application.settings import Settings
from tests.console.support import BASE_URL, caught_up, csrf, landed, problem_page, sign_in, submit
from tests.support.api import API, Actor, all_events, ok, problem, signup, staff

pytestmark = pytest.mark.cloned_database

USERS = "/console/users"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64
BIG_PNG = PNG + b"\x00" * 2_000_000  # over the app's 1 MB body limit, under the avatar's 5 MB
HTML = b"<!doctype html><html><script>document.title='pwned'</script></html>"


@pytest.fixture
def browser(s3_settings: Settings) -> Iterator[TestClient[Any]]:
    """The app with S3 behind a cookie-keeping client over HTTPS, its projectors running in this process."""
    from projections import all_projections, follower
    from workers.processes import prepare

    prepare(s3_settings)
    stop = threading.Event()
    threads = follower.follow_all(s3_settings.database_url, all_projections(), stop)
    try:
        with TestClient(create_app(s3_settings), base_url=BASE_URL, timeout=30) as c:
            yield c
    finally:
        stop.set()
        for t in threads:
            t.join(5)


@pytest.fixture
def admin(browser: TestClient[Any], s3_settings: Settings) -> Actor:
    """An admin, signed in to the console in `browser` (and holding API tokens)."""
    a = staff(browser, s3_settings, "admin")
    sign_in(browser, a.email)
    return a


def detail(c: TestClient[Any], admin: Actor, user_id: str) -> dict[str, Any]:
    """GET /admin/users/{id} (the admin's own writes are waited for: read-your-writes)."""
    return ok(c.get(f"{API}/admin/users/{user_id}", headers=admin.auth))  # type: ignore[no-any-return]


def listed(page: str) -> list[str]:
    return re.findall(r'<tr data-id="([0-9a-f-]{36})">', page)


def test_the_list_filters_like_the_api_and_pages_are_403_for_a_student(browser: TestClient[Any], admin: Actor) -> None:
    tutor, _ = signup(browser, "tutor", full_name="Quirinus Tutorfilter")
    student, _ = signup(browser, "student", full_name="Quirinus Studentfilter")
    caught_up(browser)
    page = browser.get(USERS, params={"q": "quirinus"})
    assert page.status_code == 200
    assert set(listed(page.text)) == {tutor.id, student.id}
    for params in ({"role": "tutor", "q": "quirinus"}, {"role": "student"}, {"active": "true"}, {}):
        page = browser.get(USERS, params=params)
        api = {"is_active" if k == "active" else k: v for k, v in params.items()}
        want = [
            u["id"]
            for u in ok(browser.get(f"{API}/admin/users", params={**api, "limit": 50}, headers=admin.auth))["items"]
        ]
        assert listed(page.text) == want, params
    assert listed(browser.get(USERS, params={"role": "tutor", "q": "quirinus"}).text) == [tutor.id]
    assert f'href="/console/users/{tutor.id}"' in page.text
    problem_page(browser.get(USERS, params={"active": "maybe"}), 422, "validation-failed")

    browser.cookies.clear()
    sign_in(browser, student.email)
    for path in (USERS, f"{USERS}/{tutor.id}", f"{USERS}/{tutor.id}/avatar"):
        problem_page(browser.get(path), 403, "forbidden")
    r = browser.post(
        f"{USERS}/{tutor.id}", data={"_csrf_token": csrf(browser.get("/console/login").text), "role": "admin"}
    )
    problem_page(r, 403, "forbidden")


def test_a_users_page_links_their_tutor_review_and_their_history(browser: TestClient[Any], admin: Actor) -> None:
    tutor, _ = signup(browser, "tutor", full_name="Tess Tutor")
    student, _ = signup(browser, "student", full_name="Stu Dent")
    caught_up(browser)
    page = browser.get(f"{USERS}/{tutor.id}")
    assert page.status_code == 200 and "Tess Tutor" in page.text and tutor.email in page.text
    assert f'href="/console/tutors/{tutor.id}"' in page.text
    assert f'href="/console/aggregates/{tutor.id}"' in page.text
    assert browser.get(f"/console/aggregates/{tutor.id}").status_code == 200
    page = browser.get(f"{USERS}/{student.id}")
    assert page.status_code == 200 and "/console/tutors/" not in page.text
    assert 'id="avatar"' not in page.text  # no picture yet
    problem_page(browser.get(f"{USERS}/{student.id}/avatar"), 404, "not-found")
    problem_page(browser.get(f"{USERS}/00000000-0000-4000-8000-000000000000"), 404, "not-found")


def test_role_activity_and_profile_forms_do_what_the_api_does(browser: TestClient[Any], admin: Actor) -> None:
    student, _ = signup(browser, "student", full_name="Form Target")
    caught_up(browser)
    page = f"{USERS}/{student.id}"

    shown = landed(browser, submit(browser, page, page, {"role": "tutor"}), page)
    assert "Role: tutor" in shown.text and '<span class="badge" id="user-role">tutor</span>' in shown.text
    assert detail(browser, admin, student.id)["role"] == "tutor"

    shown = landed(browser, submit(browser, page, page, {"is_active": "false"}), page)
    assert "Account deactivated" in shown.text and 'id="user-status">inactive' in shown.text
    assert detail(browser, admin, student.id)["is_active"] is False
    problem(browser.get(f"{API}/me", headers=student.auth), 401)  # locked out at once, as through the API

    shown = landed(browser, submit(browser, page, page, {"is_active": "true"}), page)
    assert "Account reactivated" in shown.text
    assert detail(browser, admin, student.id)["is_active"] is True

    profile = {"full_name": "Renamed Person", "timezone": "Europe/Paris", "language": "fr", "currency": "EUR"}
    shown = landed(browser, submit(browser, page, page, profile), page)
    assert "Profile saved" in shown.text and "Renamed Person" in shown.text
    got = detail(browser, admin, student.id)
    assert {k: got[k] for k in profile} == profile

    fields = problem_page(
        submit(browser, page, page, {**profile, "timezone": "Mars/Olympus"}), 422, "validation-failed"
    )
    assert fields == {"timezone"}
    assert problem_page(submit(browser, page, page, {"role": "wizard"}), 422, "validation-failed") == {"role"}
    assert detail(browser, admin, student.id)["timezone"] == "Europe/Paris"


def test_delete_needs_its_confirmation_and_closes_the_account(browser: TestClient[Any], admin: Actor) -> None:
    student, _ = signup(browser, "student")
    caught_up(browser)
    page = f"{USERS}/{student.id}"
    assert problem_page(submit(browser, page, f"{page}/delete", {}), 422, "validation-failed") == {"confirm"}
    assert detail(browser, admin, student.id)["deleted"] is False
    shown = landed(browser, submit(browser, page, f"{page}/delete", {"confirm": "yes"}), page)
    assert "Account deleted" in shown.text and 'id="user-status">deleted' in shown.text
    assert 'id="delete"' not in shown.text
    assert detail(browser, admin, student.id)["deleted"] is True
    problem(browser.get(f"{API}/me", headers=student.auth), 401)


def test_an_admin_cannot_lock_themselves_out_and_forms_need_their_csrf_token(
    browser: TestClient[Any], admin: Actor
) -> None:
    me = f"{USERS}/{admin.id}"
    problem_page(submit(browser, me, me, {"role": "student"}), 409, "self-lockout")
    problem_page(submit(browser, me, me, {"is_active": "false"}), 409, "self-lockout")
    problem_page(submit(browser, me, f"{me}/delete", {"confirm": "yes"}), 409, "self-lockout")
    got = detail(browser, admin, admin.id)
    assert (got["role"], got["is_active"], got["deleted"]) == ("admin", True, False)

    student, _ = signup(browser, "student")

    caught_up(browser)
    browser.get(f"{USERS}/{student.id}")
    for action, data in (("", {"role": "admin"}), ("/delete", {"confirm": "yes"}), ("/avatar/clear", {"reason": "x"})):
        r = browser.post(f"{USERS}/{student.id}{action}", data=data, follow_redirects=False)
        assert r.status_code == 403, action
        r = browser.post(
            f"{USERS}/{student.id}{action}", data={**data, "_csrf_token": "forged"}, follow_redirects=False
        )
        assert r.status_code == 403, action
    r = browser.post(
        f"{USERS}/{student.id}/avatar", files={"image": ("a.png", PNG, "image/png")}, data={"reason": "x"},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 403
    got = detail(browser, admin, student.id)
    assert (got["role"], got["deleted"], got["avatar_url"]) == ("student", False, None)


def test_an_avatar_override_with_a_real_png_shows_on_the_page_and_can_be_cleared(
    browser: TestClient[Any], admin: Actor
) -> None:
    student, _ = signup(browser, "student")
    caught_up(browser)
    page = f"{USERS}/{student.id}"
    r = submit(
        browser,
        page,
        f"{page}/avatar",
        {"reason": " Not a photo of you. "},
        {"image": ("me.png", BIG_PNG, "image/png")},
    )
    shown = landed(browser, r, page)
    assert "Avatar replaced" in shown.text
    # the picture comes from the console's own origin: the page's CSP allows no other
    assert "img-src 'self' data:" in shown.headers["content-security-policy"]
    assert f'<img id="avatar" class="avatar" src="/console/users/{student.id}/avatar"' in shown.text
    img = browser.get(f"{page}/avatar")
    assert img.status_code == 200 and img.content == BIG_PNG and img.headers["content-type"] == "image/png"
    assert detail(browser, admin, student.id)["avatar_url"]
    (event,) = all_events(browser, admin, aggregate_id=student.id, type="User.AvatarOverridden")
    assert event["data"]["reason"] == "Not a photo of you." and event["actor_id"] == admin.id

    shown = landed(browser, submit(browser, page, f"{page}/avatar/clear", {"reason": "Removed on request."}), page)
    assert "Avatar removed" in shown.text and 'id="avatar"' not in shown.text
    assert detail(browser, admin, student.id)["avatar_url"] is None
    problem_page(browser.get(f"{page}/avatar"), 404, "not-found")
    events = all_events(browser, admin, aggregate_id=student.id, type="User.AvatarOverridden")
    assert [e["data"]["reason"] for e in events] == ["Not a photo of you.", "Removed on request."]


def test_a_non_image_or_a_missing_reason_is_refused_and_changes_nothing(browser: TestClient[Any], admin: Actor) -> None:
    student, _ = signup(browser, "student")
    caught_up(browser)
    page = f"{USERS}/{student.id}"
    avatar = f"{page}/avatar"
    fields = problem_page(
        submit(browser, page, avatar, {"reason": "r"}, {"image": ("notes.txt", b"hello", "text/plain")}),
        422, "validation-failed",
    )  # fmt: skip
    assert fields == {"content_type"}
    # declared a PNG, but its bytes are a web page: the stored copy's check refuses it
    problem_page(
        submit(browser, page, avatar, {"reason": "r"}, {"image": ("x.png", HTML, "image/png")}), 422, "unsupported-file"
    )
    assert problem_page(
        submit(browser, page, avatar, {"reason": "  "}, {"image": ("me.png", PNG, "image/png")}),
        422,
        "validation-failed",
    ) == {"reason"}
    assert problem_page(submit(browser, page, avatar, {"reason": "r"}), 422, "validation-failed") == {"image"}
    assert problem_page(submit(browser, page, f"{avatar}/clear", {}), 422, "validation-failed") == {"reason"}
    assert detail(browser, admin, student.id)["avatar_url"] is None
    assert 'id="avatar"' not in browser.get(page).text
    assert all_events(browser, admin, aggregate_id=student.id, type="User.AvatarOverridden") == []
