"""Fixtures of the booking tests: databases cloned from a prepared template (dropped in the background), small
connection pools (the shared PostgreSQL has 100 connections for every test run on the machine), and a world of
an admin, an approved tutor and students with credit, reached over HTTP."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest

from application.money import Money
from application.settings import Settings
from tests.bookings.support import API, approve_tutor, grant, ok, z
from tests.conftest import bearer, drop_database, make_database, make_settings, register, staff_login, wait_http


@pytest.fixture(scope="session")
def bookings_template(pg_admin_url: str, redis_server: str) -> Iterator[str]:
    """A database with schema, events table and projection tables, made once per session."""
    from workers.processes import prepare

    url = make_database(pg_admin_url)
    prepare(make_settings(url, f"{redis_server}/9"))
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture(scope="session")
def drop_in_background(pg_admin_url: str) -> Iterator[Callable[[str], None]]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drop-booking-db")
    yield lambda url: pool.submit(drop_database, pg_admin_url, url)  # type: ignore[func-returns-value]
    pool.shutdown(wait=True)


@pytest.fixture
def database(pg_admin_url: str, bookings_template: str, drop_in_background: Callable[[str], None]) -> Iterator[str]:
    """Overrides tests/conftest.py's: a fresh database cloned from the prepared template."""
    url = _clone(pg_admin_url, bookings_template)
    yield url
    from application.store import close_all

    close_all()
    drop_in_background(url)


@pytest.fixture
def settings(database: str, redis_url: str) -> Settings:
    """Overrides tests/conftest.py's: the same, with smaller pools."""
    return make_settings(database, redis_url, pool_size=3)


def _clone(pg_admin_url: str, template_url: str) -> str:
    name = "tc_test_" + secrets.token_hex(6)
    template = template_url.rsplit("/", 1)[1].split("?", 1)[0]
    with psycopg.connect(pg_admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    base, _, rest = pg_admin_url.rpartition("/")
    query = ("?" + rest.split("?", 1)[1]) if "?" in rest else ""
    return f"{base}/{name}{query}"


@pytest.fixture(scope="module")
def shared_settings(
    pg_admin_url: str, bookings_template: str, drop_in_background: Callable[[str], None], redis_server: str
) -> Iterator[Settings]:
    """One database (and Redis database 11) for a whole module whose tests keep apart by using tutors and
    students of their own; saves starting the app and its projectors for every test."""
    import redis

    from workers.processes import prepare

    url = _clone(pg_admin_url, bookings_template)
    redis_url = f"{redis_server}/11"
    redis.Redis.from_url(redis_url).flushdb()
    settings = make_settings(url, redis_url, pool_size=3)
    prepare(settings)
    yield settings
    from application.store import close_all

    close_all()
    drop_in_background(url)


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

    from tests.conftest import free_port, server_env, spawn, stop_process

    port = free_port()
    log = tmp_path_factory.mktemp("api") / "api.log"
    proc = spawn(["api", "--host", "127.0.0.1", "--port", str(port)], server_env(shared_settings), log)
    root = f"http://127.0.0.1:{port}"
    wait_http(root, proc, log)
    yield root
    stop_process(proc)


@dataclass
class User:
    id: UUID
    headers: dict[str, str]
    email: str = ""


@dataclass
class World:
    """An HTTP client with an admin, one approved tutor and students; `pos` is the last event position seen."""

    client: Any
    settings: Settings
    admin: User
    tutor: User
    subject_id: str
    students: list[User] = field(default_factory=list)
    pos: int = 0

    def seen(self, r: Any) -> Any:
        raw = r.headers.get("X-Event-Position")
        if raw:
            self.pos = max(self.pos, int(raw))
        return r

    def after(self, headers: dict[str, str]) -> dict[str, str]:
        return {**headers, "X-Min-Position": str(self.pos)}

    def get(self, user: User, path: str, **kw: Any) -> Any:
        return self.client.get(API + path, headers=self.after(user.headers), **kw)

    def post(self, user: User, path: str, body: Any = None, **kw: Any) -> Any:
        return self.seen(
            self.client.post(API + path, json=body if body is not None else {}, headers=user.headers, **kw)
        )

    def set_clock(self, when: datetime) -> None:
        ok(self.client.put(API + "/admin/test-clock", json={"now": z(when)}, headers=self.admin.headers))

    def book(self, student: User, start: datetime, minutes: int = 60, tutor: User | None = None) -> Any:
        return self.post(
            student,
            "/bookings",
            {"tutor_id": str((tutor or self.tutor).id), "subject_id": self.subject_id, "start": z(start),
             "duration_minutes": minutes, "note": "algebra"},
        )  # fmt: skip

    def student(self, minutes: int = 600, tutor: User | None = None) -> User:
        body = register(self.client, "student")
        u = User(UUID(body["user"]["id"]), bearer(body), body["user"]["email"])
        if minutes:
            _, p = grant(Money(self.settings), u.id, (tutor or self.tutor).id, minutes, minutes * 100)
            self.pos = max(self.pos, p)
        self.students.append(u)
        return u

    def new_tutor(self, **profile: Any) -> User:
        body = register(self.client, "tutor")
        u = User(UUID(body["user"]["id"]), bearer(body), body["user"]["email"])
        _, p = approve_tutor(self.settings, u.id, subject_id=self.subject_id, **profile)
        self.pos = max(self.pos, p)
        return u


def make_world(client: Any, settings: Settings, now: datetime, **profile: Any) -> World:
    """An admin, one approved tutor (profile keywords as `approve_tutor`'s) and business time set to `now`."""
    admin_tokens = staff_login(client, settings)
    admin = User(UUID(int=0), bearer(admin_tokens), admin_tokens["email"])
    body = register(client, "tutor")
    tutor = User(UUID(body["user"]["id"]), bearer(body), body["user"]["email"])
    subject_id, pos = approve_tutor(settings, tutor.id, **profile)
    w = World(client, settings, admin, tutor, subject_id, pos=pos)
    w.set_clock(now)
    return w
