"""audit_log: every event with its metadata, for GET /admin/events and aggregate histories."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg

from projections.runner import Envelope, Projection

_encode = msgspec.json.Encoder().encode


class AuditLog(Projection):
    """A filterable copy of the log (COPY per batch: this is the projection that sees every event)."""

    name = "audit_log"
    background = True  # back office: followed in the slower-paced rounds (Projection.background)
    version = 1
    # one entry per event: an event it cannot store is recorded in projection_failures and left out,
    # rather than every later event waiting behind it (the event itself stays in the log and its aggregate history)
    skippable = True
    tables = ("audit_log",)

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        cols = (
            "position, aggregate_id, aggregate_version, type, recorded_at, actor_id, actor_role,"
            " correlation_id, causation_id, data"
        )
        with cur.copy(f"COPY {t['audit_log']} ({cols}) FROM STDIN") as copy:
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
