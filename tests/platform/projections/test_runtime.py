"""The projection runtime against real PostgreSQL: batched catch-up, commit order vs. id order, crash safety
(kill -9 of a real projector process), rebuild-and-switch, and read-your-writes waiting."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError
from psycopg.rows import dict_row

from application.catalog import Catalog
from application.identity import Identity
from application.settings import Settings
from application.store import close_all
from domain.subject import Subject
from domain.user import User
from projections import generations, waiting
from projections.audit_log import AuditLog
from projections.follower import Follower
from projections.runner import Projection, Runner, topic_of
from projections.subjects import Subjects
from projections.users_directory import UsersDirectory
from tests.platform.projections.support import (
    RecordingAuditLog,
    column,
    column_pairs,
    connect,
    event_ids,
    exists,
    head,
    scalar,
    seed_copies,
    snapshot,
    tracking,
    view_target,
    wait_until,
)
from tests.support.system import server_env, spawn, stop_process

pytestmark = pytest.mark.small_pool

REGISTERED = topic_of(User.Registered)  # type: ignore[attr-defined]
SESSION_STARTED = topic_of(User.SessionStarted)  # type: ignore[attr-defined]
CREATED = topic_of(Subject.Created)


def new_users(app: Identity, prefix: str, n: int) -> list[User]:
    return [User.register(f"{prefix}-{i}@example.test", f"User {prefix} {i}", "student", app.now()) for i in range(n)]


def new_subjects(prefix: str, n: int) -> list[Subject]:
    return [Subject.create(f"Subject {prefix} {i}", "Category") for i in range(n)]


def audit_rows_match_events(dsn: str) -> None:
    """audit_log (through its view) holds exactly one row per event, with the event's identity and type."""
    with connect(dsn) as c:
        missing = c.execute(
            "SELECT e.notification_id FROM tutorconnect_events e"
            " LEFT JOIN audit_log a ON a.position = e.notification_id"
            " WHERE a.position IS NULL OR a.aggregate_id <> e.originator_id"
            " OR a.aggregate_version <> e.originator_version"
            " OR a.type <> split_part(e.topic, ':', 2) ORDER BY 1 LIMIT 20"
        ).fetchall()
        extra = c.execute(
            "SELECT a.position FROM audit_log a LEFT JOIN tutorconnect_events e ON e.notification_id = a.position"
            " WHERE e.notification_id IS NULL ORDER BY 1 LIMIT 20"
        ).fetchall()
        counts = c.execute(
            "SELECT (SELECT count(*) FROM tutorconnect_events), (SELECT count(*) FROM audit_log),"
            " (SELECT count(DISTINCT position) FROM audit_log)"
        ).fetchone()
    assert missing == [], f"events without a matching audit_log row: {missing}"
    assert extra == [], f"audit_log rows without an event: {extra}"
    assert counts is not None and counts[0] == counts[1] == counts[2], counts


# ------------------------------------------------------------------------------------------ a. batches


