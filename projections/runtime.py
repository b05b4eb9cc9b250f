"""Projection runtime: named, versioned subscribers of the event log with exactly-once batches.

Why not eventsourcing's ProjectionRunner: it commits one event per transaction (~1,300 events/s here). This
runner reads the same events table in batches and commits each batch's read-model rows together with its
tracking position, in one transaction, so a batch is applied exactly once (or not at all, if killed).

Ordering: eventsourcing's recorder takes an EXCLUSIVE lock on the events table for every insert, so ids are
assigned in commit order. A reader that sees id N therefore sees every committed id below N; an id that is
missing below N belongs to a transaction that rolled back (a version clash) and will never appear, so gaps are
passed over without waiting. tests/projections/test_runtime.py holds a writer's transaction open while others
try to commit after it, and checks that nothing is skipped.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import msgspec
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from projections.failures import INFRASTRUCTURE, EventFailed, FailurePolicy, ProjectionStopped, apply_prefix

EVENTS_TABLE = "tutorconnect_events"
CHANNEL = EVENTS_TABLE  # eventsourcing NOTIFYs the channel named after the table on every insert
DDL_DIR = Path(__file__).resolve().parent.parent / "migrations" / "projections"
log = logging.getLogger("tutorconnect.projections")
_decode = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True)
class Envelope:
    """One stored event as projections see it."""

    position: int
    aggregate_id: UUID
    version: int
    topic: str
    type: str
    data: dict[str, Any]
    meta: dict[str, Any]


def event_type(topic: str) -> str:
    """`domain.user:User.Registered` -> `User.Registered`."""
    return topic.rsplit(":", 1)[-1]


def topic_of(cls: type) -> str:
    """The stored topic of a domain event class."""
    return f"{cls.__module__}:{cls.__qualname__}"


class Projection(abc.ABC):
    """A read model: `topics` in, its own tables out. Subclasses define `apply`."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    topics: ClassVar[tuple[str, ...]] = ()  # empty: every event
    tables: ClassVar[tuple[str, ...]] = ()  # logical names; each is a view over the active generation's table
    # May an event this projection still cannot apply after its tries be skipped (recorded, and the projection goes
    # on)? Never for read models that fold every event of an entity, money above all: they stop instead.
    skippable: ClassVar[bool] = False

    def ddl(self, names: dict[str, str]) -> str:
        """The CREATE statements of one generation (from migrations/projections/NAME.sql)."""
        return (DDL_DIR / f"{self.name}.sql").read_text().format(**names)

    @abc.abstractmethod
    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        """Write the rows for a batch of events (inside the batch's transaction)."""


def load_rows(
    cur: psycopg.Cursor[Any], table: str, columns: Sequence[str], keys: Iterable[Any], key: str | None = None
) -> dict[Any, dict[str, Any]]:
    """The rows of `table` whose `key` (default: the first column) is in `keys`, as dicts keyed by that column.

    With `replace_rows` this is how a projection folds a whole batch in memory: one SELECT of the rows the
    batch touches, the events applied to dicts, one DELETE and one COPY back. Statements per batch, not per
    event: a per-event UPDATE costs a network round trip each and caps a projection near 8,000 events/s."""
    wanted = list(keys)
    if not wanted:
        return {}
    key = key or columns[0]
    index = list(columns).index(key)
    rows = cur.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE {key} = ANY(%s)", (wanted,)).fetchall()
    return {r[index]: dict(zip(columns, r, strict=True)) for r in rows}


def replace_rows(
    cur: psycopg.Cursor[Any],
    table: str,
    columns: Sequence[str],
    rows: Iterable[dict[str, Any]],
    existing: Iterable[Any],
    key: str | None = None,
) -> None:
    """Write folded rows back: delete the previously stored versions (`existing` keys), COPY every row."""
    key = key or columns[0]
    old = list(existing)
    if old:
        cur.execute(f"DELETE FROM {table} WHERE {key} = ANY(%s)", (old,))
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def physical(name: str, generation: int) -> str:
    """Physical table name of a logical read-model table in one generation."""
    return f"{name}__g{generation}"


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


def _lock_key(name: str) -> int:
    return zlib.crc32(("projection:" + name).encode())


