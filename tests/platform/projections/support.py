"""Helpers shared by the projection tests: raw looks at the events table and the read models."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg

from projections.audit_log import AuditLog
from projections.runner import EVENTS_TABLE, Envelope
from tests.support.system import wait_until  # noqa: F401 - one poller for every test package


def connect(dsn: str) -> psycopg.Connection[Any]:
    """A plain autocommit connection (tuple rows)."""
    return psycopg.connect(dsn, autocommit=True)


def head(dsn: str) -> int:
    with connect(dsn) as c:
        row = c.execute(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}").fetchone()
        assert row is not None
        return int(row[0])


def event_ids(dsn: str, topics: Sequence[str] = ()) -> list[int]:
    """Every committed notification id (of `topics`, if given), ascending."""
    with connect(dsn) as c:
        if topics:
            rows = c.execute(
                f"SELECT notification_id FROM {EVENTS_TABLE} WHERE topic = ANY(%s) ORDER BY 1", (list(topics),)
            ).fetchall()
        else:
            rows = c.execute(f"SELECT notification_id FROM {EVENTS_TABLE} ORDER BY 1").fetchall()
    return [int(r[0]) for r in rows]


def column(dsn: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    with connect(dsn) as c:
        return [r[0] for r in c.execute(sql, params).fetchall()]  # type: ignore[call-overload]


def column_pairs(dsn: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, Any]]:
    with connect(dsn) as c:
        return [(r[0], r[1]) for r in c.execute(sql, params).fetchall()]  # type: ignore[call-overload]


def scalar(dsn: str, sql: str, params: Sequence[Any] = ()) -> Any:
    with connect(dsn) as c:
        row = c.execute(sql, params).fetchone()  # type: ignore[call-overload]
        return None if row is None else row[0]


def tracking(dsn: str, name: str) -> list[tuple[int, str, int, int]]:
    """(generation, state, position, events_processed) of every generation of `name`."""
    with connect(dsn) as c:
        rows = c.execute(
            "SELECT generation, state, position, events_processed FROM projection_tracking WHERE name = %s"
            " ORDER BY generation",
            (name,),
        ).fetchall()
    return [(int(g), str(s), int(p), int(n)) for g, s, p, n in rows]


def _hashable(v: Any) -> Any:
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True, default=str)
    return v


def snapshot(dsn: str, relation: str) -> tuple[list[str], Counter[tuple[Any, ...]]]:
    """All rows of a table or view as a multiset, with its column names (order-independent comparison)."""
    with connect(dsn) as c, c.cursor() as cur:
        cur.execute(f"SELECT * FROM {relation}")
        assert cur.description is not None
        cols = [d.name for d in cur.description]
        rows = Counter(tuple(_hashable(v) for v in r) for r in cur.fetchall())
    return cols, rows


def view_target(dsn: str, view: str) -> list[str]:
    """The tables a view reads from (pg_depend via pg_rewrite)."""
    return column(
        dsn,
        "SELECT DISTINCT d.refobjid::regclass::text FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid"
        " AND d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass"
        " WHERE r.ev_class = %s::regclass AND d.refobjid <> r.ev_class",
        (view,),
    )


def exists(dsn: str, relation: str) -> bool:
    return scalar(dsn, "SELECT to_regclass(%s) IS NOT NULL", (relation,)) is True


def seed_copies(dsn: str, template_position: int, n: int) -> None:
    """Append `n` copies of one stored event, each under a new originator id (version 1), the way the recorder
    appends: EXCLUSIVE lock on the table, NOTIFY, INSERT, in one transaction."""
    with psycopg.connect(dsn) as c:
        c.execute(f"LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE")
        c.execute(f"NOTIFY {EVENTS_TABLE}")
        inserted = c.execute(
            f"INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state)"
            f" SELECT gen_random_uuid(), 1, e.topic, e.state FROM {EVENTS_TABLE} e, generate_series(1, %s)"
            " WHERE e.notification_id = %s",
            (n, template_position),
        ).rowcount
        assert inserted == n, f"template event {template_position} not found"


class RecordingAuditLog(AuditLog):
    """The real audit_log projection, also noting the positions of every batch it applies, in order."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        super().apply(cur, events, t)
        self.batches.append([e.position for e in events])

    @property
    def seen(self) -> list[int]:
        return [p for b in self.batches for p in b]


def assert_batches_agree(dsn: str, projection: Any, events: Sequence[Envelope], cut: int, prefix: str) -> None:
    """The projection leaves the same rows whether `events` come in one batch, in chunks of `cut`, or one at a time:
    what its in-memory fold of a batch must guarantee."""
    run = f"{prefix}_{uuid.uuid4().hex[:8]}"
    together, chunked, alone = ({t: f"{run}_{how}_{t}" for t in projection.tables} for how in ("all", "cut", "one"))
    with psycopg.connect(dsn) as conn:
        for names in (together, chunked, alone):
            conn.execute(projection.ddl(names))
        with conn.cursor() as cur:
            projection.apply(cur, events, together)
            for k in range(0, len(events), cut):
                projection.apply(cur, events[k : k + cut], chunked)
            for e in events:
                projection.apply(cur, [e], alone)
        conn.commit()
    for table in projection.tables:
        expected = snapshot(dsn, alone[table])
        assert snapshot(dsn, together[table]) == expected, table
        assert snapshot(dsn, chunked[table]) == expected, table
