"""A first end-to-end pass through the real app: register, /me, admin list with read-your-writes."""

from __future__ import annotations

import pytest

from tests.support.api import bearer, register, staff_login

pytestmark = pytest.mark.cloned_database


def test_register_me_and_admin_list(client, prepared) -> None:
    body = register(client, "student", full_name="Smoke Test")
    me = client.get("/api/v1/me", headers=bearer(body))
    assert me.status_code == 200 and me.json()["full_name"] == "Smoke Test"
    admin = staff_login(client, prepared)
    r = client.get("/api/v1/admin/users", params={"q": body["user"]["email"]}, headers=bearer(admin))
    assert r.status_code == 200, r.text
    assert [u["id"] for u in r.json()["items"]] == [body["user"]["id"]]
    assert int(r.headers["X-Projection-Position"]) > 0
