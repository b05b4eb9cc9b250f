"""Soak: a steady mixed load for --minutes (default 10) against the real processes, watching for errors, memory
growth and projection lag.

Setup: a fresh database; through the applications in this process a subject, --tutors approved tutors (all week,
UTC, 30-minute lessons) and --students students, each with credit for every tutor and a thread with one tutor;
localstripe for purchases. Processes: `tutorconnect projectors`, `tutorconnect worker`, `tutorconnect api
--workers 2` (granian), each in its own process group.

Load: --clients asyncio clients (httpx) at --rate requests/s in all, each request due on a fixed schedule (a slow
answer does not lower the rate). Each due request is one step of a mix: public search (a subject, a word, a price
sort, an availability window), a booking lifecycle (a student books, the tutor confirms, the student cancels:
credit comes back, so the load can run for hours), a message, a purchase paid by a signed `payment_intent.succeeded`
webhook, and the student's reads (credits, bookings, threads, notifications).

Reports: requests by route group and status; p50/p99 latency per group; RSS of every process (API master and
workers, projectors, worker) after the warm-up (the first --warmup-s) and at the end, and the growth, plus the
API's RSS every 30 s. Two things grow without being leaks, and the defaults keep them out of the growth figure:
the aggregate caches fill up to their bound (the processes run with AGGREGATE_CACHE_SIZE=--aggregate-cache, 200
per application, reached within the warm-up; the production default is 10,000, which this load would take far
longer than ten minutes to fill), and each cached aggregate grows with its own history (every booking leaves a
settled hold in its student's CreditAccount, every message a message in its Thread). With --students 40 each
student books ~170 lessons in ten minutes, all of them cached: the API's RSS then grows ~15 % (docs/PERFORMANCE.md,
tracemalloc: the cached copies of credit accounts and threads); with the default 400 the same load is spread as a
marketplace's would be (each history ten times thinner), and a leak would stand out. Projection
lag sampled every 100 ms (events behind the head, and how long each sampled head took to reach every read model,
p50/p99); then, once the read models caught up, the ledger reconciliation.
Targets: 0 5xx, RSS growth < 10 % after warm-up, reconciliation clean.

Run: .venv/bin/python bench/soak.py [--minutes 10] [--rate 40] [--quick]
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
from _common import (
    ROOT,
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

sys.path.insert(0, str(ROOT))
API = "/api/v1"
WEBHOOK_SECRET = "whsec_soak_" + "s" * 24
STRIPE_KEY = "sk_test_soak"
PASSWORD = "Passw0rd-soak"
WEEK = [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]
WORDS = ("maths", "physics", "teach", "berlin", "algebra")


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def group_rss(pgid: int) -> dict[int, int]:
    """RSS (KiB) of every live process in a process group, by pid."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                out[int(d.name)] = rss_kib(int(d.name))
    return out


