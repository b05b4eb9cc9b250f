"""A projection that cannot apply an event: tried again with backoff, then stopped at that event (or the event
skipped, where the projection allows it) with the failure recorded, while every other projection, including
those sharing its thread and its transaction, goes on to the head. Live and in catch-up; retry after a fix; a
rebuild that meets such an event; and events carrying U+0000 from before the API refused it."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import psycopg
import pytest

from application import context
from application.identity import Identity
from application.settings import Settings
from domain.user import User
from projections import failures, follower, generations, waiting
from projections.audit_log import AuditLog
from projections.failures import EventFailed, ProjectionStopped
from projections.runner import Envelope, Projection, topic_of
from projections.subjects import Subjects
from projections.users_directory import UsersDirectory
from tests.platform.projections.support import column, connect, head, scalar, wait_until

pytestmark = pytest.mark.small_pool

REGISTERED = topic_of(User.Registered)  # type: ignore[attr-defined]


class Fragile(Projection):
    """Copies registered users' names; cannot apply a registration whose name starts with `poison`."""

    name = "fragile"
    tables = ("fragile_names",)
    topics = (REGISTERED,)
    poison: ClassVar[str] = "Poison"
    applied: ClassVar[int] = 0

    def ddl(self, names: dict[str, str]) -> str:
        return f"CREATE TABLE {names['fragile_names']} (user_id uuid PRIMARY KEY, full_name text NOT NULL)"

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        for e in events:
            if e.data["full_name"].startswith(type(self).poison):
                raise ValueError(f"cannot take {e.data['full_name']!r}")
        type(self).applied += 1
        with cur.copy(f"COPY {t['fragile_names']} (user_id, full_name) FROM STDIN") as copy:
            for e in events:
                copy.write_row([e.aggregate_id, e.data["full_name"]])


