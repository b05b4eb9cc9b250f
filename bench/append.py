"""Event append rate through the application layer vs a plain psycopg INSERT loop of the same rows.

app:   Catalog.create_subject (one new Subject aggregate, one event, one transaction per call) through
       EventStoreApp.record -> eventsourcing's PostgresApplicationRecorder (pooled connection with pre-ping,
       pipeline, SET LOCAL lock_timeout, LOCK TABLE ... EXCLUSIVE, NOTIFY, INSERT ... RETURNING, COMMIT);
       single thread, then N threads sharing the process's pool.
raw:   the rows the single-thread app run stored (same originator ids, versions, topics and state bytes) inserted
       into a table of the same shape (`raw_events`: same columns, primary key, bigserial and unique index) by
       one psycopg connection in autocommit, one INSERT ... RETURNING notification_id per transaction.
raw_locked: the same rows with the recorder's SQL but none of its Python (BEGIN; SET LOCAL lock_timeout; LOCK
       TABLE EXCLUSIVE; NOTIFY; INSERT; COMMIT, pipelined): how much of the gap is the SQL the recorder sends
       and how much is Python.

Run: .venv/bin/python bench/append.py [--quick] [--events N] [--threads 4,16]
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from _common import (
    backends_cpu_seconds,
    emit,
    machine,
    make_settings,
    parser,
    proc_cpu_seconds,
    rnd,
    say,
    temp_database,
)

SHAPE = """
CREATE TABLE {t} (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version)
);
CREATE UNIQUE INDEX {t}_notification_id_idx ON {t} (notification_id ASC);
"""


def app_run(settings: Any, n: int, threads: int, tag: str) -> float:
    """Create n subjects through Catalog with `threads` threads; seconds taken."""
    from application import context
    from application.catalog import Catalog

    catalog = Catalog(settings)
    counter = iter(range(n))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                with context.acting(actor_id=None, actor_role="admin", correlation_id=f"bench-{tag}-{i}"):
                    catalog.create_subject(f"Subject {tag} {i:06d}", "Bench category")
        except BaseException as e:
            errors.append(e)

    t0 = time.perf_counter()
    if threads == 1:
        work()
    else:
        ts = [threading.Thread(target=work) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return dt


def raw_run(dsn: str, table: str, rows: list[tuple[Any, ...]], threads: int, locked: bool) -> tuple[float, float]:
    """Insert `rows` one per transaction (committed) with plain psycopg; (seconds taken, backends' CPU seconds)."""
    insert = f"INSERT INTO {table} (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s) RETURNING notification_id"
    chunks = [rows[i::threads] for i in range(threads)]
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(threads)]
    errors: list[BaseException] = []

    def work(conn: psycopg.Connection[Any], chunk: list[tuple[Any, ...]]) -> None:
        try:
            if not locked:
                for row in chunk:
                    conn.execute(insert, row, prepare=True).fetchone()
                return
            for row in chunk:
                with conn.pipeline() as pipe, conn.transaction(), conn.cursor() as cur:
                    cur.execute("SET LOCAL lock_timeout = '5s'", prepare=True)
                    cur.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE", prepare=True)
                    cur.execute(f"NOTIFY {table}")
                    cur.execute(insert, row, prepare=True)
                    pipe.sync()
                    cur.fetchone()
        except BaseException as e:
            errors.append(e)

    pids = [c.info.backend_pid for c in conns]
    cpu0 = [proc_cpu_seconds(pid) for pid in pids]
    t0 = time.perf_counter()
    if threads == 1:
        work(conns[0], chunks[0])
    else:
        ts = [threading.Thread(target=work, args=(c, ch)) for c, ch in zip(conns, chunks, strict=True)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    dt = time.perf_counter() - t0
    cpu1 = [proc_cpu_seconds(pid) for pid in pids]
    for c in conns:
        c.close()
    if errors:
        raise errors[0]
    server = sum(b - a for a, b in zip(cpu0, cpu1, strict=True) if a is not None and b is not None)
    return dt, server


def head(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        return int(c.execute("SELECT coalesce(max(notification_id), 0) FROM tutorconnect_events").fetchone()[0])


class Cpu:
    """CPU seconds used by this process (client) and by the database's PostgreSQL backends (server)."""

    def __init__(self, dbname: str) -> None:
        self.dbname = dbname
        self.client = 0.0
        self.server = 0.0

    def __enter__(self) -> Cpu:
        self._c0 = time.process_time()
        self._s0 = backends_cpu_seconds(self.dbname)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.client += time.process_time() - self._c0
        s1 = backends_cpu_seconds(self.dbname)
        self.server += (s1 - self._s0) if s1 is not None and self._s0 is not None else float("nan")


def measure(settings: Any, n: int, threads: int, rounds: int) -> dict[str, Any]:
    """Interleave app, raw and raw_locked in `rounds` rounds (so a neighbour's load hits all three alike).

    Each round appends n/rounds events through the app, reads back the rows it stored, and inserts exactly those
    rows with plain psycopg (raw_events) and with the recorder's SQL (raw_events_locked). Also counts the CPU
    each side used (this process and the PostgreSQL backends), a figure that a busy machine disturbs far less
    than elapsed time."""
    dsn = settings.database_url
    dbname = dsn.rsplit("/", 1)[1].split("?", 1)[0]
    app_s = raw_s = locked_s = 0.0
    cpu = {"app": Cpu(dbname), "raw": Cpu(dbname), "locked": Cpu(dbname)}
    total = 0
    sizes: list[int] = []
    per = max(1, n // rounds)
    for r in range(rounds):
        start = head(dsn)
        with cpu["app"]:
            app_s += app_run(settings, per, threads, f"t{threads}r{r}")
        with psycopg.connect(dsn) as c:
            rows = c.execute(
                "SELECT originator_id, originator_version, topic, state FROM tutorconnect_events"
                " WHERE notification_id > %s ORDER BY notification_id",
                (start,),
            ).fetchall()
        assert len(rows) == per, (len(rows), per)
        sizes.extend(len(row[3]) for row in rows)
        with cpu["raw"]:
            dt, server = raw_run(dsn, "raw_events", rows, threads, locked=False)
        raw_s += dt
        cpu["raw"].server += server  # its connections come and go inside raw_run
        with cpu["locked"]:
            dt, server = raw_run(dsn, "raw_events_locked", rows, threads, locked=True)
        locked_s += dt
        cpu["locked"].server += server
        total += per
    return {
        "app": total / app_s,
        "raw": total / raw_s,
        "locked": total / locked_s,
        "cpu": {k: (1e6 * c.client / total, 1e6 * c.server / total) for k, c in cpu.items()},
        "state_bytes": sum(sizes) / len(sizes),
        "events": total,
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=None, help="events per measurement (default 2000; quick 500)")
    p.add_argument("--threads", default="4,16", help="comma-separated thread counts for the concurrent runs")
    p.add_argument("--rounds", type=int, default=5, help="interleaved app/raw rounds per measurement")
    a = p.parse_args()
    n = a.events or (500 if a.quick else 2000)
    thread_counts = [int(x) for x in a.threads.split(",") if x.strip()]
    figures: dict[str, Any] = {"bench": "append", "events_per_measurement": n, **machine()}

    from workers.processes import prepare

    with temp_database(a.keep_db) as dsn:
        settings = make_settings(dsn, pool_size=max(10, max(thread_counts, default=1)))
        prepare(settings)
        with psycopg.connect(dsn, autocommit=True) as c:
            for t in ("raw_events", "raw_events_locked"):
                c.execute(SHAPE.format(t=t))

        say("warm-up: 200 events through the application")
        app_run(settings, 200, 1, "warm")

        say(f"1 thread: {n} x Catalog.create_subject (one aggregate, one event, one transaction each),")
        say(
            f"  interleaved in {a.rounds} rounds with the same rows inserted by plain psycopg (one row per transaction)"
        )
        m = measure(settings, n, 1, a.rounds)
        figures["app_events_per_s"] = rnd(m["app"])
        figures["raw_insert_rows_per_s"] = rnd(m["raw"])
        figures["raw_locked_rows_per_s"] = rnd(m["locked"])
        figures["ratio_app_vs_raw"] = round(m["app"] / m["raw"], 3)
        figures["ratio_app_vs_raw_locked"] = round(m["app"] / m["locked"], 3)
        figures["app_ms_per_event"] = round(1000 / m["app"], 3)
        figures["raw_ms_per_row"] = round(1000 / m["raw"], 3)
        figures["raw_locked_ms_per_row"] = round(1000 / m["locked"], 3)
        figures["state_bytes_avg"] = round(m["state_bytes"])
        say(f"  app        {m['app']:8,.0f} events/s ({1000 / m['app']:.2f} ms per append)")
        say(
            f"  raw        {m['raw']:8,.0f} rows/s   ({1000 / m['raw']:.2f} ms per insert; state {m['state_bytes']:.0f} bytes)"
        )
        say(f"  raw_locked {m['locked']:8,.0f} rows/s   ({1000 / m['locked']:.2f} ms: + SET LOCAL, LOCK TABLE, NOTIFY)")
        for k, label in (("app", "app"), ("raw", "raw"), ("locked", "raw_locked")):
            client_us, server_us = m["cpu"][k]
            figures[f"{label}_client_cpu_us_per_event"] = rnd(client_us)
            figures[f"{label}_postgres_cpu_us_per_event"] = rnd(server_us)
            say(f"  CPU per event, {label:10s}: this process {client_us:7.0f} us, PostgreSQL {server_us:6.0f} us")

        for k in thread_counts:
            say(f"{k} threads: {n} x Catalog.create_subject vs the same rows over {k} psycopg connections")
            m = measure(settings, n, k, a.rounds)
            figures[f"app_{k}_threads_events_per_s"] = rnd(m["app"])
            figures[f"raw_{k}_threads_rows_per_s"] = rnd(m["raw"])
            figures[f"raw_locked_{k}_threads_rows_per_s"] = rnd(m["locked"])
            figures[f"ratio_app_vs_raw_{k}_threads"] = round(m["app"] / m["raw"], 3)
            say(f"  app        {m['app']:8,.0f} events/s")
            say(f"  raw        {m['raw']:8,.0f} rows/s")
            say(f"  raw_locked {m['locked']:8,.0f} rows/s")

        say(f"app vs raw (1 thread): {figures['ratio_app_vs_raw']:.2f}x")
    emit(figures)


if __name__ == "__main__":
    main()
