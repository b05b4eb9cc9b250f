"""The event store: eventsourcing's PostgreSQL recorder, our msgspec transcoding and event metadata.

All contexts share one events table (`tutorconnect_events`), so every event has one global position and a
command may save aggregates of several contexts in one transaction."""

from __future__ import annotations

import contextlib
import functools
import pickle
import random
import threading
import time
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import msgspec
import psycopg
import psycopg.sql
from eventsourcing.application import AggregateNotFoundError, Application, Repository, project_aggregate
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    Mapper,
    MapperDeserialisationError,
    OperationalError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import get_topic, resolve_topic, retry

from application import context
from application.clock import SYSTEM, Clock
from application.settings import Settings
from domain.errors import ConcurrencyConflict

EVENTS_TABLE = "tutorconnect_events"
META = "_meta"
SideWrite = tuple[str, Sequence[Any]]
T = TypeVar("T")


class MsgspecTranscoder(Transcoder):
    """JSON via msgspec: UUIDs, datetimes, dataclass values and Structs encode natively and fast."""

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder()

    def encode(self, obj: Any) -> bytes:
        return self._encoder.encode(obj)

    def decode(self, data: bytes) -> Any:
        return self._decoder.decode(data)


_PLAIN = (str, int, bool, float, Any, type(None))


