"""The event store: eventsourcing's PostgreSQL recorder, our msgspec transcoding and event metadata.

All contexts share one events table (`tutorconnect_events`), so every event has one global position and a
command may save aggregates of several contexts in one transaction."""

from __future__ import annotations

import functools
import random
import time
import typing
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import msgspec
import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import get_topic, resolve_topic

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
    """eventsourcing's recorder, plus `side_writes`: SQL run in the same transaction as the events.

    Used for the few things that must change atomically with events but may not enter the log (password
    hashes, refresh-token digests) and for command-side lookup rows (the account table the auth check reads).
    """

    def _insert_events(self, curs: Any, stored_events: Any, **kwargs: Any) -> None:
        for sql, params in kwargs.get("side_writes", ()):
            curs.execute(sql, params)


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

    def close(self) -> None:
        # The shared pool outlives one context; `close_all()` closes it.
        pass

    def connection(self) -> Any:
        """A pooled psycopg connection (dict rows) of the event store's database."""
        return self.recorder.datastore.get_connection()  # type: ignore[attr-defined]

    def record(self, *aggregates: Any, side_writes: Iterable[SideWrite] = ()) -> int:
        """Save aggregates (and side writes) in one transaction; return the last event's global position."""
        recordings = self.save(*aggregates, side_writes=list(side_writes))
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
            time.sleep(random.uniform(0, 0.002 * (i + 1)))  # jitter so racing writers do not collide again
    raise AssertionError("unreachable")


def is_unique_violation(exc: BaseException) -> bool:
    """True for a version clash or unique-key violation, however the driver wrapped it."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (IntegrityError, psycopg.errors.UniqueViolation)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
