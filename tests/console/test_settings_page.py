"""The console's settings page over HTTP through the real app: the values GET /admin/settings answers, a form that
changes them through the same command and validation as PATCH /admin/settings, and every version with its actor,
newest first, linking the event explorer."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from application.settings import Settings
from domain.platform import SETTINGS_ID
from tests.console.test_console_http import csrf, sign_in
from tests.support.api import API, Actor, ok, signup, staff

pytestmark = pytest.mark.cloned_database


@pytest.fixture
def admin_console(prepared: Settings, projectors: Any) -> Iterator[tuple[TestClient[Any], Actor]]:
    """An admin signed in to the console over HTTPS."""
    with TestClient(create_app(prepared), base_url="https://console.test", timeout=30) as c:
        admin = staff(c, prepared, "admin")
        assert sign_in(c, admin.email).status_code == 303
        yield c, admin


def fields(page: str) -> dict[str, str]:
    """The settings form's inputs (name: value), its CSRF token included."""
    m = re.search(r'<form method="post" action="/console/settings">(.*?)</form>', page, re.S)
    assert m, "the settings form"
    found = re.findall(r'<input[^>]*\bname="([^"]+)"[^>]*\bvalue="([^"]*)"', m.group(1))
    return {name: html.unescape(value) for name, value in found}


def versions(page: str) -> list[tuple[int, str, str]]:
    """(version, who, what changed) of each row of the history, top to bottom."""
    rows = re.findall(r'<tr data-version="(\d+)">(.*?)</tr>', page, re.S)
    out = []
    for v, row in rows:
        cells = [
            " ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split())
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        out.append((int(v), cells[2], cells[3]))
    return out


def test_a_change_appears_as_a_new_version_with_its_actor(admin_console: tuple[TestClient[Any], Actor]) -> None:
    c, admin = admin_console
    page = c.get("/console/settings")
    assert page.status_code == 200
    shown = fields(page.text)
    api = ok(c.get(f"{API}/admin/settings", headers=admin.auth))
    assert shown["version"] == "1" == str(api["version"])
    assert shown["commission_bps"] == str(api["commission_bps"]) == "2000"
    assert shown["package_discount_bps.10"] == str(api["package_discount_bps"]["10"]) == "500"
    assert versions(page.text) == []  # never changed: the defaults

    r = c.post(
        "/console/settings",
        data={**shown, "commission_bps": "1500", "package_discount_bps.5": "250"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].startswith(
        "/console/settings?done=Saved+as+version+2&recorded="
    )
    api = ok(c.get(f"{API}/admin/settings", headers=admin.auth))
    assert api["version"] == 2 and api["commission_bps"] == 1500
    assert api["package_discount_bps"] == {"1": 0, "5": 250, "10": 500, "20": 1000}
    assert api["cancellation_window_hours"] == 12  # the fields left as shown did not change

    page = c.get(r.headers["location"])
    assert "Saved as version 2" in page.text
    assert fields(page.text)["commission_bps"] == "1500" and fields(page.text)["version"] == "2"
    history = versions(page.text)
    assert [v for v, _, _ in history] == [2, 1]
    _, who, what = history[0]
    assert who == f"admin {admin.id}"
    assert (
        "commission_bps → 1500" in what and 'package_discount_bps → {"1": 0, "10": 500, "20": 1000, "5": 250}' in what
    )
    assert "cancellation_window_hours" not in what
    assert f'href="/console/aggregates/{SETTINGS_ID}?version=2"' in page.text
    assert c.get(f"/console/aggregates/{SETTINGS_ID}?version=2").status_code == 200

    # A second change is the newest row; a form showing nothing new records nothing.
    r = c.post("/console/settings", data={**fields(page.text), "credit_validity_days": "90"}, follow_redirects=False)
    assert "done=Saved+as+version+3" in r.headers["location"]
    page = c.get("/console/settings")
    assert versions(page.text)[0][::2] == (3, "credit_validity_days → 90")
    r = c.post("/console/settings", data=fields(page.text), follow_redirects=False)
    assert r.status_code == 303 and "Nothing+changed" in r.headers["location"]
    assert ok(c.get(f"{API}/admin/settings", headers=admin.auth))["version"] == 3


def test_a_bad_value_shows_the_validation_error(admin_console: tuple[TestClient[Any], Actor]) -> None:
    c, admin = admin_console
    shown = fields(c.get("/console/settings").text)
    for field, bad, message in (
        ("commission_bps", "15.5", "integer basis points 0-10000"),
        ("commission_bps", "abc", "integer basis points 0-10000"),
        ("late_cancel_refund_bps", "10001", "integer basis points 0-10000"),
        ("credit_validity_days", "0", "whole days 1-3650"),
        ("cancellation_window_hours", "-1", "whole hours 0-336"),
        ("package_discount_bps.10", "5%", "an object"),
    ):
        r = c.post("/console/settings", data={**shown, field: bad}, follow_redirects=False)
        assert r.status_code == 422, (field, bad, r.status_code)
        assert "validation-failed" in r.text and "text/html" in r.headers["content-type"]
        named = field.split(".")[0]
        assert f"<code>{named}</code>: {message}" in html.unescape(r.text), (field, bad)
    r = c.post("/console/settings", data={**shown, "no_such_setting": "1"}, follow_redirects=False)
    assert r.status_code == 422 and "<code>no_such_setting</code>: unknown setting" in r.text
    assert ok(c.get(f"{API}/admin/settings", headers=admin.auth))["version"] == 1


def test_a_stale_form_never_undoes_a_newer_version(admin_console: tuple[TestClient[Any], Actor]) -> None:
    c, admin = admin_console
    stale = fields(c.get("/console/settings").text)
    ok(c.patch(f"{API}/admin/settings", json={"commission_bps": 1700}, headers=admin.auth))
    r = c.post("/console/settings", data={**stale, "credit_validity_days": "30"}, follow_redirects=False)
    assert r.status_code == 409 and "concurrency-conflict" in r.text
    api = ok(c.get(f"{API}/admin/settings", headers=admin.auth))
    assert (api["version"], api["commission_bps"], api["credit_validity_days"]) == (2, 1700, 180)


def test_only_admins_open_settings_and_its_form_needs_the_csrf_token(
    admin_console: tuple[TestClient[Any], Actor], prepared: Settings
) -> None:
    c, admin = admin_console
    shown = fields(c.get("/console/settings").text)
    without = {k: v for k, v in shown.items() if k != "_csrf_token"}
    assert (
        c.post("/console/settings", data={**without, "commission_bps": "1"}, follow_redirects=False).status_code == 403
    )
    assert ok(c.get(f"{API}/admin/settings", headers=admin.auth))["version"] == 1
    for actor in (staff(c, prepared, "finance"), signup(c, "tutor")[0]):
        assert sign_in(c, actor.email).status_code == 303
        assert c.get("/console/settings").status_code == 403, actor.role
        token = csrf(c.get("/console/login").text)
        r = c.post("/console/settings", data={**without, "_csrf_token": token, "commission_bps": "1"})
        assert r.status_code == 403, actor.role
    assert ok(c.get(f"{API}/admin/settings", headers=admin.auth))["version"] == 1