@functools.cache
def _typed_fields(cls: type) -> tuple[tuple[str, Any], ...]:
    """Fields of an event class whose JSON form needs converting back (UUID, datetime, dataclass values...)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an event class whose annotations cannot be resolved keeps its JSON values
        return ()
    out = []
    for name, hint in hints.items():
        if name in ("originator_id", "originator_version") or typing.get_origin(hint) is typing.ClassVar:
            continue
        if hint in _PLAIN or hint is dict or typing.get_origin(hint) is dict:
            continue
        out.append((name, hint))
    return tuple(out)


class MetaMapper(Mapper[UUID]):
    """Stamps each stored event with `_meta` (actor, role, correlation, causation, recorded_at)."""

    def __init__(self, transcoder: Transcoder, clock: Clock) -> None:
        super().__init__(transcoder=transcoder)
        self.clock = clock

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        ctx = context.current()
        state[META] = {
            "actor_id": ctx.actor_id,
            "actor_role": ctx.actor_role,
            "correlation_id": ctx.correlation_id,
            "causation_id": ctx.causation_id,
            "recorded_at": self.clock.now(),
        }
        return StoredEvent(
            originator_id=originator_id,
            originator_version=originator_version,
            topic=get_topic(type(domain_event)),
            state=self.transcoder.encode(state),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        cls = resolve_topic(stored_event.topic)
        try:
            state: dict[str, Any] = self.transcoder.decode(stored_event.state)
        except msgspec.DecodeError as e:
            raise MapperDeserialisationError(
                f"event {stored_event.originator_id}@{stored_event.originator_version}: {e}"
            ) from e
        state.pop(META, None)
        class_version = getattr(cls, "class_version", 1)
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        for name, hint in _typed_fields(cls):
            if name in state:
                state[name] = msgspec.convert(state[name], hint, strict=False)
        oid = stored_event.originator_id
        state["originator_id"] = oid if isinstance(oid, UUID) else UUID(str(oid))
        state["originator_version"] = stored_event.originator_version
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event


class Recorder(PostgresApplicationRecorder):
    """eventsourcing's recorder, plus `side_writes`: SQL run in the same transaction as the events, and a
    one-round-trip append.

    Every save calls `tutorconnect_append` (created with the table): the EXCLUSIVE table lock, NOTIFY and INSERT
    done by the server in one statement, its own transaction in autocommit. Side writes are for the few things
    that must change atomically with events but may not enter the log (password hashes, refresh-token digests)
    and for command-side lookup rows (the account table the auth check reads): such a save runs them and then the
    append in one plain transaction. The library's own path is not used: it pipelines BEGIN, lock, NOTIFY,
    side writes, INSERT and COMMIT with prepared statements, and once, in the contract tests right after 20
    concurrent registrations of one email (19 refused in the pipeline), later requests on a connection failed
    with "prepared statement _pg3_N does not exist" (not reproduced in isolation; no pipeline is used now).
    The library's optional "DB functions" mode is not used either: its function takes no table lock, so ids
    would no longer be issued in commit order and followers that pass over gaps would skip events (ADR 0002).
    """

    APPEND = "SELECT tutorconnect_append(%s::uuid[], %s::int4[], %s::text[], %s::bytea[], %s) AS id"
    # In the calling statement's own transaction: the EXCLUSIVE table lock that keeps ids in commit order, the
    # NOTIFY that wakes followers (delivered at commit), the INSERT; ids come back in order.
    APPEND_FUNCTION = """
        CREATE OR REPLACE FUNCTION tutorconnect_append(
            ids uuid[], versions int4[], topics text[], states bytea[], lock_timeout text
        ) RETURNS SETOF bigint LANGUAGE plpgsql AS $body$
        BEGIN
            PERFORM set_config('lock_timeout', lock_timeout, true);
            LOCK TABLE {table} IN EXCLUSIVE MODE;
            NOTIFY {channel};
            RETURN QUERY
                INSERT INTO {table} (originator_id, originator_version, topic, state)
                SELECT * FROM unnest(ids, versions, topics, states)
                RETURNING notification_id;
        END
        $body$"""
    CREATE_LOCK = 7_301_552_003  # serialises concurrent starters' table and function creation

    def create_table(self) -> None:
        # Processes starting together (granian's workers, `serve`'s children) each create the table: the
        # library's statements include a CREATE OR REPLACE FUNCTION, and two of those at once fail with "tuple
        # concurrently updated". One at a time, under a session advisory lock.
        with self.datastore.get_connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (self.CREATE_LOCK,))
            try:
                super().create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.CREATE_LOCK,))

    def _create_table(self, curs: Any) -> None:
        super()._create_table(curs)
        statement = psycopg.sql.SQL(self.APPEND_FUNCTION).format(
            table=psycopg.sql.Identifier(self.events_table_name),
            channel=psycopg.sql.Identifier(self.channel_name),
        )
        body = statement.as_string(curs.connection).split("$body$")[1]
        curs.execute("SELECT prosrc FROM pg_proc WHERE proname = 'tutorconnect_append'")
        if [r["prosrc"] for r in curs.fetchall()] != [body]:  # every process start would replace it otherwise
            curs.execute(statement)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)  # as the library's insert_events
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        side_writes = kwargs.get("side_writes") or ()
        with self.datastore.get_connection() as conn:
            if not side_writes:  # autocommit: the one statement is the transaction
                return self._append(conn, stored_events) if stored_events else None
            with conn.transaction():
                with conn.cursor() as curs:
                    for sql, params in side_writes:
                        curs.execute(sql, params)
                return self._append(conn, stored_events) if stored_events else None

    def _append(self, conn: Any, stored_events: Sequence[StoredEvent]) -> list[int]:
        params = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
            f"{self.datastore.lock_timeout}s",
        )
        with conn.cursor(binary=True) as curs:
            curs.execute(self.APPEND, params, prepare=True)
            return [row["id"] for row in curs.fetchall()]


def _copy(aggregate: T) -> T:
    """An independent copy of an aggregate: pickle round trip, ~5x faster than copy.deepcopy for the dict-heavy
    aggregates here (a credit account with 20 lots and 40 holds: 77 vs 365 us)."""
    # the bytes are the ones just made from our own object, never input from outside
    return pickle.loads(pickle.dumps(aggregate, pickle.HIGHEST_PROTOCOL))  # type: ignore[no-any-return]  # noqa: S301


class CachingRepository(Repository[UUID]):
    """eventsourcing's repository with its aggregate cache used copy-on-write, and several aggregates brought up to
    date in one query.

    The library fast-forwards a cached aggregate in place (under a per-aggregate lock) with one SELECT per
    aggregate, then deep-copies it. Here a cached aggregate is never changed while it is in the cache: new events
    are applied to a copy (or to an object a command took out, see `get_many`), and callers get their own copy
    unless they only read (`read_only`) or took it (`take`). `get_many` reads the new events of every asked-for
    aggregate with one SELECT (a booking request needs seven). A saved aggregate goes into the cache as it is
    (`remember`), so the next command does not decode the events it just wrote."""

    SELECT_NEWER = (
        f"SELECT e.originator_id, e.originator_version, e.topic, e.state"
        f" FROM unnest(%s::uuid[], %s::int4[]) AS q(id, v)"
        f" JOIN {EVENTS_TABLE} e ON e.originator_id = q.id AND e.originator_version > q.v"
        f" ORDER BY e.originator_id, e.originator_version"
    )

    def get(self, aggregate_id: UUID, *, version: int | None = None, **kwargs: Any) -> Any:
        if version is not None or self.cache is None:
            return super().get(aggregate_id, version=version, **kwargs)
        found = self.get_many([aggregate_id])
        if aggregate_id not in found:
            raise AggregateNotFoundError(aggregate_id)
        return found[aggregate_id]

    def get_many(
        self, ids: Iterable[UUID], read_only: Iterable[UUID] = (), take: Iterable[UUID] = ()
    ) -> dict[UUID, Any]:
        """Current versions of the aggregates that exist among `ids`, `read_only` and `take` (absent ones are left
        out), in one query:

        - `ids`: the caller's own copies;
        - `read_only`: the cached objects themselves, shared with other threads: they must not be changed;
        - `take`: the cached objects themselves, taken out of the cache (no copy: no other thread can get the
          same object), for a command that changes them. Its save puts them back (`EventStoreApp.record`); a
          command that fails may put back the ones it left unchanged (`give_back`). Only for aggregates nobody
          reads with `read_only`.

        A writable aggregate that had new events is not cached here: the command that changes it caches what it
        saves, so each is copied at most once."""
        shared, taken = set(read_only), set(take)
        wanted = list(dict.fromkeys([*ids, *shared, *taken]))
        cached: dict[UUID, Any] = {}
        cache: Any = self.cache  # holds (version when cached, aggregate) pairs: see remember
        for i in wanted:
            if cache is not None:
                # A writable reader copies the cached object, and a taker removes it and then changes it in
                # place: under one lock per id, so a copy is never made of an object a taker has begun to change
                # (found by bench/soak.py: a cancel's calendar read raced a booking's take, OriginatorVersionError).
                with self._stripe(i):
                    try:
                        version, aggregate = cache.get(i, evict=i in taken)
                    except KeyError:
                        continue
                    # An aggregate changed after it was cached (a caller broke the contract, or a save of it failed
                    # after collecting its events) is not trusted: it is read again from the store.
                    if aggregate.version != version or aggregate._pending_events:
                        continue
                    cached[i] = aggregate if i in shared or i in taken else _copy(aggregate)
        versions = [cached[i].version if i in cached else 0 for i in wanted]
        recorder: Any = self.event_store.recorder
        with recorder.datastore.get_connection() as conn, conn.cursor(binary=True) as curs:
            curs.execute(self.SELECT_NEWER, (wanted, versions), prepare=True)
            rows = curs.fetchall()
        newer: dict[UUID, list[Any]] = {}
        for r in rows:
            newer.setdefault(r["originator_id"], []).append(r)
        mapper = self.event_store.mapper
        out: dict[UUID, Any] = {}
        for i in wanted:
            base = cached.get(i)  # the caller's own copy, the taken object, or the shared one
            events = newer.get(i)
            if events:
                aggregate = _copy(base) if base is not None and i in shared else base
                aggregate = project_aggregate(
                    aggregate,
                    (
                        mapper.to_domain_event(
                            StoredEvent(
                                originator_id=r["originator_id"],
                                originator_version=r["originator_version"],
                                topic=r["topic"],
                                state=bytes(r["state"]),
                            )
                        )
                        for r in events
                    ),
                )
                if aggregate is None:
                    continue
                if i in shared:
                    self.remember(aggregate)
                out[i] = aggregate
            elif base is not None:
                out[i] = base
        return out

    _stripes = tuple(threading.Lock() for _ in range(64))

    def _stripe(self, aggregate_id: UUID) -> threading.Lock:
        return self._stripes[aggregate_id.int % len(self._stripes)]

    def remember(self, aggregate: Any) -> None:
        """Cache an up-to-date aggregate (unless the cache already holds a newer version). The caller must not
        change it afterwards (if it does, get_many notices by its version and reads it again)."""
        cache: Any = self.cache
        if cache is None or aggregate._pending_events:
            return
        try:
            version, _ = cache.get(aggregate.id)
        except KeyError:
            version = 0
        if version < aggregate.version:
            cache.put(aggregate.id, (aggregate.version, aggregate))  # the version it was cached at: see get_many


_FACTORIES: dict[tuple[tuple[str, str], ...], InfrastructureFactory[Any]] = {}
_RECORDERS: dict[int, Any] = {}


class EventStoreApp(Application[UUID]):
    """Base of every context's application: shared events table, connection pool and clock."""

    name = "tutorconnect"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # eventsourcing names each subclass after itself (and so its table); every context shares one log.
        cls.name = "tutorconnect"

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SYSTEM
        super().__init__(env=settings.eventsourcing_env())

    def construct_factory(self, env: Any) -> InfrastructureFactory[Any]:
        # One factory (and so one connection pool) per process and database, shared by every context.
        key = tuple(sorted((k, v) for k, v in env.items() if k.startswith(("POSTGRES_", "PERSISTENCE"))))
        if key not in _FACTORIES:
            _FACTORIES[key] = InfrastructureFactory.construct(env)
        return _FACTORIES[key]

    def construct_recorder(self) -> Any:
        fid = id(self.factory)
        if fid not in _RECORDERS:
            _RECORDERS[fid] = self.factory.application_recorder()
        return _RECORDERS[fid]

    def construct_mapper(self) -> Mapper[UUID]:
        return MetaMapper(MsgspecTranscoder(), self.clock)

    def construct_repository(self) -> CachingRepository:
        size = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        return CachingRepository(event_store=self.events, cache_maxsize=int(size) if size else None)

    def get_many(
        self, ids: Iterable[UUID], read_only: Iterable[UUID] = (), take: Iterable[UUID] = ()
    ) -> dict[UUID, Any]:
        """Several aggregates in one query (missing ones left out); see CachingRepository.get_many."""
        repo: Any = self.repository
        return repo.get_many(ids, read_only, take)  # type: ignore[no-any-return]

    def give_back(self, aggregates: Iterable[Any], versions: dict[UUID, int]) -> None:
        """Put taken aggregates (get_many's `take`) that a failed command left unchanged back in the cache:
        `versions` are their versions when taken."""
        repo: Any = self.repository
        for a in aggregates:
            if a is not None and versions.get(a.id) == a.version and not a._pending_events:
                repo.remember(a)

    def close(self) -> None:
        # The shared pool outlives one context; `close_all()` closes it.
        pass

    def connection(self) -> Any:
        """A pooled psycopg connection (dict rows) of the event store's database."""
        return self.recorder.datastore.get_connection()  # type: ignore[attr-defined]

    def record(self, *aggregates: Any, side_writes: Iterable[SideWrite] = ()) -> int:
        """Save aggregates (and side writes) in one transaction; return the last event's global position."""
        recordings = self.save(*aggregates, side_writes=list(side_writes))
        repo: Any = self.repository
        for a in aggregates:
            if a is not None and hasattr(a, "version"):
                repo.remember(a)
        if recordings:
            return max(r.notification.id for r in recordings)
        return self.head()

    def head(self) -> int:
        """The global position of the newest event (0 for an empty store)."""
        return int(self.recorder.max_notification_id() or 0)

    def now(self) -> datetime:
        """Business time."""
        return self.clock.now()


