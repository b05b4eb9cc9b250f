"""Fixtures for the projection tests.

`settings` is narrowed to a small connection pool: the shared PostgreSQL has max_connections = 100 and the
default test pool (20 + 20 overflow per process) would exhaust it when several test sessions run at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from application.settings import Settings
from tests.conftest import make_settings


@pytest.fixture
def settings(database: str, redis_url: str) -> Settings:
    """Settings for this test's database with a 3-connection pool (at most 6 with overflow)."""
    return make_settings(database, redis_url, pool_size=3)


@pytest.fixture
def followers(prepared: Settings) -> Iterator[threading.Event]:
    """Live followers (the real `Follower` threads) of the three projections these tests look at; fewer
    connections than the `projectors` fixture, which follows every projection."""
    from projections import follower
    from projections.audit_log import AuditLog
    from projections.subjects import Subjects
    from projections.users_directory import UsersDirectory

    stop = threading.Event()
    threads = follower.follow_all(prepared.database_url, [AuditLog(), UsersDirectory(), Subjects()], stop)
    yield stop
    stop.set()
    for t in threads:
        t.join(5)
