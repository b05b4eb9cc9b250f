"""The event explorer: the log filtered like GET /admin/events, one aggregate stepped through its versions (its
state after each, as GET /admin/aggregates/{id}/history), and one correlation id followed across every aggregate
its request touched."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from litestar import Request, get
from litestar.response import Template

from api.audit import EventFilter, aggregate_history, events_page
from api.console.render import page
from api.console.session import ADMIN_PAGE
from api.deps import limit_of, reading
from application.audit import Audit

FILTERS = ("aggregate_id", "type", "actor_id", "correlation_id", "from", "to")


@get("/events", guards=ADMIN_PAGE, sync_to_thread=True)
def explorer(request: Request[Any, Any, Any], cursor: str | None = None, limit: int | None = None) -> Template:
    """The log, filtered by aggregate, event type, actor, correlation id and time, a page at a time."""
    q = {name: request.query_params.get(name, "").strip() for name in FILTERS}
    f = EventFilter.parse(
        q["aggregate_id"], q["type"], q["actor_id"], q["correlation_id"], q["from"], q["to"], None, cursor
    )
    n = limit_of(limit or 50)
    with reading(request, ("audit_log",), request.user) as (conn, _):
        found = events_page(conn, f, n, None)
        types = [r["type"] for r in conn.execute("SELECT DISTINCT type FROM audit_log ORDER BY 1").fetchall()]
    return page(request, "events.html", q=q, events=found.items, next_cursor=found.next_cursor, types=types)


@get("/aggregates/{aggregate_id:uuid}", guards=ADMIN_PAGE, sync_to_thread=True)
def aggregate(
    request: Request[Any, Any, Any], audit: Audit, aggregate_id: UUID, version: int | None = None
) -> Template:
    """One aggregate at a version (default: the latest): its events so far, its state after that version, and
    what the version changed; step back and forward one version at a time."""
    with reading(request, ("audit_log",), request.user) as (conn, _):
        h = aggregate_history(conn, audit, aggregate_id, version)
        latest = conn.execute(
            "SELECT max(aggregate_version) AS v FROM audit_log WHERE aggregate_id = %s", (aggregate_id,)
        ).fetchone()
    before = audit.state_at(aggregate_id, h.version - 1)[1] if h.version > 1 else {}
    changed = sorted(
        k for k in set(h.state) | set(before) if h.state.get(k) != before.get(k) and k not in ("version", "modified_on")
    )
    return page(
        request,
        "aggregate.html",
        h=h,
        latest=int(latest["v"]) if latest and latest["v"] else h.version,
        state=json.dumps(h.state, indent=2, sort_keys=True, default=str),
        changed=changed,
    )


@get("/correlations/{correlation_id:str}", guards=ADMIN_PAGE, sync_to_thread=True)
def correlation(request: Request[Any, Any, Any], correlation_id: str) -> Template:
    """Every event one request (or the process it started) recorded, grouped by the aggregates it touched."""
    f = EventFilter(correlation_id=correlation_id)
    with reading(request, ("audit_log",), request.user) as (conn, _):
        found = events_page(conn, f, 100, None)
    touched: dict[UUID, list[Any]] = {}
    for e in found.items:
        touched.setdefault(e.aggregate_id, []).append(e)
    return page(request, "correlation.html", correlation_id=correlation_id, touched=touched, more=found.next_cursor)


PAGES = [explorer, aggregate, correlation]