def connect_for_batches(dsn: str) -> psycopg.Connection[Any]:
    """A connection for batch transactions. A batch commits its rows together with its position and read models
    can be rebuilt, so a server crash can only lose whole recent batches, which are then applied again: commits
    need not wait for the WAL flush."""
    conn = psycopg.connect(dsn, row_factory=dict_row)
    conn.execute("SET synchronous_commit = off")
    conn.commit()
    return conn


def read_batch(
    conn: psycopg.Connection[Any], start: int, head: int, topics: Sequence[str], size: int
) -> tuple[list[Envelope], int]:
    """The events start < position <= head (of `topics`, or all), at most `size`, decoded; and the position the
    batch covers: a full batch stops at its last row, a short one has seen everything up to the head."""
    query = (
        f"SELECT notification_id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE}"
        " WHERE notification_id > %s AND notification_id <= %s"
    )
    params: list[Any] = [start, head]
    if topics:
        query += " AND topic = ANY(%s)"
        params.append(list(topics))
    query += " ORDER BY notification_id LIMIT %s"
    params.append(size)
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as rcur:
        rows = rcur.execute(query, params).fetchall()
    events = []
    for pos, oid, ver, topic, state in rows:
        try:
            data = _decode(state)
        except msgspec.DecodeError as e:
            # A stored event that is not JSON (written by hand, or damaged) must not stop every projection that
            # reads the batch: it reaches them without its fields, the ones that read its type fail on it alone
            # and the failure policy stops or skips them there (projections/failures.py).
            data = {"_undecodable": str(e)}
        if b"\\u0000" in state:  # written before such text was refused at the edge: see storable
            data = storable(data)
        meta = data.pop("_meta", None) or {}
        events.append(Envelope(pos, oid, ver, topic, event_type(topic), data, meta))
    return events, (rows[-1][0] if len(rows) == size else head)


def storable(value: Any) -> Any:
    """`value` with U+0000 in every string replaced by U+FFFD: PostgreSQL text and jsonb cannot hold U+0000, and
    an event recorded before the API refused it (api/text.py) must still project, as visibly replaced text rather
    than silently dropped. (Unpaired surrogates never reach the log: the event encoder refuses them.)"""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