def test_catch_up_in_small_batches_gives_one_row_per_event(prepared: Settings) -> None:
    dsn = prepared.database_url
    catalog, identity = Catalog(prepared), Identity(prepared)
    subjects: list[Subject] = []
    for r in range(3):  # 3 x (1,000 subjects in one transaction + 40 users in another)
        batch = new_subjects(f"r{r}", 1000)
        catalog.save(*batch)
        subjects += batch
        identity.save(*new_users(identity, f"r{r}", 40))
    for s in subjects[:150]:
        s.rename(s.name + " (renamed)")
    for s in subjects[150:200]:
        s.retire()
    catalog.save(*subjects[:200])
    identity.save(*new_users(identity, "tail", 30))  # the log ends with events the subjects projection ignores
    ids = event_ids(dsn)
    assert len(ids) == 3 * 1040 + 200 + 30 and ids == list(range(1, len(ids) + 1))

    # audit_log, batch_size 100: stop part-way with `until`, then a fresh runner carries on from the tracking row.
    progress: list[int] = []
    first = Runner(dsn, AuditLog(), 1, batch_size=100)
    assert first.catch_up(until=1234, progress=progress.append) == 1234
    assert first.position() == 1234
    first.close()
    assert progress == [*range(100, 1201, 100), 1234, 1234]  # full batches end at their last row; then `until`
    progress.clear()
    second = Runner(dsn, AuditLog(), 1, batch_size=100)
    applied = second.catch_up(progress=progress.append)
    assert applied == len(ids) - 1234
    assert progress == [*range(1334, len(ids) + 1, 100), len(ids), len(ids)]
    assert all(b - a <= 100 for a, b in zip([1234, *progress], progress, strict=False))
    assert second.catch_up() == 0  # nothing left: a second pass applies nothing
    second.close()

    audit_rows_match_events(dsn)
    assert column(dsn, "SELECT position FROM audit_log ORDER BY position") == ids
    [(gen, state, position, processed)] = tracking(dsn, "audit_log")
    assert (gen, state, position, processed) == (1, "active", head(dsn), len(ids))

    # A topic-filtered projection in small batches: its position still reaches the head (the tail is users).
    sub_runner = Runner(dsn, Subjects(), 1, batch_size=100)
    assert sub_runner.catch_up() == 3000 + 150 + 50
    sub_runner.close()
    assert tracking(dsn, "subjects") == [(1, "active", head(dsn), 3200)]
    with connect(dsn) as c:
        assert c.execute("SELECT count(*), count(*) FILTER (WHERE active) FROM subjects").fetchone() == (3000, 2950)
        renamed = c.execute("SELECT count(*) FROM subjects WHERE name LIKE '%(renamed)'").fetchone()
        assert renamed == (150,)
    user_runner = Runner(dsn, UsersDirectory(), 1, batch_size=7)
    assert user_runner.catch_up() == 150
    user_runner.close()
    assert tracking(dsn, "users_directory") == [(1, "active", head(dsn), 150)]
    assert scalar(dsn, "SELECT count(*) FROM users_directory") == 150


# --------------------------------------------------------------------------- b. commit order vs. id order

GATE_SQL = """
CREATE TABLE test_gate (originator_id uuid PRIMARY KEY, fail boolean NOT NULL DEFAULT false);
CREATE FUNCTION test_gate_hold() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    must_fail boolean;
BEGIN
    SELECT g.fail INTO must_fail FROM test_gate g WHERE g.originator_id = NEW.originator_id;
    IF FOUND THEN
        -- The writer has its table lock and its notification ids; hold it here, uncommitted, until the
        -- test releases advisory lock 4242.
        PERFORM pg_advisory_xact_lock_shared(4242);
        IF must_fail THEN
            RAISE EXCEPTION 'test gate: writer aborted after its ids were assigned';
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER test_gate_hold AFTER INSERT ON tutorconnect_events FOR EACH ROW EXECUTE FUNCTION test_gate_hold();
"""


class Stepper(threading.Thread):
    """A live projector: Runner.step in a tight loop on its own thread, noting the position after each step."""

    def __init__(self, dsn: str, projection: Projection, batch_size: int) -> None:
        super().__init__(daemon=True)
        self.runner = Runner(dsn, projection, 1, batch_size=batch_size)
        self.halt = threading.Event()
        self.positions: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                self.runner.step()
                self.positions.append(self.runner.position())
                time.sleep(0.001)  # a runner stepping in a tight loop, as a busy follower does; yield to the writers
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            self.runner.close()

    @property
    def position(self) -> int:
        return self.positions[-1] if self.positions else 0

    def reach(self, position: int, timeout: float = 10.0) -> None:
        wait_until(lambda: self.error is not None or self.position >= position, timeout, f"position {position}")
        assert self.error is None, self.error

    def finish(self) -> None:
        self.halt.set()
        self.join(10)
        assert not self.is_alive()
        assert self.error is None, self.error


class Writer(threading.Thread):
    """One application-layer save on its own thread (its own pooled connection)."""

    def __init__(self, app: Any, *aggregates: Any) -> None:
        super().__init__(daemon=True)
        self.app, self.aggregates = app, aggregates
        self.ids: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.ids = [r.notification.id for r in self.app.save(*self.aggregates)]
        except BaseException as e:
            self.error = e


