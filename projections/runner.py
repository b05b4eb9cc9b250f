"""Projection runner: named, versioned subscribers of the event log with exactly-once batches.

Why not eventsourcing's ProjectionRunner: it commits one event per transaction (~1,300 events/s here). This
runner reads the same events table in batches and commits each batch's read-model rows together with its
tracking position, in one transaction, so a batch is applied exactly once (or not at all, if killed).

Ordering: eventsourcing's recorder takes an EXCLUSIVE lock on the events table for every insert, so ids are
assigned in commit order. A reader that sees id N therefore sees every committed id below N; an id that is
missing below N belongs to a transaction that rolled back (a version clash) and will never appear, so gaps are
passed over without waiting. tests/platform/projections/test_runtime.py holds a writer's transaction open while others
try to commit after it, and checks that nothing is skipped.

The rest of the runtime: generations.py (create, rebuild, switch, drop; status), follower.py (the live
threads), waiting.py (how far the read models have got, for read-your-writes).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from uuid import UUID

import msgspec
import psycopg
from psycopg.rows import dict_row

from projections.failures import INFRASTRUCTURE, EventFailed, FailurePolicy, apply_prefix

EVENTS_TABLE = "tutorconnect_events"
CHANNEL = EVENTS_TABLE  # eventsourcing NOTIFYs the channel named after the table on every insert
DDL_DIR = Path(__file__).resolve().parent.parent / "migrations" / "projections"
_decode = msgspec.json.Decoder().decode
H = TypeVar("H")


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


def by_type(handlers: Mapping[type, H]) -> dict[str, H]:
    """A handler table keyed by event class, keyed instead by the type name each Envelope carries (`event_type`):
    projections write their tables with the classes and look a batch's events up by name."""
    return {event_type(topic_of(cls)): handler for cls, handler in handlers.items()}


class Projection(abc.ABC):
    """A read model: `topics` in, its own tables out. Subclasses define `apply`, most as a handler table per event
    type (`by_type`) over one batch's rows."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    topics: ClassVar[tuple[str, ...]] = ()  # empty: every event
    tables: ClassVar[tuple[str, ...]] = ()  # logical names; each is a view over the active generation's table
    # May an event this projection still cannot apply after its tries be skipped (recorded, and the projection goes
    # on)? Never for read models that fold every event of an entity, money above all: they stop instead.
    skippable: ClassVar[bool] = False
    # Back-office read models that nobody reads the moment after their own write (the audit log, the ledger, the
    # e-mail outbox, purchase and payout histories) are followed in rounds of their own, paced at PROJECTOR_BACKGROUND_MS rather
    # than PROJECTOR_GATHER_MS: fewer, larger rounds cost less CPU per event (follower.follow_all).
    background: ClassVar[bool] = False

    def ddl(self, names: dict[str, str]) -> str:
        """The CREATE statements of one generation (from migrations/projections/NAME.sql)."""
        return (DDL_DIR / f"{self.name}.sql").read_text().format(**names)

    @abc.abstractmethod
    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        """Write the rows for a batch of events (inside the batch's transaction)."""


class FoldedProjection(Projection):
    """A projection whose batch is folded into one object of the class `fold` (made with the cursor, the events and
    the table names, written at the end by its `write()`), each event applied by the handler of its type (`handlers`,
    made with `by_type`)."""

    fold: ClassVar[type[Any]]
    handlers: ClassVar[Mapping[str, Callable[[Any, Envelope], None]]]

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        batch = self.fold(cur, events, t)
        for e in events:
            self.handlers[e.type](batch, e)
        batch.write()


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


def apply_events(
    conn: psycopg.Connection[Any], p: Projection, events: Sequence[Envelope], names: dict[str, str], careful: bool
) -> tuple[int, Envelope | None, BaseException | None]:
    """Apply `events` to the projection's tables `names` in the batch's transaction: all of them, or, `careful`, the
    longest prefix that applies (failures.apply_prefix). (Events applied, the first that failed, its error.)"""
    if not events:
        return 0, None, None
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        if not careful:
            p.apply(cur, events, names)
            return len(events), None, None
        return apply_prefix(conn, lambda evs: p.apply(cur, evs, names), events)


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
            applied, bad, error = apply_events(conn, p, events, self.names, careful)
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