class Runner:
    """Runs one generation of one projection: catch-up in batches, then live via LISTEN/NOTIFY."""

    def __init__(
        self,
        dsn: str,
        projection: Projection,
        generation: int,
        batch_size: int = 5000,
        conn: psycopg.Connection[Any] | None = None,
        policy: FailurePolicy | None = None,
    ) -> None:
        self.dsn = dsn
        self.projection = projection
        self.generation = generation
        self.batch_size = batch_size
        # what happens to an event this projection cannot apply; without a policy (a rebuild) it is tried once,
        # then skipped if the projection allows it, else the rebuild fails with EventFailed
        self.policy = policy
        self.names = {t: physical(t, generation) for t in projection.tables}
        self._conn: psycopg.Connection[Any] | None = conn
        self._owns_conn = conn is None

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect_for_batches(self.dsn)
        return self._conn

    def close(self) -> None:
        if self._conn is not None and self._owns_conn:
            self._conn.close()
        self._conn = None

    def position(self) -> int:
        row = self.conn.execute(
            "SELECT position FROM projection_tracking WHERE name = %s AND generation = %s",
            (self.projection.name, self.generation),
        ).fetchone()
        self.conn.commit()
        if row is None:
            raise LookupError(f"{self.projection.name} generation {self.generation} is not registered")
        return int(row["position"])

    def step(self, until: int | None = None) -> tuple[int, bool]:
        """Process one batch in one transaction; return (events applied, whether the position moved).

        A batch that fails is rolled back and run again carefully (failures.apply_prefix): the events before the
        failing one are applied and the policy decides where the position goes."""
        try:
            return self._step(until, careful=False)
        except INFRASTRUCTURE:
            raise
        except (Retired, Superseded):
            raise
        except Exception:  # the projection's own code or SQL failed on some event of the batch
            return self._step(until, careful=True)

    def _step(self, until: int | None, careful: bool) -> tuple[int, bool]:
        p = self.projection
        conn = self.conn
        with conn.transaction():
            track = conn.execute(
                "SELECT position, state, stopped FROM projection_tracking WHERE name = %s AND generation = %s",
                (p.name, self.generation),
            ).fetchone()
            if track is None or track["state"] == "retired":
                raise Retired(p.name, self.generation)
            if track["stopped"]:
                return 0, False
            start = int(track["position"])
            head_row = conn.execute(f"SELECT max(notification_id) AS head FROM {EVENTS_TABLE}").fetchone()
            head = int(head_row["head"] or 0) if head_row else 0
            if until is not None:
                head = min(head, until)
            if head <= start:
                return 0, False
            events, new_position = read_batch(conn, start, head, p.topics, self.batch_size)
            applied = len(events)
            if events:
                with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
                    if not careful:
                        p.apply(cur, events, self.names)
                    else:
                        applied, bad, error = apply_prefix(conn, lambda evs: p.apply(cur, evs, self.names), events)
                        if bad is not None and error is not None:
                            new_position = self._failed(bad, error)
            if new_position <= start:
                return applied, False
            self._advance(start, new_position, applied)
            if self.policy is not None:
                self.policy.passed(p.name, self.generation, new_position)
            return applied, True

    def _failed(self, event: Envelope, error: BaseException) -> int:
        """The position to move to after `event` failed (inside the batch's transaction)."""
        p = self.projection
        if self.policy is not None:
            return self.policy.failed(self.conn, p.name, self.generation, p.skippable, event, error)
        if not p.skippable:
            raise EventFailed(p.name, event, error)
        FailurePolicy(attempts=1).failed(self.conn, p.name, self.generation, True, event, error)
        return event.position

    def _advance(self, start: int, new_position: int, applied: int) -> None:
        """Move the tracking position in the batch's transaction, if nobody else moved it meanwhile."""
        p = self.projection
        updated = self.conn.execute(
            "UPDATE projection_tracking SET position = %s, events_processed = events_processed + %s,"
            " updated_at = now() WHERE name = %s AND generation = %s AND position = %s",
            (new_position, applied, p.name, self.generation, start),
        ).rowcount
        if updated != 1:
            raise Superseded(f"another runner advanced {p.name} generation {self.generation}")

    def catch_up(self, until: int | None = None, progress: Callable[[int], None] | None = None) -> int:
        """Apply batches until the log (or `until`) is reached; return events applied."""
        total = 0
        while True:
            n, moved = self.step(until)
            total += n
            if progress:
                progress(self.position())
            if not moved:
                return total


class Retired(Exception):
    """This generation was replaced by a rebuild; the caller switches to the active one."""


class Superseded(Exception):
    """Another runner moved the position first; this batch was rolled back."""


# ------------------------------------------------------------------------------------------------ registry


def _create_generation(conn: psycopg.Connection[Any], projection: Projection, generation: int, state: str) -> None:
    names = {t: physical(t, generation) for t in projection.tables}
    for t in projection.tables:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(names[t])))
    conn.execute(projection.ddl(names))  # type: ignore[call-overload]
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
        conn.execute("SELECT pg_advisory_lock(%s)", (_lock_key("registry"),))
        try:
            for p in projections:
                if active_generation(conn, p.name) is None:
                    with conn.transaction():
                        _create_generation(conn, p, 1, "active")
                        _point_views(conn, p, 1)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_lock_key("registry"),))


