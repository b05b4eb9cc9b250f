"""The event store: our msgspec transcoding and event metadata, and the applications' base (units of work,
saves) over the recorder of application/recorder.py.

All contexts share one events table (`tutorconnect_events`), so every event has one global position and a
command may save aggregates of several contexts in one transaction."""

from __future__ import annotations

import contextlib
import functools
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
from eventsourcing.application import Application
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.utils import get_topic, resolve_topic

from application import context
from application.aggregate_cache import EVENTS_TABLE as EVENTS_TABLE  # re-exported: the one log
from application.aggregate_cache import CachingRepository
from application.clock import SYSTEM, Clock
from application.recorder import Recorder
from application.settings import Settings
from application.storage import Storage
from domain.errors import ConcurrencyConflict, NotFound

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


def _user_id(actor_id: str | None) -> UUID | None:
    """The acting user's id; None for no actor, or one that names no user (a tool's)."""
    try:
        return UUID(actor_id) if actor_id else None
    except ValueError:
        return None


_FACTORIES: dict[tuple[tuple[str, str], ...], InfrastructureFactory[Any]] = {}
_RECORDERS: dict[int, Any] = {}


A = TypeVar("A")


class Loaded:
    """What one attempt of a command loaded (`EventStoreApp.command`), typed by the caller: `loaded.get(Booking, id)`
    is the Booking or None (absent, or a stream of another kind)."""

    def __init__(self, found: dict[UUID, Any]) -> None:
        self._found = found

    def get(self, kind: type[A], aggregate_id: UUID) -> A | None:
        """The aggregate `aggregate_id` if it exists and is a `kind`."""
        found = self._found.get(aggregate_id)
        return found if isinstance(found, kind) else None

    def need(self, kind: type[A], aggregate_id: UUID, missing: str) -> A:
        """The aggregate `aggregate_id` of `kind`; 404 with `missing` (e.g. "no such subject") when there is none."""
        found = self.get(kind, aggregate_id)
        if found is None:
            raise NotFound(missing)
        return found


class EventStoreApp(Application[UUID]):
    """Base of every context's application: shared events table, connection pool and clock."""

    name = "tutorconnect"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # eventsourcing names each subclass after itself (and so its table); every context shares one log.
        cls.name = "tutorconnect"

    _storage: Storage | None = None

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SYSTEM
        super().__init__(env=settings.eventsourcing_env())

    @property
    def storage(self) -> Storage:
        """S3 for uploads (documents, attachments, avatars), made on first use (StorageUnavailable when S3 is not
        configured)."""
        if self._storage is None:
            self._storage = Storage(self.settings)
        return self._storage

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
        repo = self.repository
        assert isinstance(repo, CachingRepository)  # construct_repository's
        return repo.get_many(ids, read_only, take)

    def command(
        self,
        step: Callable[[Loaded], T],
        *,
        changes: Sequence[UUID] = (),
        reads: Sequence[UUID] = (),
        attempts: int = 5,
    ) -> T:
        """Run one command as a unit of work: load `changes` (this command's own, taken out of the cache) and
        `reads` (shared: read only) in one query, call `step` (domain methods, then `record`), and on a version
        clash run it again on fresh state. Whatever an attempt took and did not save goes back to the cache."""

        for i in range(attempts):
            found = self.get_many([], read_only=reads, take=changes)
            taken = {a: found[a].version for a in changes if a in found}
            try:
                return step(Loaded(found))
            except IntegrityError:
                if i == attempts - 1:
                    raise ConcurrencyConflict("the resource changed concurrently; try again") from None
            finally:
                self.give_back((found.get(a) for a in changes), taken)
            # jittered, growing (2, 4, 8 ... capped at 50 ms) so that racing writers do not collide again
            time.sleep(random.uniform(0, min(0.05, 0.002 * 2**i)))
        raise AssertionError("unreachable")

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
        recorder = self.recorder
        assert isinstance(recorder, Recorder)  # construct_recorder's, through our factory
        return recorder.datastore.get_connection()

    def record(self, *aggregates: Any, side_writes: Iterable[SideWrite] = (), writer: UUID | None = None) -> int:
        """Save aggregates (and side writes) in one transaction; return the last event's global position. The
        writer -- the acting user unless given (a registration's or login's own user) -- gets it as their last
        write, which their next query waits for (ADR 0004)."""
        # eventsourcing's `save` checks each object against runtime Protocols (4 % of a booking's API CPU,
        # py-spy); every caller here passes aggregates, so their events go to the event store directly.
        events = [e for a in aggregates if a is not None for e in a.collect_events()]
        if writer is None:
            writer = _user_id(context.current().actor_id)
        recordings = self.events.put(events, side_writes=list(side_writes), writer=writer)
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


class Turns:
    """Per-stream turns within one process, for streams that many requests write at once (a busy thread).

    Optimistic concurrency alone turns N simultaneous writers of one stream into N-1 failed saves per round, each
    retried: with 16 clients posting to one thread some ran out of retries (409). Taking turns in the process
    leaves only writers in other processes to collide, which `command`'s retry absorbs. It decides nothing: the version
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
