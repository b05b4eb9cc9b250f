"""Secure headers on every response: nothing meant for one signed-in person is cached (`Cache-Control: no-store`),
no referrer leaves, JSON runs nothing and is framed by nobody, and the docs page runs only this origin's scripts."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.api import API, Actor, reg_body

pytestmark = pytest.mark.cloned_database


def _common(r: Any) -> None:
    assert r.headers["referrer-policy"] == "no-referrer", r.headers
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_signed_in_answers_and_tokens_are_never_stored(client: Any, student: Actor) -> None:
    for r in (
        client.get(f"{API}/me", headers=student.auth),
        client.get(f"{API}/bookings", headers=student.auth),
        client.get(f"{API}/admin/users", headers=student.auth),  # a 403 problem too
        client.get(f"{API}/nowhere", headers=student.auth),  # the router's own 404
        client.post(f"{API}/auth/register", json=reg_body()),  # tokens, no Authorization header
        client.post(f"{API}/auth/login", json={"email": student.email, "password": student.password}),
    ):
        assert r.headers.get("cache-control") == "no-store", (r.request.url, dict(r.headers))
        _common(r)
        assert r.headers["content-security-policy"].startswith("default-src 'none'")


def test_public_answers_may_be_cached_but_carry_the_same_policy(client: Any) -> None:
    r = client.get(f"{API}/subjects")
    assert r.status_code == 200
    assert r.headers.get("cache-control") != "no-store"
    _common(r)


def test_the_docs_page_runs_only_its_own_scripts(client: Any) -> None:
    page = client.get("/schema/swagger")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    _common(page)
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    html = page.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script would be refused by the policy"
    for src in re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", html):
        assert src.startswith("/schema/"), src  # every asset from this origin
        assert client.get(src).status_code == 200, src
