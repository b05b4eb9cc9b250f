"""Booking throughput: POST /api/v1/bookings from 100 concurrent students over 1,000 approved tutors.

Setup: a fresh database; --tutors approved tutors and the subject catalog seeded by COPY of stored events that our
own MetaMapper made from real aggregates (as bench/search.py does: User + EmailClaim + TutorProfile through every
builder step, Submitted, Approved; weekly windows in five time zones; 30 % auto-confirm). Then through the
application, in this process: --clients students registered with `Identity.register` (argon2 at the benchmark's
low cost), and each given credit with --tutors-per-student tutors (one `CreditAccount` per student, one
40-lesson lot per tutor, recorded with `Money.record`), so every tutor is credited to a few students.

Processes: `python -m workers.cli projectors` and `python -m workers.cli api --workers 2` (granian; default pool
size), started after the seed and waited for until every projection reached the log head.

Load: a separate driver process (a minimal asyncio HTTP/1.1 client) runs --clients keep-alive connections, one per
student, for a warm-up and then --seconds. Paced (the default, --rate 360): each client's requests fall due every
clients/rate seconds (100 clients at 3.6 requests/s each, phases spread at random), whatever the answers, and a
request's latency counts from when it was due (a slow answer that delays the next request is not hidden);
360 requests/s with ~15 % conflicts is 300 bookings/s, the target's rate. Back to back (--rate 0): each client
posts its next request as soon as the last is answered, which measures the most bookings/s the system does (the
latency is then queueing, clients / throughput, and is not judged). A request picks one of the
student's credited tutors and a 60-minute slot on the hour inside that tutor's availability (1 to 29 days ahead):
a slot nobody has tried yet, or -- with probability --collide -- one that another request already tried for that
tutor (possibly still in flight), which is how ~10-20 % of requests meet a taken slot (409 booking-conflict; a race
lost after the retries is 409 concurrency-conflict). Each success writes, in one transaction, the Booking, the
tutor's Calendar week and the student's CreditAccount hold (+ Confirmed for auto-confirm tutors).

Reports successes/s, conflicts (and their share), other failures by status, latency p50/p90/p99 of all requests and
of successes, CPU per success of the API workers, the projectors and PostgreSQL, how far the projections lagged at
the end and how long they took to catch up, and a double-booking check on the bookings read model.
Targets: >= 300 bookings/s and p99 < 100 ms (paced), >= 300 bookings/s (back to back).

Run: .venv/bin/python bench/booking.py [--quick] [--rate 360|0] [--seconds 30] [--clients 100] [--tutors 1000]
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import (
    emit,
    free_port,
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
    wait_http,
)
from search import (
    HttpConn,
    LogBuilder,
    _proc_cpu,
    backend_pids,
    copy_events,
    make_subjects,
    make_tutor,
)

TARGET_RPS = 300.0
TARGET_P99_MS = 100.0
PASSWORD = "Passw0rd-bench"
LOT_LESSONS = 40


# ------------------------------------------------------------------------------------------------ driver


def cpu_groups(pgids: dict[str, int], dbname: str) -> dict[str, Any]:
    """CPU seconds so far per process group, of the backends on our database, and of the whole machine."""
    import os

    groups = dict.fromkeys(pgids, 0.0)
    by_pgid = {v: k for k, v in pgids.items()}
    pg: dict[str, float] = {}
    backends = backend_pids(dbname)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            grp, _comm, cpu = _proc_cpu(pid)
        except (OSError, ValueError, IndexError):
            continue  # the process ended between listing /proc and reading its stat: it has no CPU to count
        if grp in by_pgid:
            groups[by_pgid[grp]] += cpu
        elif pid in backends:
            pg[pid] = cpu
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    clk = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    return {"groups": groups, "postgres": pg, "busy": (sum(fields) - idle) / clk, "total": sum(fields) / clk}


async def drive(spec: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(7)
    tutors = spec["tutors"]
    fresh = [rng.sample(t["slots"], len(t["slots"])) for t in tutors]
    attempted: list[list[str]] = [[] for _ in tutors]
    seconds, warmup, p_collide = spec["seconds"], spec["warmup"], spec["collide"]
    lat: list[float] = []
    ok_lat: list[float] = []
    outcomes: dict[str, int] = {}
    totals = {"created": 0, "forced": 0, "forced_conflicts": 0}
    t_start = time.perf_counter()
    t_measure, t_end = t_start + warmup, t_start + warmup + seconds
    snaps: dict[str, Any] = {}

    async def snapper() -> None:
        await asyncio.sleep(max(0, t_measure - time.perf_counter()))
        snaps["a"] = await asyncio.to_thread(cpu_groups, spec["pgids"], spec["dbname"])
        await asyncio.sleep(max(0, t_end - time.perf_counter()))
        snaps["b"] = await asyncio.to_thread(cpu_groups, spec["pgids"], spec["dbname"])

    rate = spec.get("rate") or 0.0
    period = len(spec["clients"]) / rate if rate else 0.0
    sent_lat: list[float] = []

    async def client(c: dict[str, Any]) -> None:
        conn = HttpConn(spec["host"], spec["port"])
        await conn.open()
        headers = f"Authorization: Bearer {c['token']}\r\n".encode()
        mine = c["tutors"]
        due = t_start + rng.uniform(0, period)  # paced: this client's next request is due then
        while True:
            if period:
                # Paced (open loop per client): requests are due every `period` s whatever the answers; latency
                # counts from when a request was due, so a slow answer that delays the next one is not hidden.
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
            t_sent = time.perf_counter()
            t0 = due if period else t_sent
            due += period
            if t0 >= t_end:
                break
            ti = rng.choice(mine)
            forced = False
            if rng.random() < p_collide:
                tried = [i for i in mine if attempted[i]]
                if tried:
                    ti = rng.choice(tried)
                    forced = True
            if forced:
                start = rng.choice(attempted[ti])
            else:
                for _ in range(10):
                    if fresh[ti]:
                        break
                    ti = rng.choice(mine)
                if not fresh[ti]:
                    break  # this student tried every slot of its tutors
                start = fresh[ti].pop()
                attempted[ti].append(start)
            body = json.dumps(
                {
                    "tutor_id": tutors[ti]["id"],
                    "subject_id": tutors[ti]["subject"],
                    "start": start,
                    "duration_minutes": 60,
                }
            ).encode()
            try:
                status, resp = await conn.request("POST", "/api/v1/bookings", headers, body)
                if status == 201:
                    kind = "created"
                elif status == 409 and b"booking-conflict" in resp:
                    kind = "booking_conflict"
                elif status == 409 and b"concurrency-conflict" in resp:
                    kind = "concurrency_conflict"
                else:
                    kind = f"status_{status}"
                    if len(outcomes) < 30 and kind not in outcomes:
                        print(f"  unexpected {status}: {resp[:300]!r}", file=sys.stderr, flush=True)
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                kind = "error"
                print(f"  connection error: {e!r}", file=sys.stderr, flush=True)
                conn.close()
            t1 = time.perf_counter()
            if kind == "created":
                totals["created"] += 1
            if t0 >= t_measure and t1 <= t_end + 10:
                lat.append(t1 - t0)
                sent_lat.append(t1 - t_sent)
                outcomes[kind] = outcomes.get(kind, 0) + 1
                if kind == "created":
                    ok_lat.append(t1 - t0)
                if forced:
                    totals["forced"] += 1
                    totals["forced_conflicts"] += kind.endswith("conflict")
        conn.close()

    await asyncio.gather(snapper(), *(client(c) for c in spec["clients"]))
    a, b = snaps["a"], snaps["b"]
    created = max(outcomes.get("created", 0), 1)
    total = b["total"] - a["total"]
    cpu = {f"{k}_cpu_ms_per_booking": 1000 * (b["groups"][k] - a["groups"][k]) / created for k in spec["pgids"]}
    cpu["postgres_cpu_ms_per_booking"] = (
        1000 * sum(v - a["postgres"].get(pid, 0.0) for pid, v in b["postgres"].items()) / created
    )
    cpu["machine_busy_pct"] = 100 * (b["busy"] - a["busy"]) / total if total else float("nan")
    return {
        "requests": len(lat),
        "outcomes": outcomes,
        "p50_ms": 1000 * percentile(lat, 50),
        "p90_ms": 1000 * percentile(lat, 90),
        "p99_ms": 1000 * percentile(lat, 99),
        "max_ms": 1000 * max(lat) if lat else float("nan"),
        "sent_p50_ms": 1000 * percentile(sent_lat, 50),
        "sent_p99_ms": 1000 * percentile(sent_lat, 99),
        "created_p50_ms": 1000 * percentile(ok_lat, 50),
        "created_p99_ms": 1000 * percentile(ok_lat, 99),
        "created_total": totals["created"],
        "forced": totals["forced"],
        "forced_conflicts": totals["forced_conflicts"],
        **cpu,
    }


def driver_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    print(json.dumps(asyncio.run(drive(spec))), flush=True)


# --------------------------------------------------------------------------------------------- the bench


def bookable_slots(tutor: dict[str, Any], now: datetime, days: int) -> list[str]:
    """60-minute starts on the hour inside the tutor's availability, from tomorrow to `days` ahead (UTC ISO)."""
    from projections.schedule import slots_for

    frm = (now + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    found = slots_for(
        tutor["availability"], tutor["min_notice"], frm, frm + timedelta(days=days), timedelta(minutes=60), now
    )
    return [a.isoformat().replace("+00:00", "Z") for a, _ in found if a.minute == 0]


def register_students(settings: Any, n: int) -> list[dict[str, Any]]:
    """Students through the application (User, EmailClaim, account row, session): ids and access tokens."""
    from application import context
    from application.identity import Identity

    identity = Identity(settings)
    out = []
    for i in range(n):
        with context.acting(actor_id=None, actor_role="system", correlation_id=f"bench-register-{i}"):
            o = identity.register(f"bench-student-{i:04d}@bench.test", PASSWORD, f"Bench Student {i}", "student")
        assert o.tokens is not None
        out.append({"id": uuid.UUID(o.user["id"]), "token": o.tokens.access_token})
    return out


def grant_credit(
    settings: Any,
    students: Sequence[dict[str, Any]],
    tutors: Sequence[dict[str, Any]],
    per_student: int,
    rng: random.Random,
    now: datetime,
) -> None:
    """One 40-lesson lot per (student, tutor) pair, recorded through the Money application."""
    from application import context
    from application.money import Money

    money = Money(settings)
    order = list(range(len(tutors)))
    rng.shuffle(order)
    k = 0
    for s in students:
        picks: list[int] = []
        while len(picks) < per_student:
            if k % len(order) == 0:
                rng.shuffle(order)
            i = order[k % len(order)]
            k += 1
            if i not in picks:
                picks.append(i)
        s["tutors"] = picks
        with context.acting(actor_id=None, actor_role="system", correlation_id=f"bench-grant-{s['id']}"):
            account = money.settlement.account(s["id"])
            for i in picks:
                t = tutors[i]
                lot = str(uuid.uuid4())
                account.grant(
                    lot, lot, str(t["id"]), LOT_LESSONS * 60, t["rate"] * LOT_LESSONS, "USD", now + timedelta(days=180)
                )
            money.record(account)


def projection_positions(dsn: str) -> tuple[int, int, dict[str, int]]:
    """(lowest active projection position, log head, {name: position})."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        head = int(conn.execute("SELECT coalesce(max(notification_id), 0) FROM tutorconnect_events").fetchone()[0])  # type: ignore[index]
        rows = conn.execute("SELECT name, position FROM projection_tracking WHERE state = 'active'").fetchall()
    pos = {r[0]: int(r[1]) for r in rows}
    return (min(pos.values()) if pos else 0), head, pos


def wait_caught_up(dsn: str, timeout: float) -> float | None:
    """Seconds until every active projection reached the head as it was when called (None on timeout)."""
    t0 = time.perf_counter()
    _, head, _ = projection_positions(dsn)
    while True:
        low, _, _ = projection_positions(dsn)
        if low >= head:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            return None
        time.sleep(0.1)  # the figure is "caught up after N s" at 0.1 s resolution: polling is the measurement


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--drive":
        driver_main(sys.argv[2])
        return
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--tutors", type=int, default=None, help="approved tutors (default 1000; quick 300)")
    p.add_argument("--clients", type=int, default=None, help="concurrent students (default 100; quick 40)")
    p.add_argument("--tutors-per-student", type=int, default=20, help="credited tutors per student")
    p.add_argument("--seconds", type=float, default=None, help="measured seconds (default 30; quick 8)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds (default 5; quick 2)")
    p.add_argument("--collide", type=float, default=0.15, help="share of requests aimed at an already tried slot")
    p.add_argument("--api-workers", type=int, default=2)
    p.add_argument(
        "--rate",
        type=float,
        default=360.0,
        help="paced load: requests/s offered in all, spread evenly over the clients (default 360: with ~15 %% of"
        " them conflicts, 300 bookings/s, the target's rate); 0: each client posts back to back, which measures"
        " the most bookings/s (latency is then queueing: clients / throughput)",
    )
    a = p.parse_args()
    n_tutors = a.tutors or (300 if a.quick else 1_000)
    n_clients = a.clients or (40 if a.quick else 100)
    seconds = a.seconds or (8.0 if a.quick else 30.0)
    warmup = a.warmup if a.warmup is not None else (2.0 if a.quick else 5.0)
    figures: dict[str, Any] = {
        "bench": "booking",
        **machine(),
        "target_bookings_per_s": TARGET_RPS,
        "target_p99_ms": TARGET_P99_MS,
    }

    from workers.processes import prepare

    rng = random.Random(20260603)
    with temp_database(a.keep_db) as dsn, tempfile.TemporaryDirectory(prefix="bench-booking-") as tmp:
        settings = make_settings(dsn)
        prepare(settings)
        now = datetime.now(UTC)

        say(f"seeding {n_tutors:,} approved tutors and the subject catalog (COPY of MetaMapper events)")
        t0 = time.perf_counter()
        log = LogBuilder(now - timedelta(days=7), timedelta(milliseconds=20))
        subjects = make_subjects(log)
        tutors = [make_tutor(log, rng, i, subjects, now, min_notice=rng.choice((0, 60, 240))) for i in range(n_tutors)]
        copy_events(dsn, log.rows)
        say(f"  {len(log.rows):,} events in {time.perf_counter() - t0:.1f}s")
        del log

        t0 = time.perf_counter()
        students = register_students(settings, n_clients)
        grant_credit(settings, students, tutors, a.tutors_per_student, rng, now)
        from application.store import close_all

        close_all()
        say(
            f"  {n_clients} students registered and credited ({a.tutors_per_student} tutors x {LOT_LESSONS} lessons"
            f" each) through the application in {time.perf_counter() - t0:.1f}s"
        )

        slots = [bookable_slots(t, now, 28) for t in tutors]
        figures.update(tutors=n_tutors, clients=n_clients, slots=sum(len(s) for s in slots), api_workers=a.api_workers)

        env = server_env(settings)
        logs = {name: Path(tmp) / f"{name}.log" for name in ("api", "projectors")}
        port = free_port()
        procs = {
            "projectors": spawn(["projectors"], env, logs["projectors"]),
            "api": spawn(
                ["api", "--host", "127.0.0.1", "--port", str(port), "--workers", str(a.api_workers)], env, logs["api"]
            ),
        }
        try:
            wait_http(f"http://127.0.0.1:{port}", procs["api"], logs["api"])
            waited = wait_caught_up(dsn, 300)
            assert waited is not None, "projections did not catch up with the seed"
            say(f"api up with {a.api_workers} granian workers; projections caught up with the seed in {waited:.1f}s")
            spec = {
                "host": "127.0.0.1",
                "port": port,
                "seconds": seconds,
                "warmup": warmup,
                "collide": a.collide,
                "rate": a.rate,
                "dbname": dsn.rsplit("/", 1)[1].split("?")[0],
                "pgids": {name: proc.pid for name, proc in procs.items()},
                "tutors": [
                    {"id": str(t["id"]), "subject": str(t["subjects"][0]), "slots": s}
                    for t, s in zip(tutors, slots, strict=True)
                ],
                "clients": [{"token": s["token"], "tutors": s["tutors"]} for s in students],
            }
            spec_path = Path(tmp) / "spec.json"
            spec_path.write_text(json.dumps(spec))
            say(
                f"driving: {n_clients} clients"
                + (f" paced at {a.rate:.0f} requests/s in all" if a.rate else " back to back")
                + f", {warmup:.0f}s warm-up + {seconds:.0f}s measured,"
                f" {100 * a.collide:.0f}% of requests aimed at an already tried slot"
            )
            out = subprocess.run(
                [sys.executable, __file__, "--drive", str(spec_path)], check=True, stdout=subprocess.PIPE, text=True
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            _low, head, positions = projection_positions(dsn)
            lag_at_end = head - positions.get("bookings", 0)
            catch = wait_caught_up(dsn, 300)
            say(
                f"  bookings projection {lag_at_end:,} events behind the head at the end; every projection caught"
                f" up {catch if catch is None else round(catch, 1)}s later"
            )
        finally:
            for proc in procs.values():
                stop_process(proc)
        for name, path in logs.items():
            text = path.read_text()
            if "Traceback" in text:
                say(f"{name} log has tracebacks:\n" + text[-3000:])

        import psycopg

        with psycopg.connect(dsn) as conn:
            rows = conn.execute("SELECT count(*) FROM bookings").fetchone()[0]  # type: ignore[index]
            overlaps = conn.execute(
                "SELECT count(*) FROM bookings a JOIN bookings b ON a.tutor_id = b.tutor_id AND a.booking_id <"
                " b.booking_id AND a.status IN ('pending', 'confirmed') AND b.status IN ('pending', 'confirmed')"
                " AND a.start_at < b.end_at AND b.start_at < a.end_at"
            ).fetchone()[0]  # type: ignore[index]
            requested = conn.execute(
                "SELECT count(*) FROM tutorconnect_events WHERE topic = 'domain.booking:Booking.Requested'"
            ).fetchone()[0]  # type: ignore[index]

    o = r["outcomes"]
    created = o.get("created", 0)
    conflicts = o.get("booking_conflict", 0) + o.get("concurrency_conflict", 0)
    others = {k: v for k, v in o.items() if k not in ("created", "booking_conflict", "concurrency_conflict")}
    figures.update(
        seconds=seconds,
        requests=r["requests"],
        requests_per_s=rnd(r["requests"] / seconds, 1),
        bookings_per_s=rnd(created / seconds, 1),
        successes=created,
        booking_conflicts=o.get("booking_conflict", 0),
        concurrency_conflicts=o.get("concurrency_conflict", 0),
        conflict_share_pct=rnd(100 * conflicts / max(r["requests"], 1), 1),
        other_failures=others,
        p50_ms=rnd(r["p50_ms"], 1),
        p90_ms=rnd(r["p90_ms"], 1),
        p99_ms=rnd(r["p99_ms"], 1),
        offered_requests_per_s=a.rate or None,
        sent_p50_ms=rnd(r["sent_p50_ms"], 1),
        sent_p99_ms=rnd(r["sent_p99_ms"], 1),
        max_ms=rnd(r["max_ms"], 1),
        created_p50_ms=rnd(r["created_p50_ms"], 1),
        created_p99_ms=rnd(r["created_p99_ms"], 1),
        api_cpu_ms_per_booking=rnd(r["api_cpu_ms_per_booking"], 2),
        projectors_cpu_ms_per_booking=rnd(r["projectors_cpu_ms_per_booking"], 2),
        postgres_cpu_ms_per_booking=rnd(r["postgres_cpu_ms_per_booking"], 2),
        machine_busy_pct=rnd(r["machine_busy_pct"], 0),
        projection_lag_events_at_end=lag_at_end,
        projections_caught_up_after_s=None if catch is None else rnd(catch, 1),
        bookings_read_model_rows=rows,
        booking_requested_events=requested,
        double_bookings=overlaps,
    )
    say(
        f"{created / seconds:,.1f} bookings/s ({r['requests'] / seconds:,.1f} requests/s): {created:,} created,"
        f" {o.get('booking_conflict', 0):,} booking conflicts, {o.get('concurrency_conflict', 0):,} concurrency"
        f" conflicts ({figures['conflict_share_pct']}%), other {others or 'none'}"
    )
    say(
        f"latency p50 {r['p50_ms']:.1f} ms, p90 {r['p90_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms (successes p99"
        f" {r['created_p99_ms']:.1f} ms); cpu per booking: api {r['api_cpu_ms_per_booking']:.1f} ms, projectors"
        f" {r['projectors_cpu_ms_per_booking']:.1f} ms, postgres {r['postgres_cpu_ms_per_booking']:.1f} ms;"
        f" machine {r['machine_busy_pct']:.0f}% busy"
    )
    say(f"read model: {rows:,} bookings for {requested:,} Booking.Requested events; {overlaps} double bookings")
    below = []
    if created / seconds < TARGET_RPS:
        below.append("bookings_per_s")
    # Back to back, every client always has a request waiting, so each waits clients / throughput (Little's law):
    # 100 clients at 380/s is ~260 ms whatever the server does. The latency target is judged at a paced rate.
    if a.rate and not r["p99_ms"] < TARGET_P99_MS:
        below.append("p99_ms")
    if overlaps or rows != requested:
        below.append("consistency")
    figures["below_target"] = below
    figures["meets_target"] = not below
    figures["mode"] = "paced" if a.rate else "back_to_back"
    say(
        f"targets (>= {TARGET_RPS:.0f} bookings/s"
        + (f", p99 < {TARGET_P99_MS:.0f} ms" if a.rate else "; p99 judged in paced runs")
        + "): "
        + ("met" if not below else f"NOT met: {', '.join(below)}")
    )
    emit(figures)


if __name__ == "__main__":
    main()
