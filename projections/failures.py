"""Events a projection cannot apply: find the one, retry it with backoff, then stop that projection (or skip the
event, where its policy allows), and keep a record an operator can read and act on.

A batch that fails is rolled back whole and run again carefully (`apply_prefix`): in savepoints, halving the
events until the first one that fails is found; everything before it is applied and committed with the other
projections' progress, and the failing projection's position stays just before that event. The happy path pays
nothing for this (no savepoint per batch). Errors of the connection or server (psycopg's OperationalError and
InterfaceError: a lost connection, a restart, a cancelled statement, a deadlock) are not the event's fault: they
abort the round and the follower starts again, as before.

What each projection may do with an event it still cannot apply after its attempts is its `skippable` flag
(docs/ARCHITECTURE.md, "When a projection cannot apply an event"): read models whose rows fold every event of an
entity, and the money read models above all, stop rather than diverge; append-only ones that serve one item per
event (the audit log, notifications, messages) record the event as skipped and go on."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg

log = logging.getLogger("tutorconnect.projections")

# Not the event's fault: the round is aborted and run again once the database is back.
INFRASTRUCTURE = (psycopg.OperationalError, psycopg.InterfaceError)
ATTEMPTS = 4  # tries of one event before its projection stops (or skips it)
BACKOFF_S = (0.5, 2.0, 8.0)  # wait before the 2nd, 3rd and 4th try


class Event(Protocol):
    """What is recorded of a failing event (runner.Envelope)."""

    position: int
    aggregate_id: Any
    version: int
    type: str


class ProjectionStopped(Exception):
    """A read model a query needs is stopped at an event it could not apply (503 projection-lagging, naming it)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        super().__init__(
            f"read model {', '.join(self.names)} stopped at an event it could not apply; operators are told"
            " (tutorconnect projections status) and resume it with `tutorconnect projections retry NAME`"
        )


class EventFailed(Exception):
    """A projection could not apply an event and may not skip it (raised where nobody retries: a rebuild)."""

    def __init__(self, name: str, event: Event, error: BaseException) -> None:
        self.name, self.event, self.error = name, event, error
        super().__init__(f"{name} cannot apply event {event.position} ({event.type}): {describe(error)}")


def describe(error: BaseException) -> str:
    """One line naming the error, for the record and the operator."""
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:2000]


