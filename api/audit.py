"""Audit: the event log with filters, and one aggregate's history and state at a version."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, get

from api.deps import decode_cursor, encode_cursor, limit_of, query, reading
from api.guards import ADMIN, BEARER
from api.schemas.audit import AggregateHistoryOut, AuditEventOut, AuditEventPage
from application.audit import Audit
from application.identity import Account
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
        account = request.user
        n = limit_of(limit)
        where: list[str] = ["true"]
        params: list[Any] = []
        for col, value in (
            ("aggregate_id", _uuid("aggregate_id", aggregate_id)),
            ("type", type),
            ("actor_id", _uuid("actor_id", actor_id)),
            ("correlation_id", correlation_id),
        ):
            if value is not None and value != "":
                where.append(f"{col} = %s")
                params.append(value)
        since = request.query_params.get("from")
        if since:
            try:
                start = datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise ValidationFailed([("from", "an RFC 3339 instant")]) from None
            where.append("recorded_at >= %s")
            params.append(start)
        if to is not None:
            where.append("recorded_at < %s")
            params.append(to)
        floor = max(after_position or 0, decode_cursor(cursor, int) or 0)
        if floor:
            where.append("position > %s")
            params.append(floor)
        sql = f"SELECT {COLUMNS} FROM audit_log WHERE {' AND '.join(where)} ORDER BY position LIMIT %s"
        with reading(request, ("audit_log",), account) as (conn, pos):
            rows = conn.execute(sql, (*params, n + 1)).fetchall()
        next_cursor = encode_cursor(rows[n - 1]["position"]) if len(rows) > n else None
        return query(AuditEventPage([AuditEventOut.of(r) for r in rows[:n]], next_cursor), pos)

    @get("/aggregates/{aggregate_id:uuid}/history", sync_to_thread=True)
    def history(
        self, request: Request[Account, Any, Any], audit: Audit, aggregate_id: UUID, version: int | None = None
    ) -> Response[AggregateHistoryOut]:
        """Every event of one aggregate up to `version` (default: all) and its state at that version."""
        account = request.user
        if version is not None and version < 1:
            raise ValidationFailed([("version", "at least 1")])
        at, state, kind = audit.state_at(aggregate_id, version)
        with reading(request, ("audit_log",), account) as (conn, pos):
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM audit_log WHERE aggregate_id = %s AND aggregate_version <= %s"
                " ORDER BY aggregate_version",
                (aggregate_id, at),
            ).fetchall()
        if not rows:
            raise NotFound("no such aggregate")
        return query(AggregateHistoryOut(aggregate_id, kind, at, [AuditEventOut.of(r) for r in rows], state), pos)
