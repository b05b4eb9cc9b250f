"""Live projection lag: time from a command's commit returning to its rows being queryable in the read models.

Three kinds of process, so that no Python lock (GIL) couples what is measured to the measuring:
  - the real followers: `python -m workers.cli projectors` (follower.follow_all, woken by LISTEN/NOTIFY), as
    deployed; --projectors 2 starts two such processes (the per-projection advisory lock shares the projections
    out between them); --in-process runs follow_all inside this script's process instead;
  - --writers writer processes (2 threads each) alternating Catalog.create_subject (seen by subjects, audit_log,
    tutors) and Identity.register (users_directory, audit_log, tutors), paced together at --rate commands per
    second for --seconds, then a burst of --burst commands as fast as they go;
  - this process: a watcher polling projection_tracking every ~1 ms.

A write is visible in a read model once that projection's tracking position has reached the write's event
position (rows and position commit in one transaction, so that is when the rows become queryable). Lag = the
first poll that sees it (timed after the poll returns) minus the moment the writer's commit returned
(CLOCK_MONOTONIC, the same clock in every process). Target: steady-state p95 < 50 ms to every foreground read
model consuming the write (what a caller's next query reads); the background ones (`Projection.background`: the
audit log and the back-office read models, paced at PROJECTOR_BACKGROUND_MS) are reported on their own.

Run: .venv/bin/python bench/lag.py [--quick] [--rate 200] [--seconds 20] [--burst 1000] [--writers 2] [--projectors 1]
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import tempfile
import threading
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from _common import (
    backends_cpu_seconds,
    emit,
    group_cpu_seconds,
    machine,
    make_settings,
    parser,
    percentile,
    rnd,
    say,
    server_env,
    spawn,
    stop_process,
    temp_database,
)

TARGET_P95_MS = 50.0


def views_of(kind: str) -> tuple[str, ...]:
    """The projections whose topics include the events a write of this kind records."""
    from domain.subject import Subject
    from domain.user import User
    from projections import all_projections
    from projections.runner import topic_of

    topic = topic_of(Subject.Created if kind == "subject" else User.Registered)
    return tuple(p.name for p in all_projections() if not p.topics or topic in p.topics)


class Watch:
    """Pending writes and the poller that timestamps when each becomes visible."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.lock = threading.Lock()
        self.pending: list[dict[str, Any]] = []
        self.done: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.polls = 0
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self.run, name="watcher", daemon=True)

    def add(self, position: int, views: tuple[str, ...], committed: float, phase: str) -> None:
        with self.lock:
            self.pending.append({"pos": position, "views": views, "t": committed, "phase": phase, "seen": {}})

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            q = "SELECT name, position FROM projection_tracking WHERE state = 'active'"
            self.started = time.monotonic()
            while not self.stop.is_set():
                rows = conn.execute(q, prepare=True).fetchall()
                now = time.monotonic()
                self.polls += 1
                pos = dict(rows)
                with self.lock:
                    still = []
                    for w in self.pending:
                        for v in w["views"]:
                            if v not in w["seen"] and pos.get(v, 0) >= w["pos"]:
                                w["seen"][v] = now
                        if len(w["seen"]) == len(w["views"]):
                            self.done.append(w)
                        else:
                            still.append(w)
                    self.pending = still
                time.sleep(0.001)  # the watcher's 1 ms poll is the lag measurement's resolution

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.pending:
                    return True
            time.sleep(0.01)  # wait for the watcher to see every write (bounded by the timeout)
        return False


def stats(done: list[dict[str, Any]], phase: str, views: Collection[str]) -> dict[str, float]:
    """Lag percentiles of the writes of `phase` until every one of `views` that consumes them had them."""
    lags = []
    for w in done:
        if w["phase"] != phase:
            continue
        seen = [t for v, t in w["seen"].items() if v in views]
        if seen:
            lags.append(1000 * (max(seen) - w["t"]))
    return {
        "n": len(lags),
        "p50": percentile(lags, 50),
        "p95": percentile(lags, 95),
        "p99": percentile(lags, 99),
        "max": max(lags) if lags else float("nan"),
    }


# ------------------------------------------------------------------------------------------------ writers


