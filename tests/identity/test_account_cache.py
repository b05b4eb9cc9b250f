"""The guards' account cache (api/accounts.py) never lets a changed account through: the process that made the
change forgets it at once, every other process within moments of the commit (NOTIFY), and nothing is cached while
the listener is disconnected."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from api.app import create_app
from application.settings import Settings
from tests.support.api import API, Actor, ok, problem
from tests.support.system import make_settings, wait_until

pytestmark = pytest.mark.cloned_database


@pytest.fixture
def other(prepared: Settings) -> Iterator[Any]:
    """A second API process's worth of app (its own services and account cache) over the same database."""
    settings = make_settings(prepared.database_url, prepared.redis_url, pool_size=3)
    with TestClient(create_app(settings), base_url="http://testserver.local", timeout=30) as c:
        yield c


def _listening(dsn: str) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as c:
        return [r[0] for r in c.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN tutorconnect_accounts%'"
        ).fetchall()]  # fmt: skip


def test_a_change_made_elsewhere_reaches_a_process_that_cached_the_account(
    client: Any, other: Any, admin: Actor, student: Actor
) -> None:
    ok(other.get(f"{API}/me", headers=student.auth))  # `other` now knows the student as active
    ok(other.get(f"{API}/me", headers=student.auth))
    ok(client.patch(f"{API}/admin/users/{student.id}", json={"role": "tutor"}, headers=admin.auth))
    wait_until(lambda: other.get(f"{API}/student/profile", headers=student.auth).status_code == 403, 5,
               "the role change heard by the other process")  # fmt: skip
    ok(client.patch(f"{API}/admin/users/{student.id}", json={"is_active": False}, headers=admin.auth))
    wait_until(lambda: other.get(f"{API}/me", headers=student.auth).status_code == 401, 5,
               "the deactivation heard by the other process")  # fmt: skip
    problem(other.get(f"{API}/me", headers=student.auth), 401, "unauthorized")
    ok(client.patch(f"{API}/admin/users/{student.id}", json={"is_active": True}, headers=admin.auth))
    wait_until(lambda: other.get(f"{API}/me", headers=student.auth).status_code == 200, 5, "reactivation")


def test_the_process_that_makes_the_change_forgets_at_once(client: Any, admin: Actor, student: Actor) -> None:
    for _ in range(3):
        ok(client.get(f"{API}/me", headers=student.auth))
    ok(client.delete(f"{API}/admin/users/{student.id}", headers=admin.auth))
    problem(client.get(f"{API}/me", headers=student.auth), 401, "unauthorized")


def test_nothing_is_cached_while_the_listener_is_away(
    client: Any, other: Any, admin: Actor, student: Actor, prepared: Settings
) -> None:
    ok(other.get(f"{API}/me", headers=student.auth))
    ok(client.get(f"{API}/me", headers=admin.auth))
    wait_until(lambda: len(_listening(prepared.database_url)) == 2, 10, "both processes listening")
    with psycopg.connect(prepared.database_url, autocommit=True) as c:
        for pid in _listening(prepared.database_url):
            c.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # the change is made while nobody listens: no notification reaches `other`, which must not trust its cache
    ok(client.patch(f"{API}/admin/users/{student.id}", json={"is_active": False}, headers=admin.auth))
    problem(other.get(f"{API}/me", headers=student.auth), 401, "unauthorized")
    wait_until(lambda: len(_listening(prepared.database_url)) == 2, 10, "listening again")
    ok(client.patch(f"{API}/admin/users/{student.id}", json={"is_active": True}, headers=admin.auth))
    wait_until(lambda: other.get(f"{API}/me", headers=student.auth).status_code == 200, 5, "reactivation")


def test_a_logout_elsewhere_ends_that_session_in_a_process_that_cached_it(
    client: Any, other: Any, student: Actor
) -> None:
    second = ok(client.post(f"{API}/auth/login", json={"email": student.email, "password": student.password}))
    for _ in range(2):  # `other` knows both sessions as live
        ok(other.get(f"{API}/me", headers=student.auth))
        ok(other.get(f"{API}/me", headers={"Authorization": f"Bearer {second['access_token']}"}))
    r = client.post(f"{API}/auth/logout", json={"refresh_token": student.refresh}, headers=student.auth)
    assert r.status_code == 204, r.text
    wait_until(lambda: other.get(f"{API}/me", headers=student.auth).status_code == 401, 5, "the session ended there")
    ok(other.get(f"{API}/me", headers={"Authorization": f"Bearer {second['access_token']}"}))
