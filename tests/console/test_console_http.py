"""The console over HTTP through the real app: the landing page, sign-in with the API's accounts, CSRF on every
form, the API's authorisation on every page, and pages rendering what the read models hold."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from api.app import create_app
from application.settings import Settings
from tests.support.api import PASSWORD, Actor, signup, staff_login

pytestmark = pytest.mark.cloned_database


@pytest.fixture
def browser(prepared: Settings, projectors: Any) -> Iterator[TestClient[Any]]:
    """A cookie-keeping client over HTTPS (the session cookies are Secure)."""
    with TestClient(create_app(prepared), base_url="https://console.test", timeout=30) as c:
        yield c


def csrf(html: str) -> str:
    m = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert m, "the form carries a CSRF token"
    return m.group(1)


def sign_in(c: TestClient[Any], email: str, password: str = PASSWORD, next_: str = "/console/events") -> Any:
    page = c.get("/console/login", params={"next": next_})
    assert page.status_code == 200
    return c.post(
        "/console/login",
        data={"_csrf_token": csrf(page.text), "email": email, "password": password, "next": next_},
        follow_redirects=False,
    )


def test_landing_page_links_the_console_and_the_api_docs(browser: TestClient[Any]) -> None:
    r = browser.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'href="/console/"' in r.text and 'href="/schema/swagger"' in r.text


def test_pages_send_a_visitor_to_sign_in_and_back(browser: TestClient[Any], prepared: Settings) -> None:
    r = browser.get("/console/events?type=User.Registered", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login?next=/console/events%3Ftype%3DUser.Registered"
    admin = staff_login(browser, prepared, "admin")
    r = sign_in(browser, admin["email"], next_="/console/events?type=User.Registered")
    assert r.status_code == 303 and r.headers["location"] == "/console/events?type=User.Registered"
    cookie = r.headers.get_list("set-cookie")
    session = [c for c in cookie if c.startswith("tc_access=")]
    assert session and all(k in session[0].lower() for k in ("httponly", "samesite=strict", "secure", "path=/console"))
    page = browser.get("/console/events?type=User.Registered")
    assert page.status_code == 200
    me = browser.get("/api/v1/me", headers={"Authorization": f"Bearer {admin['access_token']}"}).json()
    assert f"/console/aggregates/{me['id']}?version=1" in page.text
    assert set(re.findall(r"<td><code>([\w.]+)</code></td>", page.text)) == {"User.Registered"}


def test_wrong_password_is_the_same_refusal_as_the_api(browser: TestClient[Any], prepared: Settings) -> None:
    admin = staff_login(browser, prepared, "admin")
    r = sign_in(browser, admin["email"], "Wrong-passw0rd")
    assert r.status_code == 401 and "Sign in" in r.text
    assert "tc_access" not in browser.cookies


def test_a_form_posted_without_its_csrf_token_is_refused(browser: TestClient[Any], prepared: Settings) -> None:
    admin = staff_login(browser, prepared, "admin")
    browser.get("/console/login")  # the CSRF cookie is set, the form's token is left out
    r = browser.post("/console/login", data={"email": admin["email"], "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403
    assert "tc_access" not in browser.cookies
    r = browser.post(
        "/console/login",
        data={"_csrf_token": "forged", "email": admin["email"], "password": PASSWORD},
        follow_redirects=False,
    )
    assert r.status_code == 403


def test_a_student_gets_403_on_admin_pages(browser: TestClient[Any]) -> None:
    student: Actor = signup(browser, "student")[0]
    assert sign_in(browser, student.email).status_code == 303
    for path in ("/console/events", "/console/correlations/x"):
        r = browser.get(path)
        assert r.status_code == 403, path
        assert "403" in r.text and "text/html" in r.headers["content-type"]


def test_signing_out_ends_the_session_everywhere(browser: TestClient[Any], prepared: Settings) -> None:
    admin = staff_login(browser, prepared, "admin")
    sign_in(browser, admin["email"])
    access = browser.cookies["tc_access"]
    page = browser.get("/console/events")
    r = browser.post("/console/logout", data={"_csrf_token": csrf(page.text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert browser.get("/console/events", follow_redirects=False).status_code == 303
    # the revoked session's access token is refused by the API too
    assert browser.get("/api/v1/me", headers={"Authorization": f"Bearer {access}"}).status_code == 401


def _console_routes(app: Any) -> list[tuple[str, str, tuple[str, ...] | None]]:
    """(method, path, roles) of every console page route; roles None when the route has no page guard."""
    from litestar.routes import HTTPRoute

    out = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not route.path.startswith("/console"):
            continue
        for handler in route.route_handlers:
            roles = next((tuple(g.roles) for g in handler.resolve_guards() if hasattr(g, "roles")), None)
            out.extend((m, route.path, roles) for m in handler.http_methods if m not in ("HEAD", "OPTIONS"))
    return out


OPEN = {
    ("GET", "/console/login"),
    ("POST", "/console/login"),
    ("GET", "/console/renew"),
    ("POST", "/console/logout"),
    ("GET", "/console/static/{file_path:path}"),
}


def test_every_console_page_checks_the_session_and_role(browser: TestClient[Any], prepared: Settings) -> None:
    routes = _console_routes(browser.app)
    assert len(routes) > 15, routes
    assert {(m, p) for m, p, roles in routes if roles is None} == OPEN
    # anonymous: a page sends the browser to sign in; a form posted without a session is refused (its CSRF first)
    token = csrf(browser.get("/console/login").text)
    guarded = [(m, re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", p), r) for m, p, r in routes if r]
    for method, path, _ in guarded:
        if method == "GET":
            r = browser.get(path, params={"from": "x", "limit": "many"}, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/console/login?next="), path
        else:
            r = browser.request(method, path, data={"_csrf_token": token, "x": "\x00"}, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/console/login"), path
            r = browser.request(method, path, data={"x": "1"}, follow_redirects=False)
            assert r.status_code == 403, path
    # a student and a tutor: 403 on every page but none for their role (finance pages admit finance and admin)
    for role in ("student", "tutor"):
        actor: Actor = signup(browser, role)[0]
        browser.cookies.clear()
        sign_in(browser, actor.email)
        token = csrf(browser.get("/console/login").text)
        for method, path, roles in guarded:
            assert role not in (roles or ()), path
            r = browser.request(method, path, data={"_csrf_token": token} if method != "GET" else None)
            assert r.status_code == 403 and "text/html" in r.headers["content-type"], (method, path)


def test_a_database_outage_is_a_503_page_and_the_console_recovers(
    browser: TestClient[Any], prepared: Settings, pg_admin_url: str
) -> None:
    """The database goes away under a signed-in admin (its connections cut, new ones refused): a page answers the
    API's 503 `service-unavailable` as a page, never a 500, and works again once the database is back."""
    admin = staff_login(browser, prepared, "admin")
    assert sign_in(browser, admin["email"]).status_code == 303
    assert browser.get("/console/events").status_code == 200
    name = prepared.database_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_admin_url, autocommit=True) as pg:
        pg.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        pg.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            r = browser.get("/console/events")
            assert r.status_code == 503 and "text/html" in r.headers["content-type"]
            assert "service-unavailable" in r.text
        finally:
            pg.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    for _ in range(20):  # the pool replaces the connections it lost
        if browser.get("/console/events").status_code == 200:
            break
    assert browser.get("/console/events").status_code == 200