def writer(
    wid: int, nwriters: int, dsn: str, plan: dict[str, Any], out: Any, go: Any
) -> None:  # runs in a child process
    """Do this writer's share of each phase; report (phase, position, kind, commit time) for every write."""
    from application import context
    from application.catalog import Catalog
    from application.identity import Identity

    settings = make_settings(dsn)
    catalog, identity = Catalog(settings), Identity(settings)
    counter = iter(range(wid, 10**9, nwriters))
    lock = threading.Lock()

    def write(phase: str) -> None:
        with lock:
            i = next(counter)
        with context.acting(actor_id=None, actor_role="admin", correlation_id=f"lag-{i}"):
            if i % 2 == 0:
                _, pos = catalog.create_subject(f"Lag subject {i}", "Bench")
                kind = "subject"
            else:
                pos = identity.register(f"lag{i}@example.test", "Passw0rd-bench", f"Lag User {i}", "student").position
                kind = "user"
        out.put((phase, pos, kind, time.monotonic()))

    pool = ThreadPoolExecutor(max_workers=2)
    try:
        for phase, count, rate in plan["phases"]:
            go.wait()  # all writers start each phase together
            mine = count // nwriters + (1 if wid < count % nwriters else 0)
            t0 = time.monotonic()
            futures = []
            for k in range(mine):
                if rate:
                    delay = t0 + (k * nwriters + wid) / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)  # pace the writers to the target rate: command k at t0 + k/rate
                futures.append(pool.submit(write, phase))
            for f in futures:
                f.result()
            out.put((phase, -1, "end", time.monotonic() - t0))
    finally:
        pool.shutdown()
        from application.store import close_all

        close_all()


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=200.0, help="steady commands per second (default 200)")
    p.add_argument("--seconds", type=float, default=None, help="steady phase length (default 20; quick 6)")
    p.add_argument("--burst", type=int, default=None, help="burst commands (default 1000; quick 300)")
    p.add_argument("--writers", type=int, default=2, help="writer processes (2 threads each)")
    p.add_argument("--projectors", type=int, default=1, help="`projectors` child processes (default 1)")
    p.add_argument("--in-process", action="store_true", help="run follow_all in this process, not a child")
    a = p.parse_args()
    seconds = a.seconds or (6.0 if a.quick else 20.0)
    burst = a.burst if a.burst is not None else (300 if a.quick else 1000)
    steady = int(a.rate * seconds)
    figures: dict[str, Any] = {"bench": "lag", **machine(), "target_p95_ms": TARGET_P95_MS}

    from projections import all_projections, follower
    from workers.processes import prepare

    views = {"subject": views_of("subject"), "user": views_of("user")}
    names = tuple(q.name for q in all_projections())
    # The target is the foreground's: the read models a caller's next query reads (and waits for). The background
    # ones (Projection.background: audit log, ledger, e-mail outbox...) are paced at PROJECTOR_BACKGROUND_MS and
    # reported on their own.
    front = {q.name for q in all_projections() if not q.background}
    back = {q.name for q in all_projections() if q.background}
    with temp_database(a.keep_db) as dsn, tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(dsn)
        prepare(settings)
        stop = threading.Event()
        procs_p: list[Any] = []
        threads: list[threading.Thread] = []
        log = Path(tmp) / "projectors.log"
        if a.in_process:
            say(f"followers: follower.follow_all in this process ({', '.join(names)})")
            threads = follower.follow_all(
                dsn,
                all_projections(),
                stop,
                settings.projector_threads,
                settings.projector_gather_ms,
                background_ms=settings.projector_background_ms,
            )
        else:
            say(
                f"followers: {a.projectors} x `python -m workers.cli projectors` (follower.follow_all) in child"
                f" processes ({', '.join(names)})"
            )
            procs_p = [spawn(["projectors"], server_env(settings), log) for _ in range(a.projectors)]
        figures["projector_processes"] = 0 if a.in_process else a.projectors
        watch = Watch(dsn)
        watch.thread.start()

        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        go = ctx.Barrier(a.writers + 1)
        phases = [("warm", 40, 0.0), ("steady", steady, a.rate)]
        if burst:
            phases.append(("burst", burst, 0.0))
        plan = {"phases": phases}
        procs = [ctx.Process(target=writer, args=(w, a.writers, dsn, plan, out, go)) for w in range(a.writers)]
        for w in procs:
            w.start()

        def run_phase(phase: str, timeout: float) -> float:
            go.wait(timeout=60)
            ended, longest = 0, 0.0
            deadline = time.monotonic() + timeout
            while ended < a.writers:
                try:
                    ph, pos, kind, t = out.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    raise SystemExit(f"writers did not finish the {phase} phase") from None
                if pos < 0:
                    ended += 1
                    longest = max(longest, t)
                else:
                    watch.add(pos, views[kind], t, ph)
            if not watch.wait_idle(60):
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise SystemExit(f"followers did not catch up within 60 s after the {phase} phase\n{tail}")
            return longest

        try:
            say("warm-up: 40 commands, waiting until every follower has them")
            run_phase("warm", 120)

            say(
                f"steady: {steady} commands at {a.rate:.0f}/s for {seconds:.0f}s from {a.writers} writer processes"
                " (alternating subject create / user register)"
            )
            dbname = dsn.rsplit("/", 1)[1].split("?", 1)[0]
            cpu_proj0 = sum(group_cpu_seconds(q.pid) for q in procs_p) if procs_p else None
            cpu_db0 = backends_cpu_seconds(dbname)
            took = run_phase("steady", seconds + 120)
            cpu_proj = sum(group_cpu_seconds(q.pid) for q in procs_p) - cpu_proj0 if cpu_proj0 is not None else None
            cpu_db1 = backends_cpu_seconds(dbname)
            cpu_db = cpu_db1 - cpu_db0 if cpu_db0 is not None and cpu_db1 is not None else None
            s = stats(watch.done, "steady", front)
            sb = stats(watch.done, "steady", back)
            figures["steady_commands"] = s["n"]
            figures["steady_rate_target_per_s"] = a.rate
            figures["steady_rate_achieved_per_s"] = rnd(steady / took)
            for k in ("p50", "p95", "p99", "max"):
                figures[f"steady_lag_{k}_ms"] = rnd(s[k], 2)
            for k in ("p50", "p95", "p99"):
                figures[f"steady_background_lag_{k}_ms"] = rnd(sb[k], 2)
            if cpu_proj is not None:
                figures["steady_projectors_cpu_ms_per_command"] = rnd(1000 * cpu_proj / steady, 2)
            if cpu_db is not None:
                figures["steady_postgres_cpu_ms_per_command"] = rnd(1000 * cpu_db / steady, 2)
            say(
                f"  CPU per command: projectors process {1000 * cpu_proj / steady if cpu_proj is not None else float('nan'):.2f} ms,"
                f" PostgreSQL backends of the database (writers, followers, watcher)"
                f" {1000 * cpu_db / steady if cpu_db is not None else float('nan'):.2f} ms"
            )
            say(
                f"  achieved {steady / took:.0f} commands/s; lag to every foreground read model: p50 {s['p50']:.1f}"
                f" ms, p95 {s['p95']:.1f} ms, p99 {s['p99']:.1f} ms, max {s['max']:.1f} ms; to every background one:"
                f" p50 {sb['p50']:.1f} ms, p95 {sb['p95']:.1f} ms"
            )
            for v in names:
                vs = stats(watch.done, "steady", (v,))
                if vs["n"]:
                    figures[f"steady_{v}_p50_ms"] = rnd(vs["p50"], 2)
                    figures[f"steady_{v}_p95_ms"] = rnd(vs["p95"], 2)
                    say(
                        f"    {v:18s} p50 {vs['p50']:6.1f} ms  p95 {vs['p95']:6.1f} ms  p99 {vs['p99']:6.1f} ms  (n={vs['n']})"
                    )

            if burst:
                say(f"burst: {burst} commands as fast as {a.writers} writers x 2 threads commit them")
                t0 = time.monotonic()
                took = run_phase("burst", 300)
                last = max(max(w["seen"].values()) for w in watch.done if w["phase"] == "burst")
                b = stats(watch.done, "burst", front)
                bb = stats(watch.done, "burst", back)
                figures["burst_commands"] = b["n"]
                figures["burst_write_rate_per_s"] = rnd(burst / took)
                figures["burst_drain_s"] = rnd(last - t0, 3)
                for k in ("p50", "p95", "p99", "max"):
                    figures[f"burst_lag_{k}_ms"] = rnd(b[k], 2)
                figures["burst_background_lag_p95_ms"] = rnd(bb["p95"], 2)
                say(
                    f"  {burst / took:.0f} commands/s; lag p50 {b['p50']:.1f} ms, p95 {b['p95']:.1f} ms,"
                    f" p99 {b['p99']:.1f} ms, max {b['max']:.1f} ms; all visible {last - t0:.2f}s after the start"
                )
            figures["watcher_polls_per_s"] = rnd(watch.polls / (time.monotonic() - watch.started), 0)
        finally:
            for w in procs:
                w.join(30)
                if w.is_alive():
                    w.terminate()
            watch.stop.set()
            watch.thread.join(5)
            stop.set()
            for t in threads:
                t.join(5)
            for q in procs_p:
                stop_process(q)
        figures["meets_target"] = bool(figures.get("steady_lag_p95_ms", 1e9) < TARGET_P95_MS)
        say(f"target steady p95 < {TARGET_P95_MS:.0f} ms: {'met' if figures['meets_target'] else 'NOT met'}")
    emit(figures)


if __name__ == "__main__":
    main()