class Forgiving(Fragile):
    """The same, but an event it cannot apply may be skipped."""

    name = "forgiving"
    tables = ("forgiving_names",)
    skippable = True

    def ddl(self, names: dict[str, str]) -> str:
        return f"CREATE TABLE {names['forgiving_names']} (user_id uuid PRIMARY KEY, full_name text NOT NULL)"

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        super().apply(cur, events, {"fragile_names": t["forgiving_names"]})


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three tries 50 and 100 ms apart instead of four over ten seconds."""
    monkeypatch.setattr(failures, "ATTEMPTS", 3)
    monkeypatch.setattr(failures, "BACKOFF_S", (0.05, 0.1))
    monkeypatch.setattr(Fragile, "poison", "Poison")


def register(app: Identity, names: Sequence[str]) -> list[tuple[str, int]]:
    """Register users with these names directly through the application; (name, position of User.Registered)."""
    out = []
    with context.acting(actor_role="system"):
        for n in names:
            o = app.register(f"user-{secrets.token_hex(6)}@example.test", "Passw0rd-x", n, "student")
            at = scalar(
                app.settings.database_url,
                "SELECT notification_id FROM tutorconnect_events WHERE originator_id = %s AND topic = %s",
                (o.user["id"], REGISTERED),
            )
            out.append((n, int(at)))
    return out


@pytest.fixture
def follow(prepared: Settings) -> Iterator[Any]:
    """Start live followers over some projections (in one thread by default); stopped after the test."""
    started: list[tuple[threading.Event, list[threading.Thread]]] = []

    def start(projections: Sequence[Projection], threads: int = 1, batch_size: int = 5000) -> None:
        stop = threading.Event()
        started.append(
            (stop, follower.follow_all(prepared.database_url, projections, stop, threads, batch_size=batch_size))
        )

    yield start
    for stop, threads in started:
        stop.set()
        for t in threads:
            t.join(10)


def position(dsn: str, name: str) -> int:
    return int(scalar(dsn, "SELECT position FROM projection_tracking WHERE name = %s AND state = 'active'", (name,)))


def stopped(dsn: str, name: str) -> bool:
    return bool(scalar(dsn, "SELECT stopped FROM projection_tracking WHERE name = %s AND state = 'active'", (name,)))


def failure_rows(dsn: str, name: str) -> list[failures.Failure]:
    with connect(dsn) as conn:
        return [f for f in failures.current(conn) if f.name == name]


def _stopped_at_poison(dsn: str, poison_position: int, others: Sequence[str]) -> None:
    wait_until(lambda: stopped(dsn, "fragile"), 20, "fragile stopped")
    top = head(dsn)
    wait_until(lambda: all(position(dsn, n) == top for n in others), 20, "the other projections at the head")
    assert position(dsn, "fragile") == poison_position - 1
    (f,) = failure_rows(dsn, "fragile")
    assert (f.position, f.event_type, f.state, f.attempts) == (poison_position, "User.Registered", "stopped", 3)
    assert "ValueError" in f.error and "Poison" in f.error
    assert f.first_seen <= f.last_seen
    with connect(dsn) as conn:
        assert f"{f.aggregate_id}" in {str(r[0]) for r in conn.execute(
            "SELECT originator_id FROM tutorconnect_events WHERE notification_id = %s", (poison_position,))}  # fmt: skip
        with pytest.raises(ProjectionStopped) as caught:
            waiting.positions(conn, ["users_directory", "fragile"])
        assert caught.value.names == ["fragile"]
        assert waiting.positions(conn, ["users_directory", "audit_log"]) == top
    (status,) = [s for s in generations.status(dsn) if s.name == "fragile"]
    assert status.stopped and status.state == "active"


def test_a_failing_projection_stops_alone_in_a_shared_thread_and_resumes_after_a_fix(
    prepared: Settings, follow: Any
) -> None:
    dsn = prepared.database_url
    app = Identity(prepared)
    others = ["audit_log", "users_directory", "subjects"]
    follow([Fragile(), AuditLog(), UsersDirectory(), Subjects()])  # one thread: one transaction per round
    register(app, ["Ann", "Bob"])
    ((_, poison),) = register(app, ["Poison Pete"])
    register(app, ["Cleo", "Dan"])
    _stopped_at_poison(dsn, poison, others)
    # later events reach every other projection; the stopped one stays where it is
    register(app, ["Eve"])
    top = head(dsn)
    wait_until(lambda: all(position(dsn, n) == top for n in others), 20, "later events")
    assert position(dsn, "fragile") == poison - 1 and stopped(dsn, "fragile")
    assert failures.retry(dsn, "fragile") is True
    assert failures.retry(dsn, "fragile") is False  # not stopped any more: nothing to do
    # not fixed yet: it stops again at the same event, tried afresh
    wait_until(lambda: stopped(dsn, "fragile"), 20, "fragile stopped again")
    Fragile.poison = "no such name"  # the fix
    assert failures.retry(dsn, "fragile")
    wait_until(lambda: position(dsn, "fragile") == top, 20, "fragile caught up after the fix")
    assert not stopped(dsn, "fragile")
    assert failure_rows(dsn, "fragile") == []  # resolved: no failure holds it back
    names = column(dsn, "SELECT full_name FROM fragile_names ORDER BY full_name")
    assert names == ["Ann", "Bob", "Cleo", "Dan", "Eve", "Poison Pete"]


def test_a_failing_projection_stops_alone_in_catch_up(prepared: Settings, follow: Any) -> None:
    dsn = prepared.database_url
    app = Identity(prepared)
    register(app, [f"Early {i}" for i in range(12)])
    ((_, poison),) = register(app, ["Poison Ivy"])
    register(app, [f"Late {i}" for i in range(12)])
    assert head(dsn) > 40  # batches of 10: every projection starts far behind and catches up alone
    follow([Fragile(), AuditLog(), UsersDirectory(), Subjects()], batch_size=10)
    _stopped_at_poison(dsn, poison, ["audit_log", "users_directory", "subjects"])
    assert len(column(dsn, "SELECT full_name FROM fragile_names")) == 12  # every registration before it


def test_a_skippable_projection_records_the_event_and_goes_on(prepared: Settings, follow: Any) -> None:
    dsn = prepared.database_url
    app = Identity(prepared)
    follow([Forgiving(), UsersDirectory()], threads=2)
    register(app, ["Ann"])
    ((_, poison),) = register(app, ["Poison Pete"])
    register(app, ["Bob"])
    top = head(dsn)
    wait_until(lambda: position(dsn, "forgiving") == top, 20, "forgiving at the head")
    assert not stopped(dsn, "forgiving")
    (f,) = failure_rows(dsn, "forgiving")
    assert (f.position, f.state, f.attempts) == (poison, "skipped", 3)
    assert column(dsn, "SELECT full_name FROM forgiving_names ORDER BY 1") == ["Ann", "Bob"]
    with connect(dsn) as conn:
        assert failures.current(conn, include_skipped=False) == []  # a skip holds nothing back


def test_a_rebuild_refuses_an_event_it_cannot_apply_and_keeps_the_live_generation(prepared: Settings) -> None:
    dsn = prepared.database_url
    app = Identity(prepared)
    generations.ensure(dsn, [Fragile()])
    register(app, ["Ann"])
    ((_, poison),) = register(app, ["Poison Pete"])
    with pytest.raises(EventFailed) as caught:
        generations.rebuild(dsn, Fragile())
    assert caught.value.event.position == poison and "ValueError" in str(caught.value)
    assert column(dsn, "SELECT generation FROM projection_tracking WHERE name = 'fragile' AND state = 'active'") == [1]
    Fragile.poison = "no such name"
    assert generations.rebuild(dsn, Fragile()) > 1
    assert position(dsn, "fragile") == head(dsn)


def test_old_events_with_nul_text_project_with_the_character_replaced(prepared: Settings, follow: Any) -> None:
    """Before the API refused U+0000, such a name was recorded and stopped every projection of its thread."""
    dsn = prepared.database_url
    app = Identity(prepared)
    follow([AuditLog(), UsersDirectory(), Subjects()])
    ((_, pos),) = register(app, ["Eve\x00Null"])
    register(app, ["After Eve"])
    top = head(dsn)
    wait_until(lambda: all(position(dsn, n) == top for n in ("audit_log", "users_directory")), 20, "head")
    assert "Eve\ufffdNull" in column(dsn, "SELECT full_name FROM users_directory")
    data = scalar(dsn, "SELECT data->>'full_name' FROM audit_log WHERE position = %s", (pos,))
    assert data == "Eve\ufffdNull"
    assert not any(s.stopped for s in generations.status(dsn))
    with connect(dsn) as conn:
        assert failures.current(conn) == []


def test_a_stored_event_that_is_not_json_stops_only_its_readers(prepared: Settings, follow: Any) -> None:
    """An event damaged in storage reaches projections without its fields: those that need them stop (or skip) at
    it, the rest go on."""
    import uuid

    dsn = prepared.database_url
    app = Identity(prepared)
    follow([AuditLog(), UsersDirectory(), Subjects()])
    register(app, ["Ann"])
    with connect(dsn) as conn:
        conn.execute(
            "INSERT INTO tutorconnect_events (originator_id, originator_version, topic, state) VALUES (%s, 1, %s, %s)",
            (uuid.uuid4(), REGISTERED, b"\xffnot json"),
        )
        damaged = int(scalar(dsn, "SELECT max(notification_id) FROM tutorconnect_events"))
    register(app, ["Bob"])
    top = head(dsn)
    wait_until(lambda: stopped(dsn, "users_directory"), 20, "users_directory stopped at the damaged event")
    wait_until(lambda: position(dsn, "audit_log") == top and position(dsn, "subjects") == top, 20, "the others")
    assert position(dsn, "users_directory") == damaged - 1
    states = {
        f.name: (f.position, f.state) for f in failure_rows(dsn, "users_directory") + failure_rows(dsn, "audit_log")
    }
    assert states == {"users_directory": (damaged, "stopped")}, states
    # the audit log, which reads every event, records the damaged one as what it is
    assert "_undecodable" in scalar(dsn, "SELECT data::text FROM audit_log WHERE position = %s", (damaged,))
