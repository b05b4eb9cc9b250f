"""The server's notion of now: real UTC time, or the shared test clock when TUTORCONNECT_TEST_CLOCK=1.

The test clock is an offset from real time kept in Redis, so every API, projector and worker process sees the
same business time; token lifetimes never use it (they use `real_now`)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import redis

KEY = "tutorconnect:test_clock_offset"


def real_now() -> datetime:
    """Wall-clock UTC time."""
    return datetime.now(UTC)


class Clock:
    """Business time; all rules, schedules and recorded instants take `now()` from here."""

    def __init__(self, redis_url: str | None = None, enabled: bool = False, cache_s: float = 0.2) -> None:
        self.enabled = enabled and bool(redis_url)
        self._redis = (
            redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
            if self.enabled and redis_url
            else None
        )
        self._cache_s = cache_s
        self._offset = 0.0
        self._read_at = -1e9
        self._lock = threading.Lock()

    def offset(self) -> float:
        """Seconds the test clock is ahead of real time (0 when disabled)."""
        if self._redis is None:
            return 0.0
        mono = time.monotonic()
        if mono - self._read_at > self._cache_s:
            try:
                raw = self._redis.get(KEY)
            except redis.RedisError:  # Redis away: keep the offset last read (business time flows on)
                with self._lock:
                    self._read_at = mono + 1.0
                return self._offset
            with self._lock:
                self._offset = float(raw) if raw else 0.0
                self._read_at = mono
        return self._offset

    def now(self) -> datetime:
        """Business now (aware UTC)."""
        off = self.offset()
        return datetime.fromtimestamp(time.time() + off, UTC)

    def set(self, when: datetime) -> None:
        """Move business time to `when` (then it flows on at real speed)."""
        if self._redis is None:
            raise RuntimeError("the test clock is not enabled")
        off = when.timestamp() - time.time()
        self._redis.set(KEY, repr(off))
        with self._lock:
            self._offset, self._read_at = off, time.monotonic()

    def reset(self) -> None:
        """Return to real time."""
        if self._redis is None:
            raise RuntimeError("the test clock is not enabled")
        self._redis.delete(KEY)
        with self._lock:
            self._offset, self._read_at = 0.0, time.monotonic()


SYSTEM = Clock()