def waiting_backends(dsn: str, wait_event: str) -> int:
    return int(
        scalar(
            dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND wait_event = %s",
            (wait_event,),
        )
    )


def last_issued_id(dsn: str) -> int:
    """The sequence's last value: ids handed out, committed or not."""
    seq = scalar(dsn, "SELECT pg_get_serial_sequence('tutorconnect_events', 'notification_id')")
    return int(scalar(dsn, f"SELECT last_value FROM {seq}"))


def test_writer_held_open_after_taking_ids_is_never_skipped(prepared: Settings) -> None:
    """Writer A gets its ids, then its transaction is held open (a trigger waits on an advisory lock the test
    owns). Writer B tries to commit meanwhile. A runner stepping live must end with every event of both, in id
    order, none skipped; then the same with A rolling back after taking its ids (a gap that never fills)."""
    dsn = prepared.database_url
    catalog, identity = Catalog(prepared), Identity(prepared)
    catalog.save(*new_subjects("base", 30))
    with connect(dsn) as c:
        c.execute(GATE_SQL)
    projection = RecordingAuditLog()
    stepper = Stepper(dsn, projection, batch_size=7)
    stepper.start()
    control = connect(dsn)
    try:
        stepper.reach(30)

        def round_trip(fail: bool) -> tuple[Writer, Writer, list[int]]:
            before = head(dsn)
            gated = new_subjects(f"gated-{fail}", 8)
            with connect(dsn) as c, c.cursor() as cur:
                cur.executemany("INSERT INTO test_gate VALUES (%s, %s)", [(s.id, fail) for s in gated])
            control.execute("SELECT pg_advisory_lock(4242)")
            a = Writer(catalog, *gated)
            a.start()
            wait_until(lambda: waiting_backends(dsn, "advisory") == 1, 10, "writer A held after its insert")
            a_issued = list(range(before + 1, last_issued_id(dsn) + 1))
            assert len(a_issued) == 8  # A holds ids before+1..before+8, uncommitted
            b = Writer(identity, *new_users(identity, f"b-{fail}", 3))
            b.start()
            wait_until(lambda: waiting_backends(dsn, "relation") == 1, 10, "writer B queued behind A")
            seen = len(stepper.positions)
            wait_until(lambda: len(stepper.positions) >= seen + 5, 3, "the runner to step while A is open")
            assert stepper.position == before  # nothing committed yet: the runner did not move
            assert a.is_alive() and b.is_alive()
            control.execute("SELECT pg_advisory_unlock(4242)")
            a.join(10)
            b.join(10)
            return a, b, a_issued

        a, b, a_issued = round_trip(fail=False)
        assert a.error is None and b.error is None, (a.error, b.error)
        assert a.ids == a_issued and min(b.ids) > max(a.ids)  # ids follow commit order
        stepper.reach(max(b.ids))

        a2, b2, a2_issued = round_trip(fail=True)
        assert a2.error is not None and "test gate" in str(a2.error)
        assert b2.error is None, b2.error
        assert min(b2.ids) > max(a2_issued)
        assert not set(a2_issued) & set(event_ids(dsn))  # a gap that will never fill
        stepper.reach(max(b2.ids), timeout=5)  # passed over without waiting for it
    finally:
        control.close()
        stepper.finish()

    ids = event_ids(dsn)
    assert projection.seen == ids  # every event, each once, in id order
    assert all(p in ids for p in a.ids + b.ids + b2.ids)
    assert stepper.positions == sorted(stepper.positions)
    audit_rows_match_events(dsn)
    assert tracking(dsn, "audit_log") == [(1, "active", head(dsn), len(ids))]


