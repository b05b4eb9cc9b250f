"""Helpers of the booking tests: a world of an admin, an approved tutor and students with credit reached over HTTP,
a manual business clock, raw looks at the event log and small HTTP assertions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from application.clock import Clock
from application.money import Money
from application.settings import Settings
from projections import generations
from projections.runner import EVENTS_TABLE
from tests.support.api import (
    bearer,
    register,
    staff_login,
    z,
)
from tests.support.http import PROBLEMS, media_type, ok, problem, where  # noqa: F401  (re-exported for this folder's tests)
from tests.support.system import wait_until  # noqa: F401 - one poller for every test package
from tests.support.world import approve_tutor, grant

API = "/api/v1"


def parse(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


class ManualClock(Clock):
    """Business time that moves only when the test moves it."""

    def __init__(self, start: datetime) -> None:
        super().__init__()
        self.t = start

    def now(self) -> datetime:
        return self.t

    def set(self, when: datetime) -> None:
        self.t = when

    def advance(self, delta: timedelta) -> None:
        self.t = self.t + delta


def active_generation(dsn: str, name: str) -> int:
    with psycopg.connect(dsn) as conn:
        gen = generations.active_generation(conn, name)
    assert gen is not None, f"projection {name} has no active generation"
    return gen[0]


def scalar(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def rows(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(sql, params).fetchall())


def head(dsn: str) -> int:
    return int(scalar(dsn, f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}"))


def events_of(dsn: str, aggregate_id: Any) -> list[str]:
    """Event types (`Booking.Confirmed`) of one aggregate, in order."""
    return [
        str(r[0]).rsplit(":", 1)[-1]
        for r in rows(
            dsn,
            f"SELECT topic FROM {EVENTS_TABLE} WHERE originator_id = %s ORDER BY originator_version",
            (aggregate_id,),
        )
    ]


# ------------------------------------------------------------------------------------------------- HTTP


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
