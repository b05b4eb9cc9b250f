"""Actors for the HTTP tests: an admin and a finance account made the way the CLI makes them, and a student and
a tutor who registered through the API."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from application.settings import Settings
from tests.api.helpers import API, Actor, ok, signup
from tests.conftest import drop_database, make_database, make_settings, staff_login


@pytest.fixture(scope="session")
def prepared_template(pg_admin_url: str, redis_server: str) -> Iterator[str]:
    """A database with the schema, events table and projection tables in place, made once per session."""
    from workers.processes import prepare

    url = make_database(pg_admin_url)
    prepare(make_settings(url, f"{redis_server}/9"))  # closes its pools: nobody stays connected to the template
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture(scope="session")
def drop_later(pg_admin_url: str) -> Iterator[Callable[[str], None]]:
    """Drop test databases on a background thread (a DROP DATABASE waits for a checkpoint, seconds on a busy
    server); the session's end waits for them all."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drop-test-db")

    def later(url: str) -> None:
        pool.submit(drop_database, pg_admin_url, url)

    yield later
    pool.shutdown(wait=True)


@pytest.fixture
def database(pg_admin_url: str, prepared_template: str, drop_later: Callable[[str], None]) -> Iterator[str]:
    """Overrides tests/conftest.py's: a fresh database per test, cloned from the prepared template (about a
    second faster than an empty one plus migrations). `prepared` still runs `prepare`, which finds it done."""
    name = "tc_test_" + secrets.token_hex(6)
    template = prepared_template.rsplit("/", 1)[1].split("?", 1)[0]
    with psycopg.connect(pg_admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    base, _, rest = pg_admin_url.rpartition("/")
    query = ("?" + rest.split("?", 1)[1]) if "?" in rest else ""
    url = f"{base}/{name}{query}"
    yield url
    from application.store import close_all

    close_all()
    drop_later(url)


def staff(client: Any, settings: Settings, role: str) -> Actor:
    tokens = staff_login(client, settings, role)
    me = ok(client.get(f"{API}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}))
    assert me["role"] == role, me
    return Actor(me["id"], me["email"], role, tokens["access_token"], tokens["refresh_token"])


@pytest.fixture
def admin(client: Any, prepared: Settings) -> Actor:
    return staff(client, prepared, "admin")


@pytest.fixture
def finance(client: Any, prepared: Settings) -> Actor:
    return staff(client, prepared, "finance")


@pytest.fixture
def student(client: Any) -> Actor:
    return signup(client, "student", full_name="Stu Dent")[0]


@pytest.fixture
def tutor(client: Any) -> Actor:
    return signup(client, "tutor", full_name="Tu Tor")[0]
