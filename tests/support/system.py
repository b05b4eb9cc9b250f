"""The system under test as the tests start it: settings for a test's database (`make_settings`) and the same values
as a process's environment (`server_env`), `tutorconnect` subprocesses, and waiting for what they do."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from application.settings import Settings, parse_rate_limits

ROOT = Path(__file__).resolve().parent.parent.parent
GENEROUS = "register=100000/minute,login=100000/minute,default=100000/minute"


def make_settings(database: str, redis_url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": database,
        "redis_url": redis_url,
        "jwt_secret": "test-jwt-" + "k" * 40,
        "rate_limits": parse_rate_limits(GENEROUS),
        "test_clock": True,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        "pool_size": 6,
    }
    base.update(overrides)
    return Settings(**base)


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "TEST_"))}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        JWT_SECRET=settings.jwt_secret,
        RATE_LIMITS=GENEROUS,
        TUTORCONNECT_TEST_CLOCK="1",
        ARGON2_TIME_COST="1",
        ARGON2_MEMORY_KIB="1024",
        ARGON2_PARALLELISM="1",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition", every: float = 0.2) -> Any:
    """Poll `predicate` until it returns something truthy and return that; fail the test after `timeout`.

    For what other processes do in their own time (projectors, the worker, the hub): there is no event to
    wait on from the test's side, so it asks every `every` seconds, never longer than `timeout` in all."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s (last: {value!r})"
        time.sleep(every)  # see the docstring: nothing to wait on but the predicate; bounded by timeout