def apply_prefix(
    conn: psycopg.Connection[Any], apply: Callable[[Sequence[Any]], None], events: Sequence[Any]
) -> tuple[int, Any | None, BaseException | None]:
    """Apply the longest run of leading `events` that applies without error, in savepoints; (events applied, the
    first event that fails or None, its error). Halving finds the failing event in O(log n) tries."""
    applied, remaining = 0, list(events)
    while remaining:
        chunk = remaining
        while True:
            try:
                with conn.transaction():  # a savepoint inside the batch's transaction
                    apply(chunk)
                break
            except INFRASTRUCTURE:
                raise
            except Exception as error:  # any error of the projection's own code or SQL on this event
                if len(chunk) == 1:
                    return applied, chunk[0], error
                chunk = chunk[: len(chunk) // 2]
        applied += len(chunk)
        remaining = remaining[len(chunk) :]
    return applied, None, None


@dataclass
class Trouble:
    """What a follower remembers of a projection's failing event between tries."""

    position: int
    attempts: int
    retry_at: float


class FailurePolicy:
    """Per follower: how often an event is tried, how long to wait in between, and what happens after."""

    def __init__(self, attempts: int | None = None, backoff_s: Sequence[float] | None = None) -> None:
        # None: the module's ATTEMPTS and BACKOFF_S as they are when an event fails (tests shorten them)
        self._attempts = attempts
        self._backoff_s = tuple(backoff_s) if backoff_s is not None else None
        self.troubles: dict[tuple[str, int], Trouble] = {}

    @property
    def attempts(self) -> int:
        """Tries of one event before its projection stops or skips it."""
        return self._attempts if self._attempts is not None else ATTEMPTS

    @property
    def backoff_s(self) -> tuple[float, ...]:
        """Waits between tries."""
        return self._backoff_s if self._backoff_s is not None else tuple(BACKOFF_S)

    def waiting(self, name: str, generation: int) -> bool:
        """True while the projection waits before trying its failing event again."""
        trouble = self.troubles.get((name, generation))
        return trouble is not None and trouble.retry_at > time.monotonic()

    def passed(self, name: str, generation: int, position: int) -> None:
        """The projection got past `position`: forget any trouble before it."""
        trouble = self.troubles.get((name, generation))
        if trouble is not None and position >= trouble.position:
            del self.troubles[(name, generation)]

    def failed(
        self,
        conn: psycopg.Connection[Any],
        name: str,
        generation: int,
        skippable: bool,
        event: Event,
        error: BaseException,
    ) -> int:
        """Record a failure of `event` (inside the batch's transaction) and decide: the position the projection
        moves to: just before the event (to try again later, or stopped there), or the event itself (skipped)."""
        key = (name, generation)
        trouble = self.troubles.get(key)
        if trouble is None or trouble.position != event.position:
            trouble = Trouble(event.position, 0, 0.0)
        trouble.attempts += 1
        exhausted = trouble.attempts >= self.attempts
        state = ("skipped" if skippable else "stopped") if exhausted else "retrying"
        record(conn, name, generation, event, error, trouble.attempts, state)
        if not exhausted:
            wait = self.backoff_s[min(trouble.attempts - 1, len(self.backoff_s) - 1)] if self.backoff_s else 0.0
            trouble.retry_at = time.monotonic() + wait
            self.troubles[key] = trouble
            log.warning("%s: event %s (%s) failed (try %d): %s", name, event.position, event.type,
                        trouble.attempts, describe(error))  # fmt: skip
            return event.position - 1
        self.troubles.pop(key, None)
        if skippable:
            log.error("%s: skipped event %s (%s) after %d tries: %s", name, event.position, event.type,
                      trouble.attempts, describe(error))  # fmt: skip
            return event.position
        conn.execute(
            "UPDATE projection_tracking SET stopped = true WHERE name = %s AND generation = %s", (name, generation)
        )
        log.error("%s: STOPPED at event %s (%s) after %d tries: %s\n%s", name, event.position, event.type,
                  trouble.attempts, describe(error), "".join(traceback.format_exception(error)))  # fmt: skip
        return event.position - 1


def record(
    conn: psycopg.Connection[Any],
    name: str,
    generation: int,
    event: Event,
    error: BaseException,
    attempts: int,
    state: str,
) -> None:
    """Upsert the failure row of (projection, generation, event)."""
    conn.execute(
        "INSERT INTO projection_failures (name, generation, position, aggregate_id, aggregate_version, event_type,"
        " error, attempts, state) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (name, generation, position) DO UPDATE SET error = excluded.error,"
        " attempts = excluded.attempts, state = excluded.state, last_seen = now()",
        (name, generation, event.position, event.aggregate_id, event.version, event.type, describe(error),
         attempts, state),
    )  # fmt: skip


@dataclass(frozen=True)
class Failure:
    """A recorded failure, as status and /readyz show it."""

    name: str
    generation: int
    position: int
    aggregate_id: str
    aggregate_version: int
    event_type: str
    error: str
    attempts: int
    state: str  # retrying | stopped | skipped
    first_seen: datetime
    last_seen: datetime


def current(conn: psycopg.Connection[Any], include_skipped: bool = True) -> list[Failure]:
    """The failures of active generations that still hold a projection back (retrying or stopped, at an event
    after its position), and, unless told otherwise, the events skipped."""
    rows = conn.execute(
        "SELECT f.name, f.generation, f.position, f.aggregate_id::text, f.aggregate_version, f.event_type, f.error,"
        " f.attempts, f.state, f.first_seen, f.last_seen FROM projection_failures f JOIN projection_tracking t"
        " ON t.name = f.name AND t.generation = f.generation AND t.state = 'active'"
        " WHERE (f.state IN ('retrying', 'stopped') AND f.position > t.position) OR (%s AND f.state = 'skipped')"
        " ORDER BY f.name, f.position",
        (include_skipped,),
    ).fetchall()
    return [Failure(*(r.values() if isinstance(r, dict) else r)) for r in rows]


def retry(dsn: str, name: str) -> bool:
    """Let a stopped projection try its failing event again (after a fix); False if it was not stopped."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        n = conn.execute(
            "UPDATE projection_tracking SET stopped = false WHERE name = %s AND state = 'active' AND stopped", (name,)
        ).rowcount
        if n:
            conn.execute(
                "UPDATE projection_failures f SET state = 'retrying', attempts = 0 FROM projection_tracking t"
                " WHERE t.name = f.name AND t.generation = f.generation AND t.state = 'active' AND f.name = %s"
                " AND f.state = 'stopped'",
                (name,),
            )
    return bool(n)
