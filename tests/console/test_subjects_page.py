"""The console's Subjects page through the real app: the whole catalog (active and retired, with categories) and
forms to create, rename, recategorise, retire and restore, each doing what /admin/subjects does."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from application.settings import Settings
from tests.console.support import BASE_URL, csrf, landed, problem_page, sign_in, submit
from tests.support.api import API, Actor, ok, signup, staff

pytestmark = pytest.mark.cloned_database

PAGE = "/console/subjects"


@pytest.fixture
def browser(prepared: Settings, projectors: Any) -> Iterator[TestClient[Any]]:
    """A cookie-keeping client over HTTPS (the session cookies are Secure)."""
    with TestClient(create_app(prepared), base_url=BASE_URL, timeout=30) as c:
        yield c


@pytest.fixture
def admin(browser: TestClient[Any], prepared: Settings) -> Actor:
    """An admin, signed in to the console in `browser` (and holding API tokens)."""
    a = staff(browser, prepared, "admin")
    sign_in(browser, a.email)
    return a


def row(page: str, subject_id: str) -> tuple[str, str, bool]:
    """(name, category, active) of a subject's row on the page."""
    m = re.search(rf'<tr data-id="{subject_id}" data-active="(true|false)">(.*?)</tr>', page, re.S)
    assert m, f"subject {subject_id} is not on the page"
    values = re.findall(r'name="(name|category)" value="([^"]*)"', m.group(2))
    got = dict(values)
    return html.unescape(got["name"]), html.unescape(got["category"]), m.group(1) == "true"


def api_subject(c: TestClient[Any], admin: Actor, subject_id: str) -> dict[str, Any] | None:
    """The subject as GET /subjects lists it (active ones only), or None."""
    items = ok(c.get(f"{API}/subjects", params={"limit": 100}, headers=admin.auth))["items"]
    return next((s for s in items if s["id"] == subject_id), None)


def create(c: TestClient[Any], name: str, category: str) -> str:
    r = submit(c, PAGE, PAGE, {"name": name, "category": category})
    page = landed(c, r, PAGE)
    assert f"Subject {name} added" in page.text
    ids = re.findall(r'<tr data-id="([0-9a-f-]{36})"', page.text)
    (found,) = [i for i in ids if row(page.text, i)[0] == name]
    return found


def test_the_page_renders_for_an_admin_and_is_403_for_a_student(browser: TestClient[Any], admin: Actor) -> None:
    r = browser.get(PAGE)
    assert r.status_code == 200 and 'id="subjects"' in r.text and 'action="/console/subjects"' in r.text
    student: Actor = signup(browser, "student")[0]
    browser.cookies.clear()
    sign_in(browser, student.email)
    problem_page(browser.get(PAGE), 403, "forbidden")
    r = browser.post(PAGE, data={"_csrf_token": csrf(browser.get("/console/login").text), "name": "X", "category": "Y"})
    problem_page(r, 403, "forbidden")


def test_create_rename_recategorise_retire_restore_each_show_on_the_page_and_in_the_api(
    browser: TestClient[Any], admin: Actor
) -> None:
    sid = create(browser, "Linear Algebra", "Maths")
    assert api_subject(browser, admin, sid) == {
        "id": sid,
        "name": "Linear Algebra",
        "category": "Maths",
        "active": True,
    }

    page = landed(
        browser, submit(browser, PAGE, f"{PAGE}/{sid}", {"name": "Linear Algebra I", "category": "Maths"}), PAGE
    )
    assert row(page.text, sid) == ("Linear Algebra I", "Maths", True)
    assert api_subject(browser, admin, sid) == {
        "id": sid,
        "name": "Linear Algebra I",
        "category": "Maths",
        "active": True,
    }

    page = landed(browser, submit(browser, PAGE, f"{PAGE}/{sid}", {"category": "Mathematics & Stats"}), PAGE)
    assert row(page.text, sid) == ("Linear Algebra I", "Mathematics & Stats", True)
    assert api_subject(browser, admin, sid)["category"] == "Mathematics & Stats"  # type: ignore[index]

    page = landed(browser, submit(browser, PAGE, f"{PAGE}/{sid}/retire", {}), PAGE)
    assert row(page.text, sid) == ("Linear Algebra I", "Mathematics & Stats", False)  # still listed, retired
    assert f'action="/console/subjects/{sid}/restore"' in page.text
    assert api_subject(browser, admin, sid) is None  # gone from the public catalog

    page = landed(browser, submit(browser, PAGE, f"{PAGE}/{sid}/restore", {}), PAGE)
    assert row(page.text, sid) == ("Linear Algebra I", "Mathematics & Stats", True)
    assert api_subject(browser, admin, sid) is not None
    # the notice links what the last command recorded
    assert 'id="recorded"' in page.text
    # restoring an active subject is the API's 409
    problem_page(submit(browser, PAGE, f"{PAGE}/{sid}/restore", {}), 409, "wrong-status")


def test_bad_input_is_the_apis_validation_problem_and_a_form_needs_its_csrf_token(
    browser: TestClient[Any], admin: Actor
) -> None:
    assert problem_page(submit(browser, PAGE, PAGE, {"name": "  ", "category": "Maths"}), 422, "validation-failed") == {
        "name"
    }
    assert problem_page(submit(browser, PAGE, PAGE, {"name": "Chess"}), 422, "validation-failed") == {"category"}
    browser.get(PAGE)
    r = browser.post(PAGE, data={"name": "Forged", "category": "Nope"}, follow_redirects=False)
    assert r.status_code == 403
    assert "Forged" not in browser.get(PAGE).text
    problem_page(submit(browser, PAGE, f"{PAGE}/00000000-0000-4000-8000-000000000000/retire", {}), 404, "not-found")
