"""Audit: the event log with filters, and one aggregate's history and state at a version."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get

from api.deps import decode_cursor, encode_cursor, limit_of, query, reading
from api.guards import ADMIN, BEARER
from api.schemas.audit import AggregateHistoryOut, AuditEventOut, AuditEventPage
from application.accounts import Account
from application.audit import Audit
from domain.errors import NotFound, ValidationFailed

COLUMNS = (
    "position, aggregate_id, aggregate_version, type, recorded_at, actor_id, actor_role, correlation_id,"
    " causation_id, data"
)


def _uuid(name: str, raw: str | None) -> UUID | None:
    if not raw:
        return None
    try:
        return UUID(raw)
    except ValueError:
        raise ValidationFailed([(name, "a UUID")]) from None


class EventFilter(msgspec.Struct, frozen=True):
    """GET /admin/events's filters (the console's explorer uses the same), each optional."""

    aggregate_id: UUID | None = None
    type: str | None = None
    actor_id: UUID | None = None
    correlation_id: str | None = None
    since: datetime | None = None
    to: datetime | None = None
    after_position: int = 0

    @classmethod
    def parse(
        cls,
        aggregate_id: str | None,
        type: str | None,  # noqa: A002
        actor_id: str | None,
        correlation_id: str | None,
        since: str | None,
        to: datetime | str | None,
        after_position: int | None,
        cursor: str | None = None,
    ) -> EventFilter:
        """From query parameters: 422 naming the parameter for a bad UUID, instant or cursor (a cursor continues
        after the position it holds)."""
        return cls(
            aggregate_id=_uuid("aggregate_id", aggregate_id),
            type=type or None,
            actor_id=_uuid("actor_id", actor_id),
            correlation_id=correlation_id or None,
            since=_instant("from", since),
            to=to if isinstance(to, datetime) else _instant("to", to),
            after_position=max(after_position or 0, decode_cursor(cursor, int) or 0),
        )


def _instant(name: str, raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed([(name, "an RFC 3339 instant")]) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def events_page(conn: Any, f: EventFilter, n: int, cursor: str | None) -> AuditEventPage:
    """A page of the audit log in log order, filtered by `f`."""
    where: list[str] = ["true"]
    params: list[Any] = []
    for col, value in (
        ("aggregate_id", f.aggregate_id),
        ("type", f.type),
        ("actor_id", f.actor_id),
        ("correlation_id", f.correlation_id),
    ):
        if value is not None:
            where.append(f"{col} = %s")
            params.append(value)
    if f.since is not None:
        where.append("recorded_at >= %s")
        params.append(f.since)
    if f.to is not None:
        where.append("recorded_at < %s")
        params.append(f.to)
    floor = max(f.after_position, decode_cursor(cursor, int) or 0)
    if floor:
        where.append("position > %s")
        params.append(floor)
    sql = f"SELECT {COLUMNS} FROM audit_log WHERE {' AND '.join(where)} ORDER BY position LIMIT %s"
    rows = conn.execute(sql, (*params, n + 1)).fetchall()
    next_cursor = encode_cursor(rows[n - 1]["position"]) if len(rows) > n else None
    return AuditEventPage([AuditEventOut.of(r) for r in rows[:n]], next_cursor)


def aggregate_history(conn: Any, audit: Audit, aggregate_id: UUID, version: int | None) -> AggregateHistoryOut:
    """One aggregate's events up to `version` (default: all) and its state at that version."""
    if version is not None and version < 1:
        raise ValidationFailed([("version", "at least 1")])
    at, state, kind = audit.state_at(aggregate_id, version)
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM audit_log WHERE aggregate_id = %s AND aggregate_version <= %s"
        " ORDER BY aggregate_version",
        (aggregate_id, at),
    ).fetchall()
    if not rows:
        raise NotFound("no such aggregate")
    return AggregateHistoryOut(aggregate_id, kind, at, [AuditEventOut.of(r) for r in rows], state)


class AuditController(Controller):
    """Admins read the whole history."""

    path = "/admin"
    guards = ADMIN
    tags = ["admin"]
    security = BEARER

    @get("/events", sync_to_thread=True)
    def events(
        self,
        request: Request[Account, Any, Any],
        aggregate_id: str | None = None,
        type: str | None = None,  # noqa: A002
        actor_id: str | None = None,
        correlation_id: str | None = None,
        to: datetime | None = None,
        after_position: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Response[AuditEventPage]:
        """Events in log order, filtered by aggregate, type, actor, correlation, time and position."""
        n = limit_of(limit)
        f = EventFilter.parse(
            aggregate_id, type, actor_id, correlation_id, request.query_params.get("from"), to, after_position, cursor
        )
        with reading(request, ("audit_log",), request.user) as (conn, pos):
            return query(events_page(conn, f, n, None), pos)

    @get("/aggregates/{aggregate_id:uuid}/history", sync_to_thread=True)
    def history(
        self, request: Request[Account, Any, Any], audit: Audit, aggregate_id: UUID, version: int | None = None
    ) -> Response[AggregateHistoryOut]:
        """Every event of one aggregate up to `version` (default: all) and its state at that version."""
        with reading(request, ("audit_log",), request.user) as (conn, pos):
            return query(aggregate_history(conn, audit, aggregate_id, version), pos)