def test_concurrent_writers_with_slow_commits_and_clashes_skip_nothing(prepared: Settings) -> None:
    """Four writers commit concurrently, each holding its transaction open for a random moment after taking
    its ids, and some of their saves clash (rolled back: gaps). A runner in tiny batches sees every event."""
    dsn = prepared.database_url
    with connect(dsn) as c:
        c.execute(
            "CREATE FUNCTION test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_sleep(random() * 0.008); RETURN NULL; END $$;"
            " CREATE TRIGGER test_slow_commit AFTER INSERT ON tutorconnect_events"
            " FOR EACH STATEMENT EXECUTE FUNCTION test_slow_commit();"
        )
    catalog = Catalog(prepared)
    projection = RecordingAuditLog()
    stepper = Stepper(dsn, projection, batch_size=3)
    stepper.start()
    clashes = [0] * 4
    errors: list[BaseException] = []

    def write(k: int) -> None:
        rng = random.Random(k)
        try:
            mine = new_subjects(f"w{k}", 2)
            catalog.save(*mine)
            for i in range(30):
                if i % 7 == 3:  # a stale copy: the save clashes and rolls back after taking ids
                    stale: Subject = catalog.repository.get(mine[0].id)
                    fresh: Subject = catalog.repository.get(mine[0].id)
                    fresh.rename(f"fresh {k} {i}")
                    catalog.save(fresh)
                    stale.rename(f"stale {k} {i}")
                    try:
                        catalog.save(*new_subjects(f"w{k}-{i}", 2), stale)
                    except IntegrityError:
                        clashes[k] += 1
                    continue
                catalog.save(*new_subjects(f"w{k}-{i}", rng.randint(1, 3)))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert clashes == [4, 4, 4, 4]
        ids = event_ids(dsn)
        assert last_issued_id(dsn) > len(ids)  # the clashes left gaps
        stepper.reach(head(dsn))
    finally:
        stepper.finish()
    assert projection.seen == ids
    audit_rows_match_events(dsn)


def test_rolled_back_insert_leaves_a_gap_that_is_passed_over(prepared: Settings) -> None:
    dsn = prepared.database_url
    catalog = Catalog(prepared)
    _, p1 = catalog.create_subject("Algebra", "Maths")
    subject_id = UUID(str(column(dsn, "SELECT originator_id FROM tutorconnect_events")[0]))
    stale: Subject = catalog.repository.get(subject_id)
    catalog.rename_subject(subject_id, "Linear algebra")
    stale.rename("Abstract algebra")
    with pytest.raises(IntegrityError):  # a version clash in the middle of a 4-event save
        catalog.save(*new_subjects("lost", 3), stale)
    _, p_after = catalog.create_subject("Geometry", "Maths")
    ids = event_ids(dsn)
    gap = sorted(set(range(1, p_after + 1)) - set(ids))
    assert len(gap) >= 3 and p1 < gap[0] and gap[-1] < p_after  # the clash burnt ids in the middle

    runner = Runner(dsn, AuditLog(), 1, batch_size=2)
    started = time.monotonic()
    assert runner.catch_up() == len(ids)
    assert time.monotonic() - started < 3  # no waiting for the gap to fill
    assert runner.position() == p_after

    # A clash as the newest write: the gap is at the head; the runner stays at the last committed event.
    stale = catalog.repository.get(subject_id)
    catalog.retire_subject(subject_id)
    stale.rename("Never")
    with pytest.raises(IntegrityError):
        catalog.save(stale)
    assert last_issued_id(dsn) > head(dsn)
    assert runner.catch_up() == 1 and runner.position() == head(dsn)
    _, p_last = catalog.create_subject("Topology", "Maths")
    assert runner.catch_up() == 1 and runner.position() == p_last
    runner.close()
    audit_rows_match_events(dsn)
    assert tracking(dsn, "audit_log") == [(1, "active", p_last, len(event_ids(dsn)))]


# ----------------------------------------------------------------------------------------- c. kill -9

UNCOMMITTED_BATCHES = (
    "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s"
    " AND backend_xid IS NOT NULL"  # a transaction that has written rows and not yet committed
)
MODELS = ("audit_log", "subjects", "users_directory")


