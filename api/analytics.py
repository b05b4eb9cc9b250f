"""Admin analytics and exports, all from read models."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal, LiteralString

import msgspec
import psycopg
from litestar import Controller, Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import Parameter
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
from api.services import Services
from application.accounts import Account
from application.clock import Clock
from domain.booking import BookingStatus
from domain.errors import NotFound, ValidationFailed

# metric: (read models, the data per period: p = the period's start, v = its value). Each runs with the named
# parameters interval, frm, to, status (bookings) and currency (money metrics; null: every currency).
METRICS: dict[str, tuple[tuple[str, ...], LiteralString]] = {
    "signups": (
        ("users_directory",),
        "SELECT date_trunc(%(interval)s, registered_at AT TIME ZONE 'UTC') AS p, count(*) AS v FROM users_directory"
        " WHERE registered_at >= %(frm)s AND registered_at < %(to)s GROUP BY 1",
    ),
    "bookings": (
        ("bookings",),
        "SELECT date_trunc(%(interval)s, created_at AT TIME ZONE 'UTC') AS p, count(*) AS v FROM bookings"
        " WHERE created_at >= %(frm)s AND created_at < %(to)s AND (%(status)s::text IS NULL OR status = %(status)s)"
        " GROUP BY 1",
    ),
}
# the money metrics: the signed postings of one ledger account (positive: the platform earned it)
LEDGER_METRICS = {"revenue": "platform_commission", "commission": "platform_commission", "breakage": "breakage"}
LEDGER_SQL: LiteralString = (
    "SELECT date_trunc(%(interval)s, recorded_at AT TIME ZONE 'UTC') AS p, sum(signed) AS v FROM ledger_postings"
    " WHERE account = %(account)s AND recorded_at >= %(frm)s AND recorded_at < %(to)s"
    " AND (%(currency)s::text IS NULL OR currency = %(currency)s) GROUP BY 1"
)
# every period of [from, to) with the metric's value, 0 where it has none (a continuous series)
SERIES_SQL: LiteralString = (
    "WITH data AS ({data}) SELECT s.p, coalesce(d.v, 0) AS v FROM generate_series("
    " date_trunc(%(interval)s, %(frm)s AT TIME ZONE 'UTC'), (%(to)s AT TIME ZONE 'UTC') - interval '1 microsecond',"
    " ('1 ' || %(interval)s)::interval) AS s(p) LEFT JOIN data d USING (p) ORDER BY s.p"
)
METRIC_DOC = (
    "What to count per period: `signups` new accounts (every role); `bookings` lesson requests made in the period"
    " (with `status`: only those now in that status); `revenue` the platform's commission income, as in the"
    " overview (minor units); `commission` the same commission income under its own name; `breakage` the value of"
    " expired, unused credit the platform keeps (minor units). Money metrics sum every currency unless `currency`"
    " names one."
)
BOOKING_STATUSES = tuple(str(s) for s in BookingStatus)
METRIC = Parameter(description=METRIC_DOC)
INTERVAL = Parameter(description="The period: a UTC day, a week from Monday 00:00 UTC, or a calendar month (UTC)")
STATUS = Parameter(
    description=f"metric=bookings only: count bookings now in this status ({', '.join(BOOKING_STATUSES)})"
)
CURRENCY = Parameter(description="Money metrics only: sum this currency alone (ISO 4217, e.g. USD)")
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


OVERVIEW_READ_MODELS = ("users_directory", "tutors", "bookings", "ledger")


def overview_of(conn: Any, now: datetime) -> AnalyticsOverviewOut:
    """Users by role, listed tutors, today's lessons (by start, UTC day), commission revenue, bookings by status
    (GET /admin/analytics/overview and the console's dashboard)."""
    day = datetime.combine(now.astimezone(UTC).date(), time(), UTC)
    roles = {
        r["role"]: int(r["n"])
        for r in conn.execute("SELECT role, count(*) AS n FROM users_directory WHERE NOT deleted GROUP BY role")
    }
    tutors = conn.execute("SELECT count(*) AS n FROM tutors WHERE listed").fetchone()
    today = conn.execute(
        "SELECT count(*) AS n FROM bookings WHERE start_at >= %s AND start_at < %s", (day, day + timedelta(days=1))
    ).fetchone()
    status = {r["status"]: r["n"] for r in conn.execute("SELECT status, count(*) AS n FROM bookings GROUP BY status")}
    revenue = conn.execute(
        "SELECT currency, sum(signed) AS v FROM ledger_postings"
        " WHERE account = 'platform_commission' GROUP BY currency ORDER BY 2 DESC"
    ).fetchall()
    return AnalyticsOverviewOut(
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


Metric = Literal["signups", "bookings", "revenue", "commission", "breakage"]
Interval = Literal["day", "week", "month"]


@dataclass(frozen=True)
class Series:
    """One time series asked for: a metric per interval in [frm, to), checked (422 naming the parameter)."""

    metric: Metric
    interval: Interval
    frm: datetime
    to: datetime
    status: str | None = None
    currency: str | None = None

    def __post_init__(self) -> None:
        if self.to <= self.frm or self.to - self.frm > timedelta(days=3660):
            raise ValidationFailed([("to", "after from, at most ten years later")])
        if self.status is not None and (self.metric != "bookings" or self.status not in BOOKING_STATUSES):
            raise ValidationFailed([("status", f"with metric=bookings only: one of {', '.join(BOOKING_STATUSES)}")])
        if self.currency is not None and (
            self.metric not in LEDGER_METRICS or not re.fullmatch("[A-Z]{3}", self.currency)
        ):
            raise ValidationFailed([("currency", "with a money metric only: an ISO 4217 code such as USD")])

    @property
    def read_models(self) -> tuple[str, ...]:
        return ("ledger",) if self.metric in LEDGER_METRICS else METRICS[self.metric][0]

    def points(self, conn: Any) -> AnalyticsTimeseriesPage:
        """Every period with its value, oldest first (GET /admin/analytics/timeseries and the dashboard's charts)."""
        params = {
            "interval": self.interval,
            "frm": self.frm,
            "to": self.to,
            "status": self.status,
            "currency": self.currency,
        }
        if self.metric in LEDGER_METRICS:
            data = LEDGER_SQL
            params["account"] = LEDGER_METRICS[self.metric]
        else:
            data = METRICS[self.metric][1]
        rows = conn.execute(SERIES_SQL.replace("{data}", data), params).fetchall()
        unit = "minor_units" if self.metric in LEDGER_METRICS else "count"
        points = [AnalyticsPointOut.of(r) for r in rows]
        return AnalyticsTimeseriesPage(points, None, self.metric, self.interval, unit, self.currency)


def export_stream(
    services: Services, actor: Account, dataset: str, fmt: str, filters: dict[str, str], pos: int
) -> Stream:
    """A dataset streamed as CSV or a JSON array, recorded first as an export (Export.Started): the API's
    GET /admin/exports/{dataset} and the console's download."""
    if dataset not in EXPORTS:
        raise NotFound(f"no dataset {dataset!r}; one of {', '.join(EXPORTS)}")
    _name, sql, shape = EXPORTS[dataset]
    recorded = services.exports.record_export(actor, dataset, fmt, filters)
    rows = _rows(services.settings.database_url, sql)
    headers = {
        "X-Projection-Position": str(pos),
        "X-Event-Position": str(recorded),
        "Content-Disposition": f'attachment; filename="{dataset}.{fmt}"',
    }
    if fmt == "csv":
        return Stream(_csv(rows), media_type="text/csv", headers=headers)
    return Stream(_json(rows, shape), media_type="application/json", headers=headers)


class AnalyticsController(Controller):
    """Admins see the business at a glance."""

    path = "/admin"
    guards = ADMIN
    tags = ["admin", "analytics"]
    security = BEARER

    @get("/analytics/overview", sync_to_thread=True)
    def overview(self, request: Request[Account, Any, Any], clock: Clock) -> Response[AnalyticsOverviewOut]:
        """Users by role, active tutors, bookings today (by start), commission revenue, bookings by status."""
        with reading(request, OVERVIEW_READ_MODELS, request.user) as (conn, pos):
            return query(overview_of(conn, clock.now()), pos)

    @get("/analytics/timeseries", sync_to_thread=True)
    def timeseries(
        self,
        request: Request[Account, Any, Any],
        clock: Clock,
        metric: Annotated[Metric, METRIC],
        interval: Annotated[Interval, INTERVAL] = "day",
        status: Annotated[str | None, STATUS] = None,
        currency: Annotated[str | None, CURRENCY] = None,
    ) -> Response[AnalyticsTimeseriesPage]:
        """A metric per UTC day, week (from Monday) or month in [from, to) (default: the last 30 days), every period
        listed (0 where nothing happened), oldest first."""
        to = instant("to", request.query_params.get("to")) or clock.now()
        frm = instant("from", request.query_params.get("from")) or to - timedelta(days=30)
        series = Series(metric, interval, frm, to, status, currency)
        with reading(request, series.read_models, request.user) as (conn, pos):
            return query(series.points(conn), pos)

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
        services: Services,
        dataset: str,
        format: Literal["csv", "json"] = "csv",  # noqa: A002
    ) -> Stream:
        """Stream a dataset (users, bookings, tutors, payments) as CSV with a header row or a JSON array; each export
        is recorded first (Export.Started: who, dataset, format, filters; in GET /admin/events)."""
        if dataset not in EXPORTS:
            raise NotFound(f"no dataset {dataset!r}; one of {', '.join(EXPORTS)}")
        with reading(request, (EXPORTS[dataset][0],), request.user) as (_conn, pos):
            pass
        filters = {k: v for k, v in request.query_params.items() if k != "format"}
        return export_stream(services, request.user, dataset, format, filters, pos)


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