def start_localstripe(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    code = (
        f"from localstripe.server import app; from aiohttp import web; web.run_app(app, host='127.0.0.1', port={port})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            cwd=log.parent, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/v1/balance", auth=(STRIPE_KEY, ""), timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling a starting server: nothing else tells when it answers
    raise RuntimeError("localstripe did not start")


def seed(settings: Any, tutors: int, students: int, base: str) -> dict[str, Any]:
    """A subject, approved tutors, students with credit for every tutor and a thread each (with their tokens)."""
    from application import context
    from application.catalog import Catalog
    from application.money import Money
    from application.store import close_all
    from tests.support.world import FAR, approve_tutor, grant

    subject, _ = Catalog(settings).create_subject("Maths", "science")
    sid = str(subject["id"])
    money = Money(settings)
    out: dict[str, Any] = {"subject": sid, "tutors": [], "students": []}
    with httpx.Client(base_url=base + API, timeout=30) as http:

        def signup(role: str) -> dict[str, Any]:
            body = {"email": f"soak-{role}-{secrets.token_hex(5)}@example.test", "password": PASSWORD,
                    "full_name": f"Soak {role.title()}", "role": role}  # fmt: skip
            r = http.post("/auth/register", json=body)
            assert r.status_code == 201, r.text
            return {"id": r.json()["user"]["id"], "token": r.json()["access_token"], "email": body["email"]}

        for _ in range(tutors):
            t = signup("tutor")
            approve_tutor(settings, UUID(t["id"]), subject_id=sid, weekly=WEEK, amount=4000)
            out["tutors"].append(t)
        with context.acting(actor_role="system"):
            for _ in range(students):
                s = signup("student")
                for t in out["tutors"]:
                    grant(money, UUID(s["id"]), UUID(t["id"]), 1_000_000, 1_000_000 * 60, FAR)
                r = http.post("/threads", json={"participant_id": out["tutors"][0]["id"]},
                              headers={"Authorization": f"Bearer {s['token']}"})  # fmt: skip
                assert r.status_code == 201, r.text
                s["thread"] = r.json()["id"]
                out["students"].append(s)
    close_all()
    return out


def webhook(payment_intent_id: str, amount: int) -> tuple[bytes, dict[str, str]]:
    event = {"id": "evt_" + secrets.token_hex(12), "object": "event", "type": "payment_intent.succeeded",
             "created": int(time.time()), "data": {"object": {"id": payment_intent_id, "object": "payment_intent",
             "amount": amount, "amount_received": amount, "currency": "usd", "status": "succeeded"}}}  # fmt: skip
    body = json.dumps(event).encode()
    ts = int(time.time())
    sig = hmac.new(WEBHOOK_SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={ts},v1={sig}", "Content-Type": "application/json"}


class Driver:
    """The mixed load and what it saw."""

    def __init__(self, base: str, world: dict[str, Any], rate: float, clients: int) -> None:
        self.base, self.world, self.rate, self.clients = base, world, rate, clients
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: Counter[tuple[str, int]] = Counter()
        self.errors: Counter[str] = Counter()
        self.rnd = random.Random(7)
        self.slot = 0

    async def call(
        self, http: httpx.AsyncClient, group: str, method: str, path: str, **kw: Any
    ) -> httpx.Response | None:
        t = time.monotonic()
        try:
            r = await http.request(method, API + path, **kw)
        except httpx.HTTPError as e:
            self.errors[f"{group}:{type(e).__name__}"] += 1
            return None
        self.latency[group].append((time.monotonic() - t) * 1000)
        self.status[(group, r.status_code)] += 1
        return r

    def auth(self, who: dict[str, Any]) -> dict[str, str]:
        return {"Authorization": f"Bearer {who['token']}"}

    async def step(self, http: httpx.AsyncClient) -> None:
        w, rnd = self.world, self.rnd
        student = rnd.choice(w["students"])
        kind = rnd.choices(["search", "lifecycle", "message", "purchase", "read"], [4, 3, 2, 1, 3])[0]
        if kind == "search":
            params = rnd.choice([
                {"subject": w["subject"]}, {"q": rnd.choice(WORDS)}, {"sort": "price"},
                {"available_from": _z(_day(rnd, 3)), "available_to": _z(_day(rnd, 3) + timedelta(hours=3))},
            ])  # fmt: skip
            await self.call(http, "search", "GET", "/tutors", params=params)
        elif kind == "lifecycle":
            tutor = rnd.choice(w["tutors"])
            self.slot += 1
            start = _day(rnd, 2 + self.slot % 120) + timedelta(minutes=30 * rnd.randint(0, 47))
            r = await self.call(http, "book", "POST", "/bookings", headers=self.auth(student), json={
                "tutor_id": tutor["id"], "subject_id": w["subject"], "start": _z(start), "duration_minutes": 30})  # fmt: skip
            if r is None or r.status_code != 201:
                return
            bid = r.json()["id"]
            r = await self.call(http, "confirm", "POST", f"/bookings/{bid}/confirm", headers=self.auth(tutor))
            await self.call(http, "cancel", "POST", f"/bookings/{bid}/cancel", headers=self.auth(student),
                            json={"reason": "soak"})  # fmt: skip
        elif kind == "message":
            await self.call(http, "message", "POST", f"/threads/{student['thread']}/messages",
                            headers=self.auth(student), json={"body": f"soak {secrets.token_hex(4)}"})  # fmt: skip
        elif kind == "purchase":
            tutor = rnd.choice(w["tutors"])
            r = await self.call(http, "purchase", "POST", "/packages/purchases", headers=self.auth(student),
                                json={"tutor_id": tutor["id"], "lessons": 1})  # fmt: skip
            if r is not None and r.status_code == 201:
                body, headers = webhook(r.json()["payment_intent_id"], int(r.json()["price"]["amount"]))
                await self.call(http, "webhook", "POST", "/webhooks/stripe", content=body, headers=headers)
        else:
            path = rnd.choice(["/student/credits", "/bookings", "/threads", "/notifications"])
            await self.call(http, "read", "GET", path, headers=self.auth(student))

    async def run(self, seconds: float) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=30,
                                     limits=httpx.Limits(max_connections=self.clients)) as http:  # fmt: skip
            period = self.clients / self.rate
            end = time.monotonic() + seconds

            async def client(i: int) -> None:
                due = time.monotonic() + period * i / self.clients
                while due < end:
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    await self.step(http)
                    due += period

            await asyncio.gather(*(client(i) for i in range(self.clients)))


def _day(rnd: random.Random, days: int) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)


def _z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def lag_sampler(dsn: str, stop: Any, samples: list[tuple[float, int, int]]) -> None:
    """(time, head, lowest active projection position) every 100 ms."""
    with psycopg.connect(dsn, autocommit=True) as c:
        while not stop.is_set():
            row = c.execute(
                "SELECT (SELECT coalesce(max(notification_id), 0) FROM tutorconnect_events),"
                " (SELECT coalesce(min(position), 0) FROM projection_tracking WHERE state = 'active')"
            ).fetchone()
            assert row is not None
            samples.append((time.monotonic(), int(row[0]), int(row[1])))
            stop.wait(0.1)


def lag_figures(samples: list[tuple[float, int, int]]) -> dict[str, float]:
    behind = [h - p for _, h, p in samples]
    reach: list[float] = []  # how long each sampled head took to reach every read model
    j = 0
    for t, h, _ in samples:
        j = max(j, 0)
        while j < len(samples) and samples[j][2] < h:
            j += 1
        if j < len(samples):
            reach.append((samples[j][0] - t) * 1000)
    return {
        "lag_events_p50": rnd(percentile(behind, 50)),
        "lag_events_p99": rnd(percentile(behind, 99)),
        "lag_ms_p50": rnd(percentile(reach, 50)),
        "lag_ms_p99": rnd(percentile(reach, 99)),
    }


def main() -> None:
    import threading

    p = parser(__doc__ or "")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=40.0, help="requests per second, in all")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--tutors", type=int, default=20)
    p.add_argument("--students", type=int, default=400)
    p.add_argument("--warmup-s", type=float, default=120.0)
    p.add_argument("--aggregate-cache", type=int, default=200, help="AGGREGATE_CACHE_SIZE of the processes")
    a = p.parse_args()
    if a.quick:
        a.minutes, a.warmup_s, a.tutors, a.students = 1.0, 15.0, 5, 10
    seconds = a.minutes * 60
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    figures: dict[str, Any] = {"bench": "soak", **machine(), "minutes": a.minutes, "rate_per_s": a.rate}
    stripe_proc, stripe_base = start_localstripe(tmp / "localstripe.log")
    with temp_database(a.keep_db) as dsn:
        settings = make_settings(dsn, stripe_api_key=STRIPE_KEY, stripe_api_base=stripe_base,
                                 stripe_webhook_secret=WEBHOOK_SECRET)  # fmt: skip
        from workers.processes import prepare

        prepare(settings)
        env = server_env(settings, STRIPE_API_KEY=STRIPE_KEY, STRIPE_API_BASE=stripe_base,
                         STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, AGGREGATE_CACHE_SIZE=str(a.aggregate_cache))  # fmt: skip
        port = free_port()
        procs = {
            "projectors": spawn(["projectors"], env, tmp / "projectors.log"),
            "worker": spawn(["worker"], env, tmp / "worker.log"),
            "api": spawn(["api", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"], env, tmp / "api.log"),
        }
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(base, procs["api"], tmp / "api.log")
            say("seeding")
            world = seed(settings, a.tutors, a.students, base)
            driver = Driver(base, world, a.rate, a.clients)
            stop, samples = threading.Event(), []
            sampler = threading.Thread(target=lag_sampler, args=(dsn, stop, samples), daemon=True)
            sampler.start()
            say(f"warm-up {a.warmup_s:.0f} s")
            asyncio.run(driver.run(a.warmup_s))
            rss_start = {name: group_rss(proc.pid) for name, proc in procs.items()}
            say(f"load {seconds:.0f} s at {a.rate}/s; RSS after warm-up {rss_start}")
            t0 = time.monotonic()
            api_rss: list[float] = []

            def watch_rss() -> None:
                while not stop.wait(30.0):
                    api_rss.append(rnd(sum(group_rss(procs["api"].pid).values()) / 1024))
                    say(f"API RSS {api_rss[-1]} MiB")

            watcher = threading.Thread(target=watch_rss, daemon=True)
            watcher.start()
            asyncio.run(driver.run(seconds))
            elapsed = time.monotonic() - t0
            rss_end = {name: group_rss(proc.pid) for name, proc in procs.items()}
            stop.set()
            sampler.join(5)
            say("waiting for the read models to reach the head")
            with psycopg.connect(dsn, autocommit=True) as c:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    head, low = c.execute(
                        "SELECT (SELECT coalesce(max(notification_id), 0) FROM tutorconnect_events),"
                        " (SELECT coalesce(min(position), 0) FROM projection_tracking WHERE state = 'active')"
                    ).fetchone() or (0, 0)
                    if low >= head:
                        break
                    time.sleep(0.2)  # the projectors work in their own processes: poll until they are done
                stopped = [r[0] for r in c.execute("SELECT name FROM projection_tracking WHERE stopped").fetchall()]
            from projections.reconcile import reconcile

            result = reconcile(dsn)
        finally:
            for proc in procs.values():
                stop_process(proc)
            stripe_proc.terminate()
    statuses: dict[str, dict[str, int]] = defaultdict(dict)
    for (group, code), n in sorted(driver.status.items()):
        statuses[group][str(code)] = n
    total = sum(driver.status.values())
    figures.update(
        requests=total,
        requests_per_s=rnd(total / (elapsed + a.warmup_s)),
        status_by_group=statuses,
        connection_errors=dict(driver.errors),
        server_errors_5xx=sum(n for (_, code), n in driver.status.items() if code >= 500),
        latency_ms={
            g: {"p50": rnd(percentile(v, 50)), "p99": rnd(percentile(v, 99))} for g, v in sorted(driver.latency.items())
        },
    )
    rss: dict[str, Any] = {}
    worst = 0.0
    for name in procs:
        start_kib = sum(rss_start[name].values())
        end_kib = sum(rss_end[name].values())
        growth = (end_kib - start_kib) / start_kib * 100 if start_kib else float("nan")
        worst = max(worst, growth)
        rss[name] = {"processes": len(rss_end[name]), "start_mib": rnd(start_kib / 1024),
                     "end_mib": rnd(end_kib / 1024), "growth_pct": rnd(growth)}  # fmt: skip
    figures.update(rss=rss, rss_growth_worst_pct=rnd(worst), api_rss_mib_every_30s=api_rss, **lag_figures(samples))
    figures.update(reconciliation_ok=bool(result["ok"]), stopped_projections=stopped,
                   met=figures["server_errors_5xx"] == 0 and worst < 10 and bool(result["ok"]) and not stopped)  # fmt: skip
    if not result["ok"]:
        say(f"reconciliation: {json.dumps(result, default=str)[:2000]}")
    say(f"logs in {tmp}")
    emit(figures)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