def test_kill_9_during_catch_up_loses_and_duplicates_nothing(prepared: Settings, tmp_path: Path) -> None:
    dsn = prepared.database_url
    catalog, identity = Catalog(prepared), Identity(prepared)
    _, subject_position = catalog.create_subject("Template", "Seed")
    identity.register("template@example.test", "Passw0rd-test", "Template", "student")
    templates = dict(column_pairs(dsn, "SELECT topic, notification_id FROM tutorconnect_events"))
    # 50,000 more: mostly sessions (only audit_log reads them), some subjects and users for the row-by-row models.
    for _ in range(10):
        seed_copies(dsn, templates[SESSION_STARTED], 4_000)
        seed_copies(dsn, subject_position, 600)
        seed_copies(dsn, templates[REGISTERED], 400)
    total = len(event_ids(dsn))
    assert total == 50_004
    subjects_n, users_n = 6_001, 4_001
    log = tmp_path / "projectors.log"
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    kills: list[dict[str, Any]] = []

    def projectors(tag: str) -> Any:
        return spawn(["projectors"], server_env(prepared, DB_POOL_SIZE="1", PGAPPNAME=tag), log)

    close_all()  # the test process keeps one connection from here on: the shared server's slots are few
    monitor = connect(dsn)

    def positions() -> dict[str, int]:
        rows = monitor.execute("SELECT name, position FROM projection_tracking WHERE state = 'active'").fetchall()
        return {name: int(position) for name, position in rows}

    with monitor:
        for k in range(5):
            # Start it; let it commit an audit_log batch (even rounds) or wait 1-3 s (odd rounds); wait a random
            # moment more, then kill it the next instant a batch of `targets` holds uncommitted rows.
            tag = f"projectors-{k}"
            targets = ("audit_log",) if k % 2 == 0 else ("subjects", "users_directory")
            if k % 2 == 1:
                # The folded models take a batch of 5,000 in tens of milliseconds: give them fresh work to be
                # killed in the middle of (they would otherwise have finished during an earlier round).
                seed_copies(dsn, subject_position, 12_000)
                seed_copies(dsn, templates[REGISTERED], 12_000)
                total, subjects_n, users_n = total + 24_000, subjects_n + 12_000, users_n + 12_000
            before = positions()["audit_log"]
            proc = projectors(tag)
            try:
                if k % 2 == 0 and before < total:
                    wait_until(lambda: positions()["audit_log"] > before, 30, "an audit_log batch", 0.02)  # noqa: B023
                    time.sleep(rng.uniform(0, 0.5))  # a random moment into the catch-up: where the kill lands varies
                    deadline = time.monotonic() + 3.0
                else:
                    deadline = time.monotonic() + 20.0  # from the process's start: kill at the first open batch
                hit: list[str] = []
                while time.monotonic() < deadline and proc.poll() is None:
                    if all(positions()[m] == total for m in targets):
                        break
                    queries = [str(r[0]) for r in monitor.execute(UNCOMMITTED_BATCHES, (tag,)).fetchall()]
                    hit = [m for m in MODELS if any(f"{m}__g" in q for q in queries)]
                    if set(hit) & set(targets):
                        break
                    time.sleep(0.002)  # sample pg_stat_activity often enough to catch a batch's open transaction
            finally:
                alive = proc.poll() is None
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            assert alive, f"projectors exited {proc.returncode} before the kill:\n{log.read_text()[-3000:]}"
            kills.append({"uncommitted": hit, **positions()})

    hits = [m for k in kills for m in k["uncommitted"]]
    assert "audit_log" in hits and ("subjects" in hits or "users_directory" in hits), kills  # mid-batch kills
    assert any(0 < k["audit_log"] < total for k in kills), kills  # ... during catch-up

    proc = projectors("projectors-final")
    try:
        with connect(dsn) as monitor:
            wait_until(lambda: set(positions().values()) == {total}, 45, f"catch-up after kills {kills}", 0.2)
    finally:
        stop_process(proc)

    audit_rows_match_events(dsn)
    statuses = {s.name: s for s in generations.status(dsn)}
    assert {"audit_log", "subjects", "users_directory"} <= set(statuses)
    for s in statuses.values():  # every projection the process runs
        assert (s.generation, s.state, s.position, s.head, s.lag) == (1, "active", total, total, 0), s
    # events_processed is bumped in each batch's transaction: equal counts mean each event applied once.
    assert statuses["audit_log"].events_processed == total
    assert statuses["subjects"].events_processed == subjects_n
    assert statuses["users_directory"].events_processed == users_n
    assert scalar(dsn, "SELECT count(*) FROM subjects") == subjects_n
    assert scalar(dsn, "SELECT count(*) FROM users_directory") == users_n
    assert total == len(event_ids(dsn))
    with connect(dsn) as c:
        row = c.execute(
            "SELECT count(*) FROM tutorconnect_events e LEFT JOIN subjects s ON s.subject_id = e.originator_id"
            " WHERE e.topic = %s AND (s.subject_id IS NULL OR s.created_position <> e.notification_id)",
            (CREATED,),
        ).fetchone()
        assert row == (0,)
        row = c.execute(
            "SELECT count(*) FROM tutorconnect_events e LEFT JOIN users_directory u ON u.user_id = e.originator_id"
            " WHERE e.topic = %s AND (u.user_id IS NULL OR u.registered_position <> e.notification_id)",
            (REGISTERED,),
        ).fetchone()
        assert row == (0,)


