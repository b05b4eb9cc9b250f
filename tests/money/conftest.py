"""Fixtures of the money tests: settings frugal with connections (the PostgreSQL server may be shared), a
localstripe server for the session, and cleanup of the helpers' cached connections."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import psycopg
import pytest

from application.settings import Settings
from tests.money.support import WEBHOOK_SECRET, close_helpers, connect
from tests.support.db import PG_URL
from tests.support.system import make_settings


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The machine's PostgreSQL (127.0.0.1:5432): wait for a free connection slot rather than start another."""
    with connect(PG_URL, connect_timeout=5) as c:
        c.execute("SELECT 1")
    return PG_URL


@pytest.fixture
def database(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for this test, dropped afterwards (connects retried while the server is full)."""
    name = "tc_test_money_" + secrets.token_hex(5)
    with connect(pg_admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = pg_admin_url.rsplit("/", 1)[0] + "/" + name
    yield url
    from application.store import close_all

    close_helpers()
    close_all()
    with contextlib.suppress(psycopg.Error), connect(pg_admin_url, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(database: str, redis_url: str) -> Settings:
    """The conftest's settings with a small event-store pool, and Stripe pointed at nothing yet."""
    return make_settings(database, redis_url, pool_size=3, stripe_webhook_secret=WEBHOOK_SECRET)


@pytest.fixture(autouse=True)
def _close_helper_connections() -> Iterator[None]:
    yield
    close_helpers()
