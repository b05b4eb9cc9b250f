"""Helpers shared by the booking tests: approved tutors, direct credit grants (what a paid package does), a manual
business clock, raw looks at the event log and small HTTP assertions."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from application.clock import Clock
from application.identity import Account
from application.money import Money
from application.settings import Settings
from projections import generations
from projections.runner import EVENTS_TABLE
from tests.conftest import wait_until  # noqa: F401 - one poller for every test package
from tests.http import PROBLEMS, media_type, ok, problem, where  # noqa: F401  (re-exported for this folder's tests)

API = "/api/v1"
FAR = datetime(2031, 1, 1, tzinfo=UTC)  # credit that never expires within these tests
ALL_WEEK = [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]


def z(t: datetime) -> str:
    """RFC 3339 UTC with a Z."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


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


def make_subject(settings: Settings) -> str:
    from application.catalog import Catalog

    subject, _ = Catalog(settings).create_subject(f"Maths {secrets.token_hex(3)}", "science")
    return str(subject["id"])


def approve_tutor(
    settings: Settings,
    tutor_id: UUID,
    *,
    subject_id: str | None = None,
    timezone: str = "UTC",
    weekly: list[dict[str, Any]] | None = None,
    auto_confirm: bool = False,
    min_notice_minutes: int = 0,
    amount: int = 6000,
    currency: str = "USD",
    clock: Clock | None = None,
    tutoring: Any = None,
) -> tuple[str, int]:
    """Drive a tutor's profile to approved (four builder steps = 80 %, submit, approve); (subject id, position)."""
    from application.tutoring import Tutoring

    subject_id = subject_id or make_subject(settings)
    tutoring = tutoring or Tutoring(settings, clock)
    me = Account(tutor_id, "tutor")
    view, _ = tutoring.update_profile(
        me,
        {
            "personal": {"bio": "I teach maths and physics.", "location": "Berlin", "languages": ["en"]},
            "experience": {"years": 7, "education": "MSc", "certifications": []},
            "subjects": [subject_id],
            "hourly_rate": {"amount": amount, "currency": currency},
            "availability": {"timezone": timezone, "weekly": weekly or ALL_WEEK, "blocks": [], "openings": []},
            "auto_confirm": auto_confirm,
            "min_notice_minutes": min_notice_minutes,
        },
    )
    assert view["completeness"] == 80, view
    tutoring.submit(me)
    view, position = tutoring.decide(tutor_id, "approve")
    assert view["status"] == "approved", view
    return subject_id, position


def grant(
    app: Money,
    student_id: UUID,
    tutor_id: UUID,
    minutes: int,
    amount: int,
    expires_at: datetime = FAR,
    currency: str = "USD",
) -> tuple[str, int]:
    """Grant a credit lot the way the payment webhook does; (lot id, position)."""
    lot = str(uuid.uuid4())
    account = app.settlement.account(student_id)
    assert account.grant(lot, lot, str(tutor_id), minutes, amount, currency, expires_at)
    return lot, app.record(account)


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