def close_all() -> None:
    """Close the process's shared pools (at shutdown)."""
    for factory in _FACTORIES.values():
        factory.close()
    _FACTORIES.clear()
    _RECORDERS.clear()


def retrying(fn: Callable[[], T], attempts: int = 5) -> T:
    """Run a load-change-save function again when a concurrent writer got there first."""
    for i in range(attempts):
        try:
            return fn()
        except IntegrityError:
            if i == attempts - 1:
                raise ConcurrencyConflict("the resource changed concurrently; try again") from None
            # jittered, growing (2, 4, 8 ... capped at 50 ms) so that racing writers do not collide again
            time.sleep(random.uniform(0, min(0.05, 0.002 * 2**i)))
    raise AssertionError("unreachable")


class Turns:
    """Per-stream turns within one process, for streams that many requests write at once (a busy thread).

    Optimistic concurrency alone turns N simultaneous writers of one stream into N-1 failed saves per round, each
    retried: with 16 clients posting to one thread some ran out of retries (409). Taking turns in the process
    leaves only writers in other processes to collide, which `retrying` absorbs. It decides nothing: the version
    check at insert still does."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[UUID, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def of(self, stream_id: UUID) -> Iterator[None]:
        """Hold the turn of one stream (other threads of this process writing it wait)."""
        with self._guard:
            lock, users = self._locks.get(stream_id) or (threading.Lock(), 0)
            self._locks[stream_id] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[stream_id]
                if users == 1:
                    del self._locks[stream_id]
                else:
                    self._locks[stream_id] = (lock, users - 1)


def is_unique_violation(exc: BaseException) -> bool:
    """True for a version clash or unique-key violation, however the driver wrapped it."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (IntegrityError, psycopg.errors.UniqueViolation)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
