"""How far the read models have got: the position a query has seen, and waiting for a position
(read-your-writes: `X-Min-Position`, and the caller's own last write, ADR 0004)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg

from projections.failures import ProjectionStopped

_POSITIONS = (
    "SELECT min(position) AS p, array_agg(name) FILTER (WHERE stopped) AS stopped FROM projection_tracking"
    " WHERE state = 'active' AND name = ANY(%s)"
)
# the position as a scalar subquery, to read with a query's rows (one parameter: the names); -1 when one of them is
# stopped (the caller then raises ProjectionStopped, see stopped_position)
POSITION_SQL = (
    "(SELECT CASE WHEN bool_or(stopped) THEN -1 ELSE coalesce(min(position), 0) END FROM projection_tracking"
    " WHERE state = 'active' AND name = ANY(%s))"
)


# Each user's newest written position, kept by the append in the same transaction as the events
# (application/recorder.py Recorder, which creates the table with the append function); read with the positions.
LAST_WRITES_TABLE = "tutorconnect_last_writes"
_POSITIONS_AND_LAST_WRITE = (
    f"SELECT t.*, (SELECT position FROM {LAST_WRITES_TABLE} WHERE user_id = %s) AS last_write FROM ({_POSITIONS}) t"
)


def positions(conn: psycopg.Connection[Any], names: Sequence[str]) -> int:
    """The lowest position among the active generations of `names` (what a query using them has seen); raises
    ProjectionStopped when one of them is stopped at an event it could not apply."""
    return _position_of(conn.execute(_POSITIONS, (list(names),)).fetchone())


def _position_of(row: Any) -> int:
    if row is None:
        return 0
    value, stopped = (row["p"], row["stopped"]) if isinstance(row, dict) else (row[0], row[1])
    if stopped:
        raise ProjectionStopped(stopped)
    return int(value or 0)


def stopped_position(position: int, names: Sequence[str]) -> int:
    """A POSITION_SQL value, or ProjectionStopped for its -1."""
    if position < 0:
        raise ProjectionStopped(names)
    return position


async def positions_async(conn: psycopg.AsyncConnection[Any], names: Sequence[str]) -> int:
    """`positions` on an async connection."""
    return _position_of(await (await conn.execute(_POSITIONS, (list(names),))).fetchone())


async def wait_for_async(
    conn: psycopg.AsyncConnection[Any], names: Sequence[str], position: int, timeout: float
) -> int | None:
    """`wait_for` on an async connection (the event loop serves others while it waits)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        current = await positions_async(conn, names)
        if current >= position:
            return current
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


def wait_for(
    conn: psycopg.Connection[Any], names: Sequence[str], position: int, timeout: float, writer: UUID | None = None
) -> int | None:
    """Poll until the active generations of `names` reach `position` and, given a `writer`, that user's last
    write; their position, or None on timeout. The last write is read with the first poll, in its statement."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    if writer is not None:
        row = conn.execute(_POSITIONS_AND_LAST_WRITE, (writer, list(names)), prepare=True).fetchone()
        position = max(position, _last_write_of(row))
        current = _position_of(row)
    else:
        current = positions(conn, names)
    while True:
        if current >= position:
            return current
        if time.monotonic() >= deadline:
            return None
        time.sleep(delay)  # bounded poll (5-50 ms backoff) of one indexed row; the wait is capped by timeout
        delay = min(delay * 2, 0.05)
        current = positions(conn, names)


def _last_write_of(row: Any) -> int:
    value = None if row is None else (row["last_write"] if isinstance(row, dict) else row[2])
    return int(value or 0)
