"""Projection catch-up rate: Runner.catch_up() over a seeded log, per projection and all together.

Seeding: real domain aggregates (User with SessionStarted / ProfileUpdated / RoleChanged, its EmailClaim, and
Subject with Renamed / Retired) turned into stored events by our MetaMapper (msgspec JSON with `_meta`): 1,200
such groups for real, the rest copies of them with new ids, emails, names and timestamps substituted in the JSON
(every aggregate has its own originator id); then COPY'd into `tutorconnect_events` (notification ids from its
bigserial) and VACUUM ANALYZE'd (a log that has been live a while has its hint bits set and statistics).

Measured with `Runner(dsn, projection, 1).catch_up()`, each from position 0 on brand-new read-model tables
(what a rebuild does):
  - every projection of `projections.all_projections()` alone (audit_log sees every event; users_directory,
    subjects and tutors only their topics; student_favorites none of the seeded ones),
  - all of them at once through the product's follower (`follower.follow_all` in this process, exactly what
    `tutorconnect projectors` runs), timed by polling their tracking rows every 50 ms.
"log events/s" is log positions covered per second (what decides how long a rebuild takes); "applied events/s"
counts only the events of the projection's topics. Target: >= 20,000 events/s.

Each measurement alone stops after --budget-s seconds (default 20; 0 = none), the all-at-once run after
--together-budget-s (default 100), so that a slow projection cannot make a run endless: figures then cover the
log prefix reached (`*_partial: true`, `*_log_events_covered`); the seeded log has the same mix throughout, so
the rate over a prefix stands for the whole. "all_together_log_events_per_s" is the log size over the time until
every projection reached the head (or, if the budget ran out, the slowest projection's progress rate).

Reference: eventsourcing's own ProjectionRunner (one event per transaction: row + tracking, with a
PostgresTrackingRecorder view) doing the audit-log copy of the last --ref-events events.

Run: .venv/bin/python bench/catchup.py [--quick] [--events 200000] [--ref-events 1500] [--budget-s 20]
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
from _common import emit, machine, make_settings, parser, proc_cpu_seconds, rnd, say, temp_database

TARGET = 20_000
ROLES = ("student", "student", "student", "tutor")
ZONES = ("Europe/Paris", "America/New_York", "Asia/Tokyo", "Africa/Lagos", "Australia/Sydney")
CATEGORIES = ("Mathematics", "Languages", "Sciences", "Music", "Computing", "Humanities")


class FixedClock:
    """`recorded_at` for seeded events: a steady march through last year."""

    def __init__(self) -> None:
        self.t = datetime(2025, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        self.t += timedelta(milliseconds=137)
        return self.t


TEMPLATE_GROUPS = 1200  # aggregates made for real (a multiple of 60, so the mix below repeats whole)


def generate(n: int) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
    """At least n stored-event rows (originator_id, version, topic, state).

    The first TEMPLATE_GROUPS groups (a user with their email claim, or a subject) come from real aggregates
    through MetaMapper. The rest are copies of those groups with new ids, emails, names, family and correlation
    ids and later timestamps, substituted in the stored JSON: the same bytes our mapper writes, at a fraction of
    the cost of running the domain model 200,000 times (which took most of a minute on a busy machine)."""
    from application import context
    from application.store import MetaMapper, MsgspecTranscoder
    from domain.ids import derived_id
    from domain.subject import Subject
    from domain.user import EmailClaim, User

    clock = FixedClock()
    mapper = MetaMapper(MsgspecTranscoder(), clock)  # type: ignore[arg-type]
    encode, decode = msgspec.json.encode, msgspec.json.decode
    rows: list[tuple[Any, ...]] = []
    counts = {"users": 0, "subjects": 0}
    templates: list[dict[str, Any]] = []
    i = 0
    while len(rows) < n and i < TEMPLATE_GROUPS:
        i += 1
        events: list[Any]
        if i % 4:
            counts["users"] += 1
            role = ROLES[i % len(ROLES)]
            user = User.register(f"user{i:07d}@example.test", f"Bench User {i}", role, clock.now())
            family = uuid.uuid4()
            user.log_in(family)
            if i % 2:
                user.update_profile({"timezone": ZONES[i % len(ZONES)], "full_name": f"Bench User {i} Renamed"})
            if i % 10 == 0:
                user.change_role("tutor" if role == "student" else "student")
            claim = EmailClaim(email=user.email, user_id=user.id)
            events = [*user.collect_events(), *claim.collect_events()]
            actor, actor_role = str(user.id), role
            group = {"kind": "user", "id": user.id, "claim": claim.id, "family": str(family), "email": user.email}
            group["name"] = f"Bench User {i}"
        else:
            counts["subjects"] += 1
            subject = Subject.create(f"Subject {i}", CATEGORIES[i % len(CATEGORIES)])
            if i % 3 == 0:
                subject.rename(f"Subject {i} (advanced)")
            if i % 10 == 0:
                subject.retire()
            events = list(subject.collect_events())
            actor, actor_role = None, "admin"
            group = {"kind": "subject", "id": subject.id, "name": f"Subject {i}"}
        group["corr"] = f"seed-{i}"
        group["rows"] = []
        with context.acting(actor_id=actor, actor_role=actor_role, correlation_id=group["corr"]):
            for e in events:
                se = mapper.to_stored_event(e)
                row = (se.originator_id, se.originator_version, se.topic, se.state)
                rows.append(row)
                group["rows"].append(row)
        stamps: list[str] = []
        for row in group["rows"]:
            state = decode(row[3])
            for value in (state.get("timestamp"), state.get("registered_at"), state["_meta"].get("recorded_at")):
                if isinstance(value, str) and value not in stamps:
                    stamps.append(value)
        group["stamps"] = stamps
        templates.append(group)

    k = 0
    while len(rows) < n:
        g = templates[k % len(templates)]
        k += 1
        i += 1
        new_id = uuid.uuid4()
        ids = {g["id"]: new_id}
        subs = [(str(g["id"]), str(new_id)), (f'"{g["corr"]}"', f'"seed-{i}"')]
        if g["kind"] == "user":
            counts["users"] += 1
            email = f"user{i:07d}@example.test"
            ids[g["claim"]] = derived_id("email", email)
            subs += [(g["email"], email), (g["name"], f"Bench User {i}"), (g["family"], str(uuid.uuid4()))]
        else:
            counts["subjects"] += 1
            subs.append((g["name"], f"Subject {i}"))
        subs += [(f'"{old}"', encode(clock.now()).decode()) for old in g["stamps"]]
        pairs = [(a.encode(), b.encode()) for a, b in subs]
        for oid, version, topic, state in g["rows"]:
            for a, b in pairs:
                state = state.replace(a, b)
            rows.append((ids[oid], version, topic, state))
    return rows, counts


def seed(dsn: str, rows: Sequence[tuple[Any, ...]]) -> None:
    with psycopg.connect(dsn) as conn:
        with (
            conn.cursor() as cur,
            cur.copy("COPY tutorconnect_events (originator_id, originator_version, topic, state) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE tutorconnect_events")


def reset(dsn: str, projections: Sequence[Any]) -> None:
    """Start the projections again from position 0 on brand-new tables, as a rebuild does.

    Drop their tables and tracking rows, then `generations.ensure` creates generation 1 afresh. (Emptying the old
    tables and re-analysing them instead would give the planner statistics of an empty table, which a rebuild's
    fresh table does not have, and measure something a deployment never runs.)"""
    from projections.generations import ensure
    from projections.runner import physical

    with psycopg.connect(dsn) as conn:
        for p in projections:
            for t in p.tables:
                conn.execute(f"DROP VIEW IF EXISTS {t}")
                conn.execute(f"DROP TABLE IF EXISTS {physical(t, 1)} CASCADE")
            conn.execute("DELETE FROM projection_tracking WHERE name = %s", (p.name,))
        conn.commit()
    ensure(dsn, projections)


def timed(projection: Any) -> tuple[Any, dict[str, float]]:
    """The same projection, with the time spent in its `apply` (writing rows) counted."""
    box = {"apply_s": 0.0}
    base = type(projection)

    class Timed(base):  # type: ignore[misc, valid-type]
        def apply(self, cur: Any, events: Any, t: Any) -> None:
            t0 = time.perf_counter()
            super().apply(cur, events, t)
            box["apply_s"] += time.perf_counter() - t0

    Timed.__name__ = base.__name__
    return Timed(), box


class OverBudget(Exception):
    pass


def catch_up(dsn: str, projection: Any, budget_s: float) -> dict[str, Any]:
    """Time Runner.catch_up() of generation 1 (stopping between batches once the budget is spent)."""
    from projections.runner import Runner

    runner = Runner(dsn, projection, 1)
    backend = runner.conn.info.backend_pid
    server0 = proc_cpu_seconds(backend)
    client0 = time.thread_time()
    t0 = time.perf_counter()

    def progress(_: int) -> None:
        if budget_s and time.perf_counter() - t0 > budget_s:
            raise OverBudget

    partial = False
    try:
        runner.catch_up(progress=progress)
    except OverBudget:
        partial = True
    dt = time.perf_counter() - t0
    client = time.thread_time() - client0
    server1 = proc_cpu_seconds(backend)
    server = server1 - server0 if server0 is not None and server1 is not None else float("nan")
    row = runner.conn.execute(
        "SELECT position, events_processed FROM projection_tracking WHERE name = %s AND generation = 1",
        (projection.name,),
    ).fetchone()
    runner.conn.commit()
    runner.close()
    return {
        "seconds": dt,
        "covered": int(row["position"]),
        "applied": int(row["events_processed"]),
        "partial": partial,
        "client_cpu_s": client,
        "server_cpu_s": server,
    }


def run_together(
    dsn: str, projections: Sequence[Any], budget_s: float, head: int
) -> tuple[float, dict[str, dict[str, Any]]]:
    """Catch every projection up at once with the product's own follower (`follower.follow_all`, in this process,
    as `tutorconnect projectors` runs it); poll the tracking rows until all reach the head or the budget is spent.
    Returns (wall seconds, {name: {seconds, covered, applied, partial}})."""
    from projections.follower import follow_all

    names = [p.name for p in projections]
    stop = threading.Event()
    t0 = time.perf_counter()
    threads = follow_all(dsn, projections, stop)
    done_at: dict[str, float] = {}
    last: dict[str, tuple[int, int]] = {}
    now = 0.0
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while True:
                rows = conn.execute(
                    "SELECT name, position, events_processed FROM projection_tracking"
                    " WHERE state = 'active' AND name = ANY(%s)",
                    (names,),
                ).fetchall()
                now = time.perf_counter() - t0
                for name, position, processed in rows:
                    last[name] = (int(position), int(processed))
                    if position >= head and name not in done_at:
                        done_at[name] = now
                if len(done_at) == len(names) or (budget_s and now > budget_s):
                    break
                time.sleep(0.05)  # sample the tracking rows: each projection's finish time to within 50 ms
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    out = {
        name: {
            "seconds": done_at.get(name, now),
            "covered": last.get(name, (0, 0))[0],
            "applied": last.get(name, (0, 0))[1],
            "partial": name not in done_at,
        }
        for name in names
    }
    return (max(done_at.values()) if len(done_at) == len(names) else now), out


def reference(settings: Any, head: int, sample: int) -> float:
    """eventsourcing's ProjectionRunner copying the last `sample` events, one per transaction; events/s."""
    from eventsourcing.application import Application
    from eventsourcing.domain import DomainEventProtocol
    from eventsourcing.persistence import Tracking
    from eventsourcing.postgres import PostgresTrackingRecorder
    from eventsourcing.projection import Projection, ProjectionRunner
    from psycopg.sql import SQL

    from application.clock import SYSTEM
    from application.store import MetaMapper, MsgspecTranscoder

    encode = msgspec.json.Encoder(enc_hook=str).encode

    class Log(Application[uuid.UUID]):
        name = "tutorconnect"

        def construct_mapper(self) -> Any:
            return MetaMapper(MsgspecTranscoder(), SYSTEM)

    class AuditView(PostgresTrackingRecorder):
        def __init__(self, datastore: Any, **kwargs: Any) -> None:
            super().__init__(datastore, **kwargs)
            self.sql_create_statements.append(
                SQL(
                    "CREATE TABLE IF NOT EXISTS ref_audit (position bigint PRIMARY KEY, aggregate_id uuid NOT NULL,"
                    " aggregate_version bigint NOT NULL, type text NOT NULL, data jsonb NOT NULL)"
                )
            )

        def insert_row(self, row: tuple[Any, ...], tracking: Tracking) -> None:
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(
                    "INSERT INTO ref_audit (position, aggregate_id, aggregate_version, type, data)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    row,
                    prepare=True,
                )
                self._insert_tracking(curs, tracking)

    class RefAudit(Projection[AuditView]):
        name = "refaudit"
        topics = ()

        def process_event(self, domain_event: DomainEventProtocol[Any], tracking: Tracking) -> None:  # type: ignore[override]
            state = {k: v for k, v in vars(domain_event).items() if k not in ("originator_id", "originator_version")}
            self.view.insert_row(
                (
                    tracking.notification_id,
                    domain_event.originator_id,
                    domain_event.originator_version,
                    type(domain_event).__qualname__,
                    encode(state).decode(),
                ),
                tracking,
            )

    env = settings.eventsourcing_env()
    # Start the reference just before the sample: record its tracking position first.
    from eventsourcing.persistence import InfrastructureFactory
    from eventsourcing.utils import Environment

    factory = InfrastructureFactory.construct(Environment("refaudit", env))
    view = factory.tracking_recorder(AuditView)  # type: ignore[type-var]
    view.insert_tracking(Tracking("tutorconnect", head - sample))
    factory.close()

    t0 = time.perf_counter()
    with ProjectionRunner(application_class=Log, projection_class=RefAudit, view_class=AuditView, env=env) as runner:
        runner.wait(head, timeout=600)
        dt = time.perf_counter() - t0
    return sample / dt


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=None, help="events to seed (default 200000; quick 40000)")
    p.add_argument(
        "--ref-events", type=int, default=None, help="sample for eventsourcing's runner (default 1500; quick 500)"
    )
    p.add_argument("--no-reference", action="store_true", help="skip eventsourcing's ProjectionRunner")
    p.add_argument(
        "--budget-s", type=float, default=None, help="stop a measurement after this long (default 20; quick 10)"
    )
    p.add_argument(
        "--together-budget-s", type=float, default=None, help="budget of the all-at-once run (default 100; quick 30)"
    )
    p.add_argument("--only", default="", help="comma-separated projection names (default: all)")
    a = p.parse_args()
    n = a.events or (40_000 if a.quick else 200_000)
    sample = a.ref_events or (500 if a.quick else 1_500)
    budget = a.budget_s if a.budget_s is not None else (10.0 if a.quick else 20.0)
    together_budget = a.together_budget_s if a.together_budget_s is not None else (30.0 if a.quick else 100.0)
    figures: dict[str, Any] = {"bench": "catchup", **machine(), "target_events_per_s": TARGET}

    from projections import all_projections
    from workers.processes import prepare

    projections = [q for q in all_projections() if not a.only or q.name in a.only.split(",")]
    with temp_database(a.keep_db) as dsn:
        settings = make_settings(dsn)
        prepare(settings)

        say(f"generating {n:,} stored events from real aggregates through MetaMapper")
        t0 = time.perf_counter()
        rows, counts = generate(n)
        say(
            f"  {len(rows):,} events ({counts['users']:,} users + email claims, {counts['subjects']:,} subjects)"
            f" in {time.perf_counter() - t0:.1f}s"
        )
        t0 = time.perf_counter()
        seed(dsn, rows)
        say(f"  COPY + VACUUM ANALYZE in {time.perf_counter() - t0:.1f}s")
        head = len(rows)
        figures["events"] = head
        topics: dict[str, int] = {}
        for r in rows:
            topics[r[2]] = topics.get(r[2], 0) + 1
        del rows

        for proj in projections:
            expected = head if not proj.topics else sum(topics.get(t, 0) for t in proj.topics)
            reset(dsn, [proj])
            tp, box = timed(proj)
            say(f"{proj.name}: Runner.catch_up() over {head:,} log events ({expected:,} of its topics)")
            r = catch_up(dsn, tp, budget)
            dt, covered, applied = r["seconds"], r["covered"], r["applied"]
            if not r["partial"]:
                assert covered == head and applied == expected, (proj.name, covered, applied, expected)
            name = proj.name
            figures[f"{name}_log_events_per_s"] = rnd(covered / dt, 0)
            figures[f"{name}_applied_events_per_s"] = rnd(applied / dt, 0)
            figures[f"{name}_seconds"] = rnd(dt, 2)
            figures[f"{name}_apply_share"] = round(box["apply_s"] / dt, 2)
            cpu = r["client_cpu_s"] + r["server_cpu_s"]
            figures[f"{name}_cpu_us_per_log_event"] = rnd(1e6 * cpu / covered, 1)
            figures[f"{name}_cpu_limit_log_events_per_s"] = rnd(covered / cpu, 0) if cpu > 0 else None
            if r["partial"]:
                figures[f"{name}_partial"] = True
                figures[f"{name}_log_events_covered"] = covered
            say(
                f"  {dt:.2f}s: {covered / dt:,.0f} log events/s, {applied / dt:,.0f} applied events/s"
                f" ({100 * box['apply_s'] / dt:.0f}% of the time in apply)"
                + (f"; budget spent at position {covered:,} of {head:,}" if r["partial"] else "")
            )
            say(
                f"    CPU: runner {r['client_cpu_s']:.2f}s + its PostgreSQL backend {r['server_cpu_s']:.2f}s"
                f" = {1e6 * cpu / covered:.1f} us per log event -> {covered / cpu if cpu else float('nan'):,.0f}"
                " log events/s if it had the CPU to itself"
            )

        say(
            f"all {len(projections)} at once: follower.follow_all in this process, as `tutorconnect projectors` runs them"
        )
        reset(dsn, projections)
        wall, out = run_together(dsn, projections, together_budget, head)
        for name, r in out.items():
            say(
                f"  {name:18s} {r['covered'] / r['seconds']:8,.0f} log events/s, {r['applied']:7,} applied in"
                f" {r['seconds']:.2f}s" + (" (budget spent)" if r["partial"] else "")
            )
        slowest = min(r["covered"] / r["seconds"] for r in out.values())
        applied_total = sum(r["applied"] for r in out.values())
        figures["all_together_seconds"] = rnd(wall, 2)
        figures["all_together_log_events_per_s"] = rnd(slowest, 0)
        figures["all_together_applied_events_per_s"] = rnd(applied_total / wall, 0)
        figures["all_together_partial"] = any(r["partial"] for r in out.values())
        say(
            f"  the set advances at {slowest:,.0f} log events/s (its slowest member);"
            f" {applied_total / wall:,.0f} applied events/s in total over {wall:.2f}s"
        )

        if not a.no_reference:
            say(f"reference: eventsourcing ProjectionRunner (one transaction per event), last {sample:,} events")
            ref = reference(settings, head, sample)
            figures["eventsourcing_runner_events_per_s"] = rnd(ref, 0)
            if "audit_log_applied_events_per_s" in figures:
                ratio = round(figures["audit_log_applied_events_per_s"] / ref, 1)
                figures["ratio_audit_log_vs_eventsourcing_runner"] = ratio
                say(f"  {ref:,.0f} events/s; our batched runner (audit_log) is {ratio}x that")
            else:
                say(f"  {ref:,.0f} events/s")

        below = [q.name for q in projections if figures[f"{q.name}_log_events_per_s"] < TARGET]
        figures["below_target"] = below
        figures["meets_target"] = not below and figures["all_together_log_events_per_s"] >= TARGET
        say(
            f"target >= {TARGET:,} log events/s: "
            + ("met" if figures["meets_target"] else f"NOT met (below: {', '.join(below) or 'all together'})")
        )
    emit(figures)


if __name__ == "__main__":
    main()
