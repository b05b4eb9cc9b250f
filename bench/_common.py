"""Shared helpers for the benchmark scripts: a throwaway database, settings, progress lines, percentiles.

Every script creates its own database on the server at BENCH_PG_URL (default the machine's PostgreSQL at
127.0.0.1:5432, user postgres), drops it at the end, and prints exactly one JSON object as its last line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg

from workers.embedded import free_port, wait_http  # noqa: F401 - re-exported for the scripts

if TYPE_CHECKING:
    from search import LogBuilder

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
JWT_SECRET = "bench-jwt-" + "k" * 40
GENEROUS = "register=1000000/minute,login=1000000/minute,default=1000000/minute"
COMMISSION_BPS = 2000
VALIDITY = timedelta(days=180)
_T0 = time.monotonic()


def say(msg: str) -> None:
    """A progress line (stdout, flushed, with seconds since start)."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", flush=True)


def emit(figures: dict[str, Any]) -> None:
    """The script's last line: one JSON object of its figures (NaN, which JSON lacks, becomes null)."""
    clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in figures.items()}
    print(json.dumps(clean, separators=(", ", ": ")), flush=True)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run of ~30 s)")
    p.add_argument("--keep-db", action="store_true", help="do not drop the benchmark database at the end")
    return p


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def rnd(x: float, digits: int = 1) -> float:
    return round(float(x), digits)


def machine() -> dict[str, Any]:
    """What the figures were measured on (and how busy it was when we started)."""
    load1 = os.getloadavg()[0]
    return {"cpus": os.cpu_count(), "load1_at_start": round(load1, 2)}


def proc_cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds of one process (a PostgreSQL backend, say), or None if /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """user + system CPU seconds of every live process in a process group (a child we spawned and its own)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def backends_cpu_seconds(dbname: str) -> float | None:
    """CPU seconds used so far by every live backend connected to `dbname` (PostgreSQL on this machine)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as c:
        pids = [r[0] for r in c.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (dbname,))]
    values = [proc_cpu_seconds(pid) for pid in pids]
    if any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)


def database_url(name: str) -> str:
    base, _, rest = ADMIN_URL.rpartition("/")
    query = ("?" + rest.split("?", 1)[1]) if "?" in rest else ""
    return f"{base}/{name}{query}"