# ------------------------------------------------------------------------------------------ d. rebuild


def make_history(settings: Settings) -> None:
    """A varied history through the application layer: every users_directory and subjects event type."""
    from application.accounts import Account

    identity, catalog = Identity(settings), Catalog(settings)
    users = []
    for i in range(12):
        role = ("student", "tutor")[i % 2]
        o = identity.register(f"Person.{i}@Example.test", "Passw0rd-test", f"Person {i}", role)
        users.append(Account(UUID(o.user["id"]), role))
    for i, u in enumerate(users):
        if i % 3 == 1:
            identity.login(f"person.{i}@example.test", "Passw0rd-test")
        if i % 2 == 0:
            identity.update_profile(u, {"full_name": f"Renamed {i}", "timezone": "Europe/Paris", "language": "fr"})
        if i % 3 == 0:
            identity.admin_update(u.user_id, role="admin")
        if i % 4 == 1:
            identity.admin_update(u.user_id, is_active=False)
        if i % 8 == 1:
            identity.admin_update(u.user_id, is_active=True)
        if i % 5 == 4:
            identity.admin_delete(u.user_id)
    for i in range(15):
        view, _ = catalog.create_subject(f"Course {i}", ("Maths", "Music", "Languages")[i % 3])
        if i % 2:
            catalog.rename_subject(UUID(view["id"]), f"Course {i} (advanced)")
        if i % 4 == 3:
            catalog.retire_subject(UUID(view["id"]))


REBUILT = (UsersDirectory(), AuditLog(), Subjects())


def test_rebuild_gives_the_live_rows_and_switches_the_view(prepared: Settings, followers: threading.Event) -> None:
    dsn = prepared.database_url
    make_history(prepared)
    target = head(dsn)
    names = [p.name for p in REBUILT]
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert waiting.wait_for(conn, names, target, 15) == target
    live = {p.name: snapshot(dsn, p.name) for p in REBUILT}
    assert sum(live["users_directory"][1].values()) == 12
    assert sum(live["audit_log"][1].values()) == len(event_ids(dsn))

    for p in REBUILT:
        assert generations.rebuild(dsn, p, batch_size=10) == 2
        cols, rows = snapshot(dsn, p.name)
        assert cols == live[p.name][0]
        assert rows == live[p.name][1], f"{p.name}: rebuilt rows differ from the live ones"
        assert view_target(dsn, p.name) == [f"{p.name}__g2"]
        assert not exists(dsn, f"{p.name}__g1")
        assert tracking(dsn, p.name) == [(2, "active", target, len(event_ids(dsn, p.topics)))]

    # The live followers moved to the new generation: a new write reaches the views.
    view, position = Catalog(prepared).create_subject("After the rebuild", "Maths")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert waiting.wait_for(conn, names, position, 15) == position
    assert scalar(dsn, "SELECT name FROM subjects WHERE subject_id = %s", (UUID(view["id"]),)) == "After the rebuild"
    assert scalar(dsn, "SELECT count(*) FROM audit_log__g2 WHERE position = %s", (position,)) == 1
    assert [t[:3] for t in tracking(dsn, "audit_log")] == [(2, "active", position)]