def rebuild(
    dsn: str, projection: Projection, progress: Callable[[int, int], None] | None = None, batch_size: int = 5000
) -> int:
    """Build a new generation beside the live one, then switch the views to it once it has caught up."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("registry"),))
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
                runner.conn.execute(ddl)  # type: ignore[arg-type]
        # Switch: lock the registry, apply the last few events, then point the views at the new tables.
        with runner.conn.transaction():
            runner.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("registry"),))
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
    from projections import failures as f

    with psycopg.connect(dsn) as conn:
        return f.current(conn, include_skipped)


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


# ------------------------------------------------------------------------------------------- live follower


class Follower:
    """Keeps projections' active generations up to date in one thread: catch-up, then wake on NOTIFY.

    One thread and two connections serve a group of projections (a LISTEN connection, which also holds
    the session advisory locks, and a work connection for the batch transactions). Only one process runs a
    projection at a time (its advisory lock); others stand by and take over when the holder dies. Batches are
    interleaved across projections so one long catch-up does not starve the others. The 1-second wait timeout
    is a safety net for a lost notification, not the main path."""

    ROUND_BATCHES = 10

    def __init__(
        self,
        dsn: str,
        projections: Projection | Sequence[Projection],
        stop: threading.Event,
        batch_size: int = 5000,
        gather_s: float = 0.0,
    ) -> None:
        self.dsn = dsn
        self.projections = [projections] if isinstance(projections, Projection) else list(projections)
        self.stop = stop
        self.batch_size = batch_size
        self.gather_s = gather_s
        self.policy = FailurePolicy()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self._run_once()
            except Exception:
                log.exception("projection follower failed; restarting in 1 s")
                self.stop.wait(1.0)

    def _claim(self, listen: psycopg.Connection[Any], work: psycopg.Connection[Any], p: Projection) -> Runner | None:
        got = listen.execute("SELECT pg_try_advisory_lock(%s)", (_lock_key(p.name),)).fetchone()
        if not got or not got[0]:
            return None  # another process runs this projection; stand by and try again next round
        gen = active_generation(listen, p.name)
        if gen is None:
            ensure(self.dsn, [p])
            gen = active_generation(listen, p.name)
            assert gen is not None
        if gen[1] != p.version:
            log.info("projection %s: code version %s != stored %s; rebuilding", p.name, p.version, gen[1])
            rebuild(self.dsn, p, batch_size=self.batch_size)
            gen = active_generation(listen, p.name)
            assert gen is not None
        return Runner(self.dsn, p, gen[0], batch_size=self.batch_size, conn=work, policy=self.policy)

    def _run_once(self) -> None:
        with (
            psycopg.connect(self.dsn, autocommit=True) as listen,
            connect_for_batches(self.dsn) as work,
        ):
            listen.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            runners: dict[str, Runner] = {}

            def release(name: str) -> None:
                # a rebuild switched generations: pick up the active one next round
                runners.pop(name, None)
                listen.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(name),))

            while not self.stop.is_set():
                behind = False
                for p in self.projections:
                    if p.name not in runners:
                        runner = self._claim(listen, work, p)
                        if runner is not None:
                            runners[p.name] = runner
                try:
                    far, stale = self._round(work, list(runners.values()))
                except Superseded:
                    for name in list(runners):
                        release(name)
                    continue
                for name in stale:
                    release(name)
                    behind = True
                for runner in far:  # far behind (a new projection, a long outage): batches of its own
                    if self.policy.waiting(runner.projection.name, runner.generation):
                        continue
                    try:
                        for _ in range(self.ROUND_BATCHES):
                            n, moved = runner.step()
                            if not moved or n < runner.batch_size:
                                break  # a short batch reached the head it read; later commits send a NOTIFY
                        else:
                            behind = True
                    except (Retired, Superseded):
                        release(runner.projection.name)
                        behind = True
                if not behind:
                    for _ in listen.notifies(timeout=1.0, stop_after=1):
                        pass
                    if self.gather_s:
                        # Let the commits arriving right behind this one join the next round: under load a round
                        # then applies several commands' events in one transaction (fewer statements, commits and
                        # position updates per event) for a few ms more lag. A stop cuts it short.
                        self.stop.wait(self.gather_s)

    def _round(self, conn: psycopg.Connection[Any], runners: Sequence[Runner]) -> tuple[list[Runner], list[str]]:
        """`_step_together`; if a projection fails on an event, the round is rolled back and run again carefully,
        so that only that projection stays behind (projections/failures.py)."""
        try:
            return self._step_together(conn, runners)
        except (*INFRASTRUCTURE, Superseded):
            raise
        except Exception:  # the code or SQL of some projection failed on some event of this round
            return self._step_together(conn, runners, careful=True)

    def _step_together(
        self, conn: psycopg.Connection[Any], runners: Sequence[Runner], careful: bool = False
    ) -> tuple[list[Runner], list[str]]:
        """One transaction for every runner within a batch of the head: read the new events once, let each
        projection apply its share, move all their positions with one compare-and-set. Returns the runners too
        far behind for that (they step alone) and the names whose generation was retired.

        Following live, a commit wakes every projection of the thread; one shared transaction instead of one
        per projection cuts the round trips and commits per wake-up about tenfold."""
        if not runners:
            return [], []
        with conn.transaction():
            rows = conn.execute(
                "SELECT name, generation, position, state, stopped,"
                f" (SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}) AS head"
                " FROM projection_tracking WHERE name = ANY(%s)",
                ([r.projection.name for r in runners],),
            ).fetchall()
            tracked = {(r["name"], r["generation"]): r for r in rows}
            head = int(rows[0]["head"]) if rows else 0
            near: list[tuple[Runner, int]] = []
            far: list[Runner] = []
            stale: list[str] = []
            for runner in runners:
                t = tracked.get((runner.projection.name, runner.generation))
                if t is None or t["state"] == "retired":
                    stale.append(runner.projection.name)
                elif t["stopped"] or self.policy.waiting(runner.projection.name, runner.generation):
                    continue  # stopped at an event it could not apply, or waiting to try it again
                elif head - int(t["position"]) > self.batch_size:
                    far.append(runner)
                elif int(t["position"]) < head:
                    near.append((runner, int(t["position"])))
            if not near:
                return far, stale
            everything = any(not r.projection.topics for r, _ in near)
            topics = () if everything else tuple({t for r, _ in near for t in r.projection.topics})
            events, end = read_batch(conn, min(start for _, start in near), head, topics, self.batch_size)
            moves: list[tuple[str, int, int, int, int]] = []
            for runner, start in near:
                p, reached = runner.projection, end
                wanted = set(p.topics)
                mine = [e for e in events if start < e.position <= end and (not wanted or e.topic in wanted)]
                if mine:
                    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
                        if not careful:
                            p.apply(cur, mine, runner.names)
                        else:
                            n, bad, error = apply_prefix(conn, lambda evs: p.apply(cur, evs, runner.names), mine)  # noqa: B023 - called at once
                            if bad is not None and error is not None:
                                reached = self.policy.failed(conn, p.name, runner.generation, p.skippable, bad, error)
                                mine = mine[:n]
                if reached > start:
                    moves.append((p.name, runner.generation, start, reached, len(mine)))
                    self.policy.passed(p.name, runner.generation, reached)
            if not moves:
                return far, stale
            names, generations, starts, ends, counts = (list(x) for x in zip(*moves, strict=True))
            updated = conn.execute(
                "UPDATE projection_tracking t SET position = u.position, events_processed = t.events_processed + u.n,"
                " updated_at = now() FROM unnest(%s::text[], %s::int[], %s::int8[], %s::int8[], %s::int8[])"
                " AS u(name, generation, start, position, n)"
                " WHERE t.name = u.name AND t.generation = u.generation AND t.position = u.start",
                (names, generations, starts, ends, counts),
            ).rowcount
            if updated != len(moves):
                raise Superseded(f"another runner advanced one of {', '.join(names)}")
        return far, stale


def follow_all(
    dsn: str,
    projections: Sequence[Projection],
    stop: threading.Event,
    threads: int = 2,
    gather_ms: float = 0.0,
    batch_size: int = 5000,
) -> list[threading.Thread]:
    """Start `threads` follower threads sharing these projections out.

    Most of a batch's work is PostgreSQL's (COPY, index upkeep), so two threads keep two backends busy and the set
    catches up about as fast as its slowest member instead of the sum of all. Projections that read every event
    (no `topics`: audit_log) get threads of their own first; the rest are dealt round-robin."""
    ensure(dsn, projections)
    n = max(1, min(threads, len(projections)))
    groups: list[list[Projection]] = [[] for _ in range(n)]
    heavy = [p for p in projections if not p.topics]
    light = [p for p in projections if p.topics]
    for i, p in enumerate(heavy):
        groups[i % n].append(p)
    rest = [g for g in groups if not g] or groups
    for i, p in enumerate(light):
        rest[i % len(rest)].append(p)
    started = []
    for i, group in enumerate(g for g in groups if g):
        follower = Follower(dsn, group, stop, batch_size=batch_size, gather_s=gather_ms / 1000)
        t = threading.Thread(target=follower.run, name=f"projections-{i}", daemon=True)
        t.start()
        started.append(t)
    return started


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


def wait_for(conn: psycopg.Connection[Any], names: Sequence[str], position: int, timeout: float) -> int | None:
    """Poll until the active generations of `names` reach `position`; their position, or None on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        current = positions(conn, names)
        if current >= position:
            return current
        if time.monotonic() >= deadline:
            return None
        time.sleep(delay)  # bounded poll (5-50 ms backoff) of one indexed row; the wait is capped by timeout
        delay = min(delay * 2, 0.05)
