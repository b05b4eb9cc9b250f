"""Shared helpers for the benchmark scripts: a throwaway database, settings, progress lines, percentiles.

Every script creates its own database on the server at BENCH_PG_URL (default the machine's PostgreSQL at
127.0.0.1:5432, user postgres), drops it at the end, and prints exactly one JSON object as its last line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg

from workers.embedded import free_port, wait_http  # noqa: F401 - re-exported for the scripts

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
JWT_SECRET = "bench-jwt-" + "k" * 40
GENEROUS = "register=1000000/minute,login=1000000/minute,default=1000000/minute"
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
