"""Generations of a projection: each one its own tables behind the logical views, so a rebuild builds a new
generation beside the live one and switches the views when it has caught up; and the status of them all."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from projections.failures import current as current_failures
from projections.runner import EVENTS_TABLE, Projection, Runner, physical


@dataclass
class Status:
    """What `projections status` shows."""

    name: str
    generation: int
    version: int
    state: str
    position: int
    head: int
    events_processed: int
    stopped: bool = False

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


def lock_key(name: str) -> int:
    """The advisory lock of one projection's runner (or of the registry, "registry")."""
    return zlib.crc32(("projection:" + name).encode())


def _create_generation(conn: psycopg.Connection[Any], projection: Projection, generation: int, state: str) -> None:
    names = {t: physical(t, generation) for t in projection.tables}
    for t in projection.tables:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(names[t])))
    conn.execute(projection.ddl(names))
    conn.execute(
        "INSERT INTO projection_tracking (name, generation, version, position, state) VALUES (%s, %s, %s, 0, %s)",
        (projection.name, generation, projection.version, state),
    )


def _point_views(conn: psycopg.Connection[Any], projection: Projection, generation: int) -> None:
    for t in projection.tables:
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(t)))
        conn.execute(
            sql.SQL("CREATE VIEW {} AS SELECT * FROM {}").format(
                sql.Identifier(t), sql.Identifier(physical(t, generation))
            )
        )


def active_generation(conn: psycopg.Connection[Any], name: str) -> tuple[int, int] | None:
    """(generation, version) of the projection the API reads, or None."""
    row = conn.execute(
        "SELECT generation, version FROM projection_tracking WHERE name = %s AND state = 'active'", (name,)
    ).fetchone()
    if row is None:
        return None
    if isinstance(row, dict):
        return int(row["generation"]), int(row["version"])
    return int(row[0]), int(row[1])


def ensure(dsn: str, projections: Iterable[Projection]) -> None:
    """Create generation 1 (tables, views, tracking) of every projection that has none yet."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_key("registry"),))
        try:
            for p in projections:
                if active_generation(conn, p.name) is None:
                    with conn.transaction():
                        _create_generation(conn, p, 1, "active")
                        _point_views(conn, p, 1)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key("registry"),))


def rebuild(
    dsn: str, projection: Projection, progress: Callable[[int, int], None] | None = None, batch_size: int = 5000
) -> int:
    """Build a new generation beside the live one, then switch the views to it once it has caught up."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("registry"),))
        row = conn.execute(
            "SELECT coalesce(max(generation), 0) + 1 FROM projection_tracking WHERE name = %s", (projection.name,)
        ).fetchone()
        generation = int(row[0]) if row else 1
        abandoned = conn.execute(
            "DELETE FROM projection_tracking WHERE name = %s AND state = 'building' RETURNING generation",
            (projection.name,),
        ).fetchall()
        for (stale,) in abandoned:  # an interrupted rebuild's tables go with its tracking row
            for t in projection.tables:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(physical(t, stale))))
        _create_generation(conn, projection, generation, "building")
        deferred = _drop_secondary_indexes(conn, [physical(t, generation) for t in projection.tables])
    runner = Runner(dsn, projection, generation, batch_size=batch_size)
    try:
        head = _head(dsn)
        runner.catch_up(until=None, progress=(lambda pos: progress(pos, head)) if progress else None)
        # Bulk load first, indexes after: building an index over the loaded rows once is several times cheaper
        # than maintaining it row by row (primary keys and unique constraints stay, `apply` looks rows up by them).
        with runner.conn.transaction():
            for ddl in deferred:
                runner.conn.execute(ddl)
        # Switch: lock the registry, apply the last few events, then point the views at the new tables.
        with runner.conn.transaction():
            runner.conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("registry"),))
            runner.conn.execute(f"LOCK TABLE {EVENTS_TABLE} IN SHARE MODE")  # no writer commits meanwhile
            while runner.step()[1]:
                pass
            old = active_generation(runner.conn, projection.name)
            runner.conn.execute(
                "UPDATE projection_tracking SET state = 'retired' WHERE name = %s AND state = 'active'",
                (projection.name,),
            )
            runner.conn.execute(
                "UPDATE projection_tracking SET state = 'active' WHERE name = %s AND generation = %s",
                (projection.name, generation),
            )
            _point_views(runner.conn, projection, generation)
        if old is not None:
            drop_generation(dsn, projection, old[0])
        return generation
    finally:
        runner.close()


def _drop_secondary_indexes(conn: psycopg.Connection[Any], tables: Sequence[str]) -> list[str]:
    """Drop the indexes of `tables` that back no constraint; return the statements that recreate them."""
    rows = conn.execute(
        "SELECT ic.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid"
        " WHERE i.indrelid = ANY(%s::regclass[])"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
        (list(tables),),
    ).fetchall()
    for name, _ in rows:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return [ddl for _, ddl in rows]


def drop_generation(dsn: str, projection: Projection, generation: int) -> None:
    """Drop a retired generation's tables (waits for a runner still writing to them)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '30s'")
        for t in projection.tables:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(physical(t, generation))))
        conn.execute(
            "DELETE FROM projection_tracking WHERE name = %s AND generation = %s AND state = 'retired'",
            (projection.name, generation),
        )


def _head(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}").fetchone()
        return int(row[0]) if row else 0


def status(dsn: str) -> list[Status]:
    """Every generation of every projection, with its lag behind the log."""
    with psycopg.connect(dsn) as conn:
        head_row = conn.execute(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}").fetchone()
        head = int(head_row[0]) if head_row else 0
        rows = conn.execute(
            "SELECT name, generation, version, state, position, events_processed, stopped FROM projection_tracking"
            " ORDER BY name, generation"
        ).fetchall()
    return [Status(r[0], r[1], r[2], r[3], r[4], head, r[5], r[6]) for r in rows]


def failures(dsn: str, include_skipped: bool = True) -> list[Any]:
    """The recorded failures that hold active projections back (and the skipped events)."""
    with psycopg.connect(dsn) as conn:
        return current_failures(conn, include_skipped)
