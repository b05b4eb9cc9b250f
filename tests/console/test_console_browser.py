"""The console's Must-show flows in headless chromium against a real API process."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from application.settings import Settings
from tests.support.api import PASSWORD, staff_login

pytestmark = pytest.mark.cloned_database


def sign_in(tab: Any, root: str, email: str, path: str = "/console/") -> None:
    tab.goto(root + path)
    assert "/console/login" in tab.url
    tab.fill("input[name=email]", email)
    tab.fill("input[name=password]", PASSWORD)
    tab.click("button[type=submit]")


def test_admin_signs_in_and_a_student_gets_403(site: tuple[str, Settings], tab: Any) -> None:
    root, settings = site
    with httpx.Client(base_url=root, timeout=30) as api:
        admin = staff_login(api, settings, "admin")
        r = api.post(
            "/api/v1/auth/register",
            json={"email": "stu-browser@example.test", "password": PASSWORD, "full_name": "Stu", "role": "student"},
        )
        assert r.status_code == 201
    sign_in(tab, root, admin["email"], "/console/events")
    tab.wait_for_url(root + "/console/events")
    assert tab.locator("h1").inner_text() == "Event explorer"
    assert tab.locator("#events tbody tr").count() > 0
    tab.click("text=Sign out")
    tab.wait_for_url("**/console/login")

    sign_in(tab, root, "stu-browser@example.test", "/console/events")
    tab.wait_for_load_state()
    assert "403" in tab.locator("h1").inner_text()
