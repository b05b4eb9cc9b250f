"""Fixtures of the booking tests: one database (cloned from the session's prepared template), app, projector
threads and API process for a whole module, whose tests keep apart by using tutors and students of their own; small
connection pools (the shared PostgreSQL has 100 connections for every test run on the machine)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from application.settings import Settings
from tests.support.db import clone_database
from tests.support.system import make_settings, server_env, spawn, stop_process
from workers.embedded import free_port, wait_http


@pytest.fixture(scope="module")
def shared_settings(
    pg_admin_url: str, prepared_template: str, drop_later: Callable[[str], None], redis_server: str
) -> Iterator[Settings]:
    """One database (and Redis database 11) for a whole module whose tests keep apart by using tutors and
    students of their own; saves starting the app and its projectors for every test."""
    import redis

    from workers.processes import prepare

    url = clone_database(pg_admin_url, prepared_template)
    redis_url = f"{redis_server}/11"
    redis.Redis.from_url(redis_url).flushdb()
    settings = make_settings(url, redis_url, pool_size=3)
    prepare(settings)
    yield settings
    from application.store import close_all

    close_all()
    drop_later(url)


@pytest.fixture(scope="module")
def shared_projectors(shared_settings: Settings) -> Iterator[None]:
    """The real projection followers, in this process, for a whole module."""
    import threading

    from projections import all_projections, follower

    stop = threading.Event()
    threads = follower.follow_all(shared_settings.database_url, all_projections(), stop)
    yield
    stop.set()
    for t in threads:
        t.join(5)


@pytest.fixture(scope="module")
def shared_client(shared_settings: Settings, shared_projectors: None) -> Iterator[Any]:
    """The real app behind TestClient, for a whole module."""
    from litestar.testing import TestClient

    from api.app import create_app

    with TestClient(create_app(shared_settings), base_url="http://testserver.local", timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def shared_live_server(
    shared_settings: Settings, shared_projectors: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real `tutorconnect api` process (granian) for a whole module (as tests/conftest.py's live_server)."""
    port = free_port()
    log = tmp_path_factory.mktemp("api") / "api.log"
    proc = spawn(["api", "--host", "127.0.0.1", "--port", str(port)], server_env(shared_settings), log)
    root = f"http://127.0.0.1:{port}"
    wait_http(root, proc, log)
    yield root
    stop_process(proc)
