"""Helpers for console tests over HTTP: a cookie-keeping client signed in through the sign-in form, and forms
posted with their page's CSRF token."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.rows import dict_row

from api.deps import services
from projections.waiting import wait_for
from tests.support.api import PASSWORD
from tests.support.http import PROBLEMS

BASE_URL = "https://console.test"  # the session cookies are Secure


def csrf(html: str) -> str:
    """The CSRF token a page's forms carry."""
    m = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert m, "the page carries a form with a CSRF token"
    return m.group(1)


def sign_in(c: Any, email: str, password: str = PASSWORD) -> None:
    """Sign `c` in to the console through its sign-in form."""
    page = c.get("/console/login")
    assert page.status_code == 200
    r = c.post(
        "/console/login",
        data={"_csrf_token": csrf(page.text), "email": email, "password": password, "next": "/console/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def submit(c: Any, page: str, action: str, data: dict[str, str], files: Any = None) -> Any:
    """Post a form of `page` (GET first, for its CSRF token) to `action`, without following the redirect."""
    got = c.get(page)
    assert got.status_code == 200, got.text
    return c.post(action, data={"_csrf_token": csrf(got.text), **data}, files=files, follow_redirects=False)


def landed(c: Any, r: Any, path: str) -> Any:
    """A form's POST/redirect/GET: `r` is a 303 to `path` (with its notice); the page it leads to."""
    assert r.status_code == 303, r.text
    assert r.headers["location"].split("?")[0] == path, r.headers["location"]
    page = c.get(r.headers["location"])
    assert page.status_code == 200, page.text
    return page


def problem_page(r: Any, status: int, slug: str) -> set[str]:
    """An error page showing the API problem's status and type; the fields its errors name."""
    assert r.status_code == status, (r.status_code, r.text[:800])
    assert "text/html" in r.headers["content-type"]
    assert f"Problem type <code>{PROBLEMS}{slug}</code>" in r.text, r.text
    return set(re.findall(r"<li><code>([^<]+)</code>:", r.text))


def caught_up(c: Any, names: tuple[str, ...] = ("users_directory", "tutors", "bookings", "audit_log")) -> None:
    """Wait until the read models `names` show every event recorded so far (other users' writes, which a page
    does not wait for: read-your-writes covers the admin's own). `c` is a TestClient of the app or a database URL."""
    dsn = c if isinstance(c, str) else services(c.app.state).settings.database_url
    with psycopg.connect(dsn, row_factory=dict_row, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) AS h FROM tutorconnect_events").fetchone()
        assert row is not None and wait_for(conn, names, int(row["h"]), 15.0) is not None, f"{names} behind"
