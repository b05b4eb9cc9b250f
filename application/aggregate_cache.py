"""The aggregate cache: eventsourcing's repository with its cache used copy-on-write, and several aggregates brought
up to date in one query (a speed-up with its own room: the store and the commands only call `get_many`, `remember`
and `get`)."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterable
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.persistence import StoredEvent

from application.pg_arrays import Int4Array, UuidArray

EVENTS_TABLE = "tutorconnect_events"  # every context's events, one log
T = TypeVar("T")


def _copy(aggregate: T) -> T:
    """An independent copy of an aggregate: pickle round trip, ~5x faster than copy.deepcopy for the dict-heavy
    aggregates here (a credit account with 20 lots and 40 holds: 77 vs 365 us)."""
    # the bytes are the ones just made from our own object, never input from outside
    copied: T = pickle.loads(pickle.dumps(aggregate, pickle.HIGHEST_PROTOCOL))  # noqa: S301
    return copied


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
        cached = self._cached(wanted, shared, taken)
        newer = self._newer_events(wanted, cached)
        out: dict[UUID, Any] = {}
        for i in wanted:
            base = cached.get(i)  # the caller's own copy, the taken object, or the shared one
            events = newer.get(i)
            if not events:
                if base is not None:
                    out[i] = base
                continue
            aggregate = self._brought_up(_copy(base) if base is not None and i in shared else base, events)
            if aggregate is None:
                continue
            if i in shared:
                self.remember(aggregate)
            out[i] = aggregate
        return out

    def _cached(self, wanted: list[UUID], shared: set[UUID], taken: set[UUID]) -> dict[UUID, Any]:
        """What the cache holds of `wanted`: shared and taken ones as they are, the rest copied."""
        cached: dict[UUID, Any] = {}
        cache: Any = self.cache  # holds (version when cached, aggregate) pairs: see remember
        if cache is None:
            return cached
        for i in wanted:
            # A writable reader copies the cached object, and a taker removes it and then changes it in place:
            # under one lock per id, so a copy is never made of an object a taker has begun to change (found by
            # bench/soak.py: a cancel's calendar read raced a booking's take, OriginatorVersionError).
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
        return cached

    def _newer_events(self, wanted: list[UUID], cached: dict[UUID, Any]) -> dict[UUID, list[Any]]:
        """The stored events of each wanted aggregate after the version cached of it (all of them if none), in one
        SELECT."""
        versions = [cached[i].version if i in cached else 0 for i in wanted]
        recorder: Any = self.event_store.recorder
        with recorder.datastore.get_connection() as conn, conn.cursor(binary=True) as curs:
            curs.execute(self.SELECT_NEWER, (UuidArray(wanted), Int4Array(versions)), prepare=True)
            rows = curs.fetchall()
        newer: dict[UUID, list[Any]] = {}
        for r in rows:
            newer.setdefault(r["originator_id"], []).append(r)
        return newer

    def _brought_up(self, aggregate: Any, rows: list[Any]) -> Any:
        """`aggregate` (None: not cached) with the stored events `rows` applied.

        Applied here rather than by eventsourcing's `project_aggregate`, whose per-event
        `assert isinstance(event, CanMutateProtocol)` checks a runtime Protocol, which in Python 3.11 walks the
        protocol's attributes each time: ~5 % of the API's CPU on a booking (py-spy, docs/PERFORMANCE.md)."""
        mapper = self.event_store.mapper
        for r in rows:
            stored = StoredEvent(
                originator_id=r["originator_id"],
                originator_version=r["originator_version"],
                topic=r["topic"],
                state=bytes(r["state"]),
            )
            event: Any = mapper.to_domain_event(stored)
            aggregate = event.mutate(aggregate)
        return aggregate

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
