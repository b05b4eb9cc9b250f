"""audit_log: every event with its metadata, for GET /admin/events and aggregate histories."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg

from projections.runtime import EVENTS_TABLE, Envelope, Projection

_encode = msgspec.json.Encoder().encode
COLUMNS = (
    "position, aggregate_id, aggregate_version, type, recorded_at, actor_id, actor_role, correlation_id,"
    " causation_id, data"
)


class AuditLog(Projection):
    """A filterable copy of the log. It sees every event, so it is built in SQL straight from the events table
    (INSERT ... SELECT over the batch's range): no event crosses into Python. `apply` (COPY) stays for callers
    that hand it decoded events; both give the same rows (tests/projections)."""

    name = "audit_log"
    version = 1
    tables = ("audit_log",)
    in_sql = True

    def apply_range(self, cur: psycopg.Cursor[Any], start: int, end: int, t: dict[str, str]) -> int:
        # The stored state is the event's JSON (msgspec) with its metadata under "_meta"; the event type is the
        # topic after its last ':' (runtime.event_type).
        cur.execute(
            f"INSERT INTO {t['audit_log']} ({COLUMNS}) SELECT notification_id, originator_id, originator_version,"
            " regexp_replace(topic, '^.*:', ''), (j->'_meta'->>'recorded_at')::timestamptz,"
            " (j->'_meta'->>'actor_id')::uuid, j->'_meta'->>'actor_role', j->'_meta'->>'correlation_id',"
            " j->'_meta'->>'causation_id', j - '_meta'"
            " FROM (SELECT notification_id, originator_id, originator_version, topic,"
            f" convert_from(state, 'UTF8')::jsonb AS j FROM {EVENTS_TABLE}"
            " WHERE notification_id > %s AND notification_id <= %s) e",
            (start, end),
        )
        return cur.rowcount

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        with cur.copy(f"COPY {t['audit_log']} ({COLUMNS}) FROM STDIN") as copy:
            for e in events:
                m = e.meta
                copy.write_row(
                    (
                        e.position,
                        e.aggregate_id,
                        e.version,
                        e.type,
                        m.get("recorded_at"),
                        m.get("actor_id"),
                        m.get("actor_role"),
                        m.get("correlation_id"),
                        m.get("causation_id"),
                        _encode(e.data).decode(),
                    )
                )