@contextlib.contextmanager
def temp_database(keep: bool = False) -> Iterator[str]:
    """CREATE DATABASE bench_<random>; yield its URL; close our pools and DROP it (WITH FORCE) at the end."""
    name = "bench_" + secrets.token_hex(5)
    with psycopg.connect(ADMIN_URL, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    say(f"database {name} created")
    try:
        yield database_url(name)
    finally:
        from application.store import close_all

        close_all()
        if keep:
            say(f"database {name} kept")
        else:
            with contextlib.suppress(psycopg.Error), psycopg.connect(ADMIN_URL, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            say(f"database {name} dropped")


def make_settings(database_url: str, **overrides: Any) -> Any:
    """Settings like tests/support/system.py `make_settings`: cheap argon2, generous limits, real clock."""
    from application.settings import Settings, parse_rate_limits

    base: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "jwt_secret": JWT_SECRET,
        "rate_limits": parse_rate_limits(GENEROUS),
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        "pool_size": 10,
    }
    base.update(overrides)
    return Settings(**base)


def server_env(settings: Any, **extra: str) -> dict[str, str]:
    """Environment for a `python -m workers.cli ...` child process on the benchmark database."""
    env = {k: v for k, v in os.environ.items() if k not in ("WEB_CONCURRENCY", "TUTORCONNECT_TEST_CLOCK")}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        JWT_SECRET=settings.jwt_secret,
        RATE_LIMITS=GENEROUS,
        ARGON2_TIME_COST="1",
        ARGON2_MEMORY_KIB="1024",
        ARGON2_PARALLELISM="1",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `python -m workers.cli ARGS` in its own session (so we can stop exactly it and its children)."""
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


# ------------------------------------------------------------------------------- money seed (ledger, exports)


class Economy:
    """Students buying, booking and settling, tutors accruing and being paid, interleaved in one log."""

    def __init__(self, rng: random.Random, log: LogBuilder, n_tutors: int) -> None:
        from domain.payouts import TutorPayouts

        self.rng = rng
        self.log = log
        self.tutors = [uuid.uuid4() for _ in range(n_tutors)]
        self.rates = {t: rng.choice(range(2000, 9001, 500)) for t in self.tutors}
        self.payouts = {t: TutorPayouts(tutor_id=t) for t in self.tutors}
        self.postings = 0
        self.money_events = 0
        self.counts: dict[str, int] = {}
        self.accounts: dict[str, set[str]] = {"student_credit": set(), "tutor_payable": set(), "booking_hold": set()}
        self.students = 0
        self.target = 0
        self.first = log.clock.t
        self.events = 0

    @property
    def last(self) -> datetime:
        """`recorded_at` of the last event generated so far."""
        return self.log.clock.t

    def record(self, aggregates: list[Any], actor: Any, role: str) -> None:
        """One command's events: count their postings, map them with MetaMapper."""
        from application import context
        from domain.ledger import postings_for

        self.log._n += 1
        with context.acting(
            actor_id=str(actor) if actor else None, actor_role=role, correlation_id=f"seed-{self.log._n}"
        ):
            for agg in aggregates:
                for e in agg.collect_events():
                    kind = type(e).__qualname__
                    self.counts[kind] = self.counts.get(kind, 0) + 1
                    # the event as its stored JSON reads (lots, parts and holds are values in memory)
                    _, rows = postings_for(kind, msgspec.to_builtins(vars(e)))
                    if rows:
                        self.money_events += 1
                        self.postings += len(rows)
                        for account, *_ in rows:
                            head = account.split(":", 1)[0]
                            if head in self.accounts:
                                self.accounts[head].add(account)
                    se = self.log.mapper.to_stored_event(e)
                    self.log.rows.append((se.originator_id, se.originator_version, se.topic, se.state))

    def student(self) -> Iterator[tuple[list[Any], Any, str]]:
        """One student's life: packages, lessons held and settled, leftovers expiring, buying again."""
        from domain.credits import CreditAccount

        rng = self.rng
        sid = uuid.uuid4()
        self.students += 1
        account = CreditAccount(student_id=sid)
        while True:
            tutor = rng.choice(self.tutors)
            lessons = rng.choice((5, 10, 10, 20))
            discount = {5: 0, 10: 500, 20: 1000}[lessons]
            price = self.rates[tutor] * lessons * (10_000 - discount) // 10_000
            lot = str(uuid.uuid4())
            account.grant(lot, lot, str(tutor), lessons * 60, price, "USD", self.log.clock.t + VALIDITY)
            yield [account], None, "system"
            used = lessons if rng.random() >= 0.3 else rng.randint(0, lessons - 1)
            for _ in range(used):
                booking = str(uuid.uuid4())
                account.hold(booking, str(tutor), 60, self.log.clock.t, COMMISSION_BPS)
                yield [account], sid, "student"
                r = rng.random()
                capture, outcome = (60, "captured") if r < 0.75 else (0, "released") if r < 0.90 else (30, "cancelled")
                result = account.resolve(booking, capture, outcome)
                payouts = self.payouts[tutor]
                if result["tutor_net"] > 0:
                    payouts.accrue(booking, result["tutor_net"], "USD")
                    yield [account, payouts], tutor, "tutor"
                    if len(payouts.bookings) % 15 == 0 and payouts.payable("USD") > 0:
                        payouts.pay_out(str(uuid.uuid4()), payouts.payable("USD"), "USD", f"batch-{self.log._n}")
                        yield [payouts], None, "finance"
                else:
                    yield [account], tutor, "tutor"
            if used < lessons and account.expire(self.log.clock.t + VALIDITY + timedelta(days=1)):
                yield [account], None, "system"
            if rng.random() < 0.4 or self.postings >= self.target:
                return  # past the target, the students in flight finish their current package and stop

    def run(self, target_postings: int, parallel: int) -> None:
        """Advance `parallel` students at a time in random order until the postings reach the target."""
        self.target = target_postings
        active = [self.student() for _ in range(parallel)]
        while active:
            i = self.rng.randrange(len(active))
            try:
                aggregates, actor, role = next(active[i])
            except StopIteration:
                if self.postings < target_postings:
                    active[i] = self.student()
                else:
                    active[i] = active[-1]
                    active.pop()
                continue
            self.record(aggregates, actor, role)


def seed_money(dsn: str, rng: random.Random, target: int, n_tutors: int) -> Economy:
    """A year of money events implying `target` postings, COPYed into the log of `dsn` (bench/ledger.py, exports.py)."""
    from search import LogBuilder, copy_events

    say(f"generating a year of money events implying {target:,} postings (real aggregates, MetaMapper)")
    t0 = time.perf_counter()
    span = timedelta(days=365)
    start = datetime.now(UTC) - span - timedelta(days=1)
    log = LogBuilder(start, span / (target * 0.62))
    economy = Economy(rng, log, n_tutors)
    economy.run(target, parallel=max(50, target // 1000))
    economy.events = len(log.rows)
    say(
        f"  {economy.events:,} events ({economy.money_events:,} money events, {economy.postings:,} postings,"
        f" {economy.students:,} students, {n_tutors:,} tutors) over {(economy.last - economy.first).days} days"
        f" in {time.perf_counter() - t0:.1f}s"
    )
    say("  " + ", ".join(f"{k} {v:,}" for k, v in sorted(economy.counts.items())))
    t0 = time.perf_counter()
    copy_events(dsn, log.rows)
    log.rows = []  # a million tuples: not needed once they are in the table
    say(f"  COPY + VACUUM ANALYZE in {time.perf_counter() - t0:.1f}s")
    return economy
