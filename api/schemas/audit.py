"""Audit (the event log, an aggregate's history) and admin analytics and exports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar.params import KwargDefinition

from api.schemas.common import MoneyOut


class AuditEventOut(msgspec.Struct):
    """One recorded event with its metadata; `data` is the event's own fields (never secrets)."""

    position: int
    aggregate_id: UUID
    aggregate_version: int
    type: str
    recorded_at: datetime | None
    actor_id: UUID | None
    actor_role: str | None
    correlation_id: str | None
    causation_id: str | None
    data: dict[str, Any]

    @classmethod
    def of(cls, r: dict[str, Any]) -> AuditEventOut:
        """From an audit_log row."""
        return cls(
            position=r["position"],
            aggregate_id=r["aggregate_id"],
            aggregate_version=r["aggregate_version"],
            type=r["type"],
            recorded_at=r["recorded_at"],
            actor_id=r["actor_id"],
            actor_role=r["actor_role"],
            correlation_id=r["correlation_id"],
            causation_id=r["causation_id"],
            data=r["data"],
        )


class AuditEventPage(msgspec.Struct):
    """A page of the event log, in log order."""

    items: list[AuditEventOut]
    next_cursor: str | None


class AggregateHistoryOut(msgspec.Struct):
    """Every event of one aggregate up to `version`, and its state (its own fields) at that version."""

    aggregate_id: UUID
    aggregate_type: str
    version: int
    events: list[AuditEventOut]
    state: dict[str, Any]


class AnalyticsUsersByRole(msgspec.Struct):
    """Accounts not deleted, per role."""

    student: int
    tutor: int
    admin: int
    finance: int


class AnalyticsOverviewOut(msgspec.Struct):
    """The business at a glance: users, listed tutors, today's lessons (by start, UTC day), commission earned."""

    users_by_role: AnalyticsUsersByRole
    active_tutors: int
    bookings_today: int
    revenue: MoneyOut
    bookings_by_status: dict[str, int]


class AnalyticsPointOut(msgspec.Struct):
    """A metric's value over the period (UTC day, week or month) starting at `period_start`."""

    period_start: datetime
    value: int

    @classmethod
    def of(cls, r: dict[str, Any]) -> AnalyticsPointOut:
        """From a (p: the period's naive UTC start, v) row."""
        return cls(r["p"].replace(tzinfo=UTC), int(r["v"]))


class AnalyticsTimeseriesPage(msgspec.Struct):
    """A metric per period, oldest first, every period of the span (0 where nothing happened), all in one page
    (`next_cursor` is null); `unit` says whether values are counts or minor units (of `currency` when one was asked
    for)."""

    items: list[AnalyticsPointOut]
    next_cursor: str | None
    metric: Literal["signups", "bookings", "revenue", "commission", "breakage"]
    interval: Literal["day", "week", "month"]
    unit: Literal["count", "minor_units"]
    currency: str | None


class UserExportRow(msgspec.Struct):
    """A row of the users export."""

    id: UUID
    email: str
    full_name: str
    role: str
    is_active: bool
    deleted: bool
    timezone: str
    language: str
    currency: str
    registered_at: datetime


class TutorExportRow(msgspec.Struct):
    """A row of the tutors export: the hourly rate in minor units of `currency`, both null until set."""

    id: UUID
    full_name: str
    email: str
    status: str
    hourly_amount: int | None
    currency: str | None
    rating_avg: float | None
    rating_count: int
    completeness: int
    submitted_at: datetime | None


class BookingExportRow(msgspec.Struct):
    """A row of the bookings export."""

    id: UUID
    student_id: UUID
    tutor_id: UUID
    subject_id: UUID
    start_at: datetime
    end_at: datetime
    duration_minutes: int
    status: str
    created_at: datetime
    cancelled_by: str | None
    refunded_minutes: int | None
    forfeited_minutes: int | None


class PaymentExportRow(msgspec.Struct):
    """A row of the payments export: a journal entry and its payment-clearing posting (minor units)."""

    entry_id: str
    position: int
    recorded_at: datetime
    event_type: str
    description: str
    amount: int
    currency: str


ExportRow = UserExportRow | TutorExportRow | BookingExportRow | PaymentExportRow
# The JSON export, a streamed array. Litestar makes named components of objects only: the title names it inline.
ExportRows = Annotated[
    list[ExportRow],
    KwargDefinition(title="AdminExportRows", description="The dataset's rows, all of the dataset's one shape"),
]
