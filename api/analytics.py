"""Admin analytics and exports, all from read models."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal, LiteralString

import msgspec
import psycopg
from litestar import Controller, Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.response import Stream

from api import csvout
from api.deps import query, reading
from api.guards import ADMIN, BEARER
from api.params import instant
from api.schemas.audit import (
    AnalyticsOverviewOut,
    AnalyticsPointOut,
    AnalyticsTimeseriesPage,
    AnalyticsUsersByRole,
    BookingExportRow,
    ExportRow,
    ExportRows,
    PaymentExportRow,
    TutorExportRow,
    UserExportRow,
)
from api.schemas.common import MoneyOut
from application.clock import Clock
from application.identity import Account
from application.settings import Settings
from domain.errors import NotFound, ValidationFailed

METRICS = {
    "bookings": (
        "SELECT date_trunc(%s, created_at AT TIME ZONE 'UTC') AS p, count(*) AS v FROM bookings"
        " WHERE created_at >= %s AND created_at < %s GROUP BY 1 ORDER BY 1",
        ("bookings",),
    ),
    "signups": (
        "SELECT date_trunc(%s, registered_at AT TIME ZONE 'UTC') AS p, count(*) AS v FROM users_directory"
        " WHERE registered_at >= %s AND registered_at < %s GROUP BY 1 ORDER BY 1",
        ("users_directory",),
    ),
    "revenue": (
        "SELECT date_trunc(%s, recorded_at AT TIME ZONE 'UTC') AS p, sum(signed) AS v FROM ledger_postings"
        " WHERE account = 'platform_commission' AND recorded_at >= %s AND recorded_at < %s GROUP BY 1"
        " ORDER BY 1",
        ("ledger",),
    ),
}
# dataset: (read model, query, row shape); the query's column names are the row shape's fields
EXPORTS: dict[str, tuple[str, LiteralString, type[ExportRow]]] = {
    "users": (
        "users_directory",
        "SELECT user_id AS id, email, full_name, role, is_active, deleted, timezone,"
        " language, currency, registered_at FROM users_directory ORDER BY registered_position",
        UserExportRow,
    ),
    "tutors": (
        "tutors",
        "SELECT tutor_id AS id, full_name, email, status, hourly_amount, currency, rating_avg,"
        " rating_count, completeness, submitted_at FROM tutors ORDER BY tutor_id",
        TutorExportRow,
    ),
    "bookings": (
        "bookings",
        "SELECT booking_id AS id, student_id, tutor_id, subject_id, start_at, end_at,"
        " duration_minutes, status, created_at, cancelled_by, refunded_minutes, forfeited_minutes"
        " FROM bookings ORDER BY created_at, booking_id",
        BookingExportRow,
    ),
    "payments": (
        "ledger",
        "SELECT e.entry_id, e.position, e.recorded_at, e.event_type, e.description, p.amount,"
        " p.currency FROM ledger_entries e JOIN ledger_postings p ON p.position = e.position AND"
        " p.account = 'payment_clearing' ORDER BY e.position",
        PaymentExportRow,
    ),
}

CSV_BODY = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, description="a header row, then one row per item"))


@dataclass
class ExportOperation(Operation):
    """The export's OpenAPI operation: its 200 is CSV or a JSON array, as `format` asks. Litestar gives a response
    one media type, so the JSON one comes from the route's `responses` (which also names the row shapes) and the
    CSV one is added here."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            ok.content = {"text/csv": CSV_BODY, **(ok.content or {})}


