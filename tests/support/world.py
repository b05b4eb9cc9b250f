"""A world to test in, made through the application layer: subjects, tutors driven to approved, and credit
granted the way a paid package's webhook grants it."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from application.accounts import Account
from application.clock import Clock
from application.money import Money
from application.settings import Settings

FAR = datetime(2031, 1, 1, tzinfo=UTC)  # credit that never expires within these tests
ALL_WEEK = [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]


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