class Interrupted(Exception):
    pass


def test_rebuild_after_an_interrupted_rebuild_leaves_no_debris(prepared: Settings, followers: threading.Event) -> None:
    """A rebuild stopped half-way (Ctrl-C in `projections rebuild`, a crash) leaves the live generation serving;
    the next rebuild replaces it and removes every earlier generation's tables."""
    dsn = prepared.database_url
    make_history(prepared)
    target = head(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert waiting.wait_for(conn, ["audit_log"], target, 15) == target
    live = snapshot(dsn, "audit_log")
    calls: list[int] = []

    def interrupt(position: int, _head: int) -> None:
        calls.append(position)
        if len(calls) == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        generations.rebuild(dsn, AuditLog(), progress=interrupt, batch_size=10)
    # Still serving generation 1, complete; generation 2 was left part-built.
    assert view_target(dsn, "audit_log") == ["audit_log__g1"]
    assert snapshot(dsn, "audit_log") == live
    assert [t[:3] for t in tracking(dsn, "audit_log")] == [(1, "active", target), (2, "building", 30)]

    assert generations.rebuild(dsn, AuditLog()) == 3
    assert snapshot(dsn, "audit_log") == live
    assert view_target(dsn, "audit_log") == ["audit_log__g3"]
    assert [t[:3] for t in tracking(dsn, "audit_log")] == [(3, "active", target)]
    assert not exists(dsn, "audit_log__g1")
    leftovers = column(dsn, "SELECT tablename FROM pg_tables WHERE tablename LIKE %s ORDER BY 1", ("audit_log__g%",))
    assert leftovers == ["audit_log__g3"], "tables of the abandoned generation 2 were never dropped"


def test_rebuild_while_writes_arrive_ends_complete(prepared: Settings, followers: threading.Event) -> None:
    dsn = prepared.database_url
    catalog, identity = Catalog(prepared), Identity(prepared)
    _, sp = catalog.create_subject("Template", "Seed")
    up = identity.save(*new_users(identity, "template", 1))[0].notification.id
    seed_copies(dsn, sp, 4_000)
    seed_copies(dsn, up, 2_000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert waiting.wait_for(conn, ["audit_log", "users_directory"], head(dsn), 30) is not None

    stop = threading.Event()
    saves: list[float] = []
    failures: list[BaseException] = []
    reads: list[int] = []

    def writer() -> None:
        mine = new_subjects("renamed", 1)
        catalog.save(*mine)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                mine[0].rename(f"renamed {i}")
                identity.save(*new_users(identity, f"w{i}", 2))
                catalog.save(*new_subjects(f"w{i}", 3), mine[0])
                saves.append(time.monotonic())
            except BaseException as e:
                failures.append(e)
                return
            time.sleep(0.01)  # a steady trickle of writes during the rebuilds, not a flood

    def reader() -> None:
        with connect(dsn) as c:
            while not stop.is_set():
                try:
                    row = c.execute("SELECT count(*) FROM audit_log").fetchone()
                    reads.append(int(row[0]) if row else -1)
                except BaseException as e:
                    failures.append(e)
                    return
                time.sleep(0.005)  # a reader polling the view throughout: it must never see it fail or shrink

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    try:
        windows = []
        for p in (AuditLog(), UsersDirectory()):
            started = time.monotonic()
            assert generations.rebuild(dsn, p, batch_size=500) == 2
            windows.append((started, time.monotonic()))
        time.sleep(0.3)  # writes and reads go on a little after the last switch, then the threads stop
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    for started, ended in windows:  # writes really did arrive during each rebuild
        assert sum(started < s < ended for s in saves) >= 3, (windows, len(saves))
    assert reads and reads == sorted(reads)  # readers never saw the view go back (no half-built generation)

    target = head(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert waiting.wait_for(conn, ["audit_log", "users_directory", "subjects"], target, 30) == target
    audit_rows_match_events(dsn)
    registered = set(column(dsn, "SELECT originator_id FROM tutorconnect_events WHERE topic = %s", (REGISTERED,)))
    assert set(column(dsn, "SELECT user_id FROM users_directory")) == registered
    for name in ("audit_log", "users_directory"):
        assert [t[:3] for t in tracking(dsn, name)] == [(2, "active", target)]
        assert view_target(dsn, name) == [f"{name}__g2"] and not exists(dsn, f"{name}__g1")

    # And what the live follower built on top of the switch equals a fresh rebuild.
    live = {name: snapshot(dsn, name) for name in ("audit_log", "users_directory")}
    for p in (AuditLog(), UsersDirectory()):
        assert generations.rebuild(dsn, p) == 3
        assert snapshot(dsn, p.name) == live[p.name]


# ---------------------------------------------------------------------------------------- e. wait_for


@pytest.mark.parametrize("rows", ["tuple", "dict"])
def test_wait_for_times_out_with_none_and_returns_the_position_once_reached(prepared: Settings, rows: str) -> None:
    dsn = prepared.database_url
    Catalog(prepared).save(*new_subjects("w", 20))
    Identity(prepared).save(*new_users(Identity(prepared), "w", 5))
    target = head(dsn)
    assert target == 25
    factory = dict_row if rows == "dict" else psycopg.rows.tuple_row
    with psycopg.connect(dsn, autocommit=True, row_factory=factory) as conn:  # type: ignore[arg-type]
        assert waiting.wait_for(conn, ["audit_log"], 0, 0) == 0  # nothing wanted: at once
        started = time.monotonic()
        assert waiting.wait_for(conn, ["audit_log"], target, 0.3) is None
        assert 0.3 <= time.monotonic() - started < 1.0

        audit = Runner(dsn, AuditLog(), 1, batch_size=10)
        audit.catch_up(until=target - 5)
        assert waiting.wait_for(conn, ["audit_log"], target, 0.1) is None
        assert waiting.wait_for(conn, ["audit_log"], target - 5, 0) == target - 5

        def later() -> None:
            time.sleep(0.4)  # the projection catches up only after wait_for has started waiting
            audit.catch_up()

        t = threading.Thread(target=later)
        started = time.monotonic()
        t.start()
        assert waiting.wait_for(conn, ["audit_log"], target, 10) == target
        assert time.monotonic() - started >= 0.4
        t.join()
        audit.close()

        # Several read models: the slowest one decides.
        assert waiting.wait_for(conn, ["audit_log", "users_directory"], target, 0.1) is None
        users = Runner(dsn, UsersDirectory(), 1)
        users.catch_up()
        users.close()
        assert waiting.wait_for(conn, ["audit_log", "users_directory"], target, 0.1) == target
        assert waiting.wait_for(conn, ["audit_log", "users_directory"], target - 3, 0) == target
        assert waiting.wait_for(conn, ["no_such_projection"], 1, 0.05) is None


class _Waits(threading.Event):
    """A stop event that records how long a follower asked to wait, without waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.asked.append(timeout)
        return False


def test_a_follower_paces_rounds_only_when_the_last_began_within_the_interval() -> None:
    """A notification after a quiet spell is answered at once; one right behind a round waits out the interval
    (what lets a busy follower take the commits of the interval in one round)."""
    waits = _Waits()
    f = Follower("postgresql://unused", [], waits, gather_s=5.0)
    f.round_started = time.monotonic() - 6.0  # the last round began longer ago than the interval
    f._pace()
    assert waits.asked == []
    f.round_started = time.monotonic()  # a round just began
    f._pace()
    assert len(waits.asked) == 1 and 4.0 < (waits.asked[0] or 0) <= 5.0
