"""The dashboard: the overview figures and charts of the analytics time series (sign-ups, bookings by status,
revenue, commission, breakage) per day, week or month over a date range -- the same functions as
/admin/analytics -- and the exports (/admin/exports), streamed and recorded as the API's are."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, get_args

from litestar import Request, get
from litestar.response import Redirect, Stream, Template

from api.analytics import EXPORTS, OVERVIEW_READ_MODELS, Interval, Series, export_stream, overview_of
from api.console.render import page
from api.console.session import ADMIN_PAGE, STAFF_PAGE
from api.deps import reading
from api.services import Services
from application.accounts import Account
from application.clock import Clock
from domain.booking import BookingStatus
from domain.errors import ValidationFailed

# chart name: (title, kind, [(label, metric, bookings status)])
CHARTS: dict[str, tuple[str, str, list[tuple[str, Any, str | None]]]] = {
    "signups": ("Sign-ups", "line", [("accounts", "signups", None)]),
    "bookings": ("Bookings by status", "bar", [(str(s), "bookings", str(s)) for s in BookingStatus]),
    "money": (
        "Revenue, commission and breakage (minor units)",
        "line",
        [("revenue", "revenue", None), ("commission", "commission", None), ("breakage", "breakage", None)],
    ),
}


@get("/", guards=STAFF_PAGE, sync_to_thread=True)
def dashboard(request: Request[Account, Any, Any], clock: Clock, interval: Interval = "day") -> Template | Redirect:
    """Admins: the overview and the charts over [from, to) (default: the last 30 days). Finance: their pages."""
    if request.user.role != "admin":
        return Redirect("/console/finance", status_code=303)
    now = clock.now()
    last = _day("to", request.query_params.get("to"))
    to = last + timedelta(days=1) if last else now
    frm = _day("from", request.query_params.get("from")) or to - timedelta(days=30)
    charts: dict[str, Any] = {}
    with reading(request, OVERVIEW_READ_MODELS, request.user) as (conn, _):
        overview = overview_of(conn, now)
        for name, (title, kind, lines) in CHARTS.items():
            series = [
                (label, Series(metric, interval, frm, to, status).points(conn)) for label, metric, status in lines
            ]
            labels = [_label(p.period_start, interval) for p in series[0][1].items]
            charts[name] = {
                "title": title,
                "kind": kind,
                "labels": labels,
                "lines": [{"label": label, "values": [p.value for p in s.items]} for label, s in series],
            }
    return page(
        request,
        "dashboard.html",
        overview=overview,
        charts=charts,
        interval=interval,
        intervals=get_args(Interval),
        frm=frm.date().isoformat(),
        to=(to - timedelta(microseconds=1)).date().isoformat(),
        datasets=list(EXPORTS),
    )


def _day(name: str, raw: str | None) -> datetime | None:
    """A date input (YYYY-MM-DD, a UTC day's start); 422 naming the field otherwise."""
    if not raw:
        return None
    try:
        return datetime.combine(date.fromisoformat(raw), time(), UTC)
    except ValueError:
        raise ValidationFailed([(name, "a date (YYYY-MM-DD)")]) from None


def _label(start: datetime, interval: str) -> str:
    return start.strftime("%Y-%m") if interval == "month" else start.strftime("%Y-%m-%d")


@get("/exports/{dataset:str}", guards=ADMIN_PAGE, sync_to_thread=True)
def export(
    request: Request[Account, Any, Any],
    services: Services,
    dataset: str,
    format: Literal["csv", "json"] = "csv",  # noqa: A002
) -> Stream:
    """A dataset downloaded from the page: GET /admin/exports/{dataset}'s stream, recorded as an export."""
    name = EXPORTS[dataset][0] if dataset in EXPORTS else "users_directory"
    with reading(request, (name,), request.user) as (_conn, pos):
        pass
    return export_stream(services, request.user, dataset, format, {}, pos)


PAGES = [dashboard, export]