class AnalyticsController(Controller):
    """Admins see the business at a glance."""

    path = "/admin"
    guards = ADMIN
    tags = ["admin", "analytics"]
    security = BEARER

    @get("/analytics/overview", sync_to_thread=True)
    def overview(self, request: Request[Account, Any, Any], clock: Clock) -> Response[AnalyticsOverviewOut]:
        """Users by role, active tutors, bookings today (by start), commission revenue, bookings by status."""
        actor = request.user
        now = clock.now()
        day = datetime.combine(now.astimezone(UTC).date(), time(), UTC)
        names = ("users_directory", "tutors", "bookings", "ledger")
        with reading(request, names, actor) as (conn, pos):
            roles = {
                r["role"]: int(r["n"])
                for r in conn.execute(
                    "SELECT role, count(*) AS n FROM users_directory WHERE NOT deleted GROUP BY role"
                ).fetchall()
            }
            tutors = conn.execute("SELECT count(*) AS n FROM tutors WHERE listed").fetchone()
            today = conn.execute(
                "SELECT count(*) AS n FROM bookings WHERE start_at >= %s AND start_at < %s",
                (day, day + timedelta(days=1)),
            ).fetchone()
            status = {
                r["status"]: r["n"]
                for r in conn.execute("SELECT status, count(*) AS n FROM bookings GROUP BY status").fetchall()
            }
            revenue = conn.execute(
                "SELECT currency, sum(signed) AS v FROM ledger_postings"
                " WHERE account = 'platform_commission' GROUP BY currency ORDER BY 2 DESC"
            ).fetchall()
        body = AnalyticsOverviewOut(
            users_by_role=AnalyticsUsersByRole(
                student=roles.get("student", 0),
                tutor=roles.get("tutor", 0),
                admin=roles.get("admin", 0),
                finance=roles.get("finance", 0),
            ),
            active_tutors=int(tutors["n"]) if tutors else 0,
            bookings_today=int(today["n"]) if today else 0,
            revenue=MoneyOut(int(revenue[0]["v"]), revenue[0]["currency"]) if revenue else MoneyOut(0, "USD"),
            bookings_by_status=status,
        )
        return query(body, pos)

    @get("/analytics/timeseries", sync_to_thread=True)
    def timeseries(
        self,
        request: Request[Account, Any, Any],
        clock: Clock,
        metric: Literal["bookings", "revenue", "signups"],
        interval: Literal["day", "week", "month"] = "day",
    ) -> Response[AnalyticsTimeseriesPage]:
        """A metric per day, week or month in [from, to) (default: the last 30 days)."""
        actor = request.user
        now = clock.now()
        to = instant("to", request.query_params.get("to")) or now
        frm = instant("from", request.query_params.get("from")) or to - timedelta(days=30)
        if to <= frm or to - frm > timedelta(days=3660):
            raise ValidationFailed([("to", "after from, at most ten years later")])
        sql, names = METRICS[metric]
        with reading(request, names, actor) as (conn, pos):
            rows = conn.execute(sql, (interval, frm, to)).fetchall()
        return query(AnalyticsTimeseriesPage([AnalyticsPointOut.of(r) for r in rows], None), pos)

    @get(
        "/exports/{dataset:str}",
        sync_to_thread=True,
        operation_class=ExportOperation,
        responses={
            200: ResponseSpec(
                ExportRows,
                generate_examples=False,
                description="The dataset as CSV (`format=csv`, the default) or a JSON array of its rows",
            )
        },
    )
    def export(
        self,
        request: Request[Account, Any, Any],
        settings: Settings,
        dataset: str,
        format: Literal["csv", "json"] = "csv",  # noqa: A002
    ) -> Stream:
        """Stream a dataset (users, bookings, tutors, payments) as CSV with a header row or a JSON array."""
        actor = request.user
        if dataset not in EXPORTS:
            raise NotFound(f"no dataset {dataset!r}; one of {', '.join(EXPORTS)}")
        name, sql, shape = EXPORTS[dataset]
        with reading(request, (name,), actor) as (_conn, pos):
            pass
        rows = _rows(settings.database_url, sql)
        headers = {
            "X-Projection-Position": str(pos),
            "Content-Disposition": f'attachment; filename="{dataset}.{format}"',
        }
        if format == "csv":
            return Stream(_csv(rows), media_type="text/csv", headers=headers)
        return Stream(_json(rows, shape), media_type="application/json", headers=headers)


def _rows(dsn: str, sql: LiteralString) -> Iterator[tuple[list[str], tuple[Any, ...]]]:
    # instants in UTC (the CSV writer and msgspec then write them with "Z")
    with psycopg.connect(dsn, options="-c TimeZone=UTC") as conn, conn.cursor(name="export") as cur:
        cur.itersize = 2000
        cur.execute(sql)
        cols: list[str] = []
        for row in cur:
            if not cols:
                cols = [d.name for d in cur.description or []]
            yield cols, row


def _json(rows: Iterator[tuple[list[str], tuple[Any, ...]]], shape: type[ExportRow]) -> Iterator[bytes]:
    yield b"["
    first = True
    for cols, row in rows:
        yield (b"" if first else b",") + msgspec.json.encode(shape(**dict(zip(cols, row, strict=True))))
        first = False
    yield b"]"


def _csv(rows: Iterator[tuple[list[str], tuple[Any, ...]]]) -> Iterator[bytes]:
    def lines() -> Iterator[Any]:
        first = True
        for cols, row in rows:
            if first:
                yield cols
                first = False
            yield row

    return csvout.stream(None, lines())
