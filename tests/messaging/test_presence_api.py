"""Presence: a user's first WebSocket (on any API process) sends `presence` frames `{user_id, online: true}` to the
other party of each of their threads, their last one closing `{online: false}`; GET /threads shows the other
party's name, whether they are online and when they were last seen. Two app instances (each its own hub and
presence task, as two API processes have) share PostgreSQL and Redis; a real API process killed with -9 stops
counting within its TTL; Redis stopping breaks neither sockets nor /threads, and presence comes back with it."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import TestClient

from api.app import create_app
from application.settings import Settings
from tests.support.api import bearer, register
from tests.support.system import make_settings, server_env, spawn, stop_process, wait_until
from workers.embedded import free_port, redis_command, wait_http, wait_ready

API = "/api/v1"
TTL_S = 1.5  # PRESENCE_TTL_S for these tests: a dead process stops counting within 1.5 s, is reaped 0.5 s later


def _presence(ws: Any, within: float = 10.0) -> dict[str, Any]:
    """The next `presence` frame's data (other frames are passed over)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            frame = json.loads(ws.receive_text(timeout=max(0.05, deadline - time.monotonic())))
        except queue.Empty:
            break
        if frame["type"] == "presence":
            assert set(frame) == {"type", "data"} and set(frame["data"]) == {"user_id", "online"}, frame
            return dict(frame["data"])
    raise AssertionError(f"no presence frame within {within} s")


def _no_presence(ws: Any, within: float = 1.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            frame = json.loads(ws.receive_text(timeout=max(0.05, deadline - time.monotonic())))
        except queue.Empty:
            return
        assert frame["type"] != "presence", frame


def _other_party(client: TestClient[Any], who: dict[str, Any], thread_id: str) -> dict[str, Any]:
    r = client.get(f"{API}/threads", headers=bearer(who))
    assert r.status_code == 200, r.text
    return next(dict(t["other_party"]) for t in r.json()["items"] if t["id"] == thread_id)


def _thread(client: TestClient[Any], a: dict[str, Any], b: dict[str, Any]) -> str:
    """A thread of the pair, shown in GET /threads (so the read model the hubs ask has it)."""
    r = client.post(f"{API}/threads", json={"participant_id": b["user"]["id"]}, headers=bearer(a))
    assert r.status_code == 201, r.text
    listed = client.get(f"{API}/threads", headers={**bearer(a), "X-Min-Position": r.headers["X-Event-Position"]})
    assert listed.status_code == 200, listed.text
    return str(r.json()["id"])


@pytest.fixture
def fast(prepared: Settings) -> Settings:
    """The test's settings with a short presence TTL."""
    return make_settings(prepared.database_url, prepared.redis_url, presence_ttl_s=TTL_S)


@pytest.fixture
def two(fast: Settings, projectors: Any) -> Iterator[tuple[TestClient[Any], TestClient[Any]]]:
    """Two app instances on one database and one Redis, as two API processes."""
    with (
        TestClient(create_app(fast), base_url="http://one.local", timeout=30) as one,
        TestClient(create_app(fast), base_url="http://two.local", timeout=30) as other,
    ):
        yield one, other


def test_first_socket_on_and_last_socket_off_across_two_processes(
    two: tuple[TestClient[Any], TestClient[Any]],
) -> None:
    one, other = two
    a = register(one, "student", full_name="Ada Online")
    b = register(one, "tutor", full_name="Bo Watcher")
    stranger = register(one, "student")
    thread_id = _thread(one, a, b)
    assert _other_party(other, b, thread_id) == {
        "id": a["user"]["id"],
        "full_name": "Ada Online",
        "online": False,
        "last_seen_at": None,
    }
    with (
        other.websocket_connect(f"{API}/ws?token={b['access_token']}") as to_b,
        other.websocket_connect(f"{API}/ws?token={stranger['access_token']}") as to_stranger,
    ):
        with one.websocket_connect(f"{API}/ws?token={a['access_token']}"):
            assert _presence(to_b) == {"user_id": a["user"]["id"], "online": True}
            seen = _other_party(other, b, thread_id)
            assert seen["online"] is True and seen["last_seen_at"] is not None
            with other.websocket_connect(f"{API}/ws?token={a['access_token']}"):  # a second socket, other process
                _no_presence(to_b)
            _no_presence(to_b)  # a still has a socket on `one`
            assert _other_party(one, b, thread_id)["online"] is True
        left = datetime.now(UTC)
        assert _presence(to_b) == {"user_id": a["user"]["id"], "online": False}
        gone = _other_party(one, b, thread_id)
        assert gone["online"] is False
        assert abs((datetime.fromisoformat(gone["last_seen_at"]) - left).total_seconds()) < 5
        _no_presence(to_stranger, 0.2)  # shares no thread with a
    # b, on the other side, was online for a
    assert _other_party(one, a, thread_id)["full_name"] == "Bo Watcher"


@pytest.fixture
def killable_api(fast: Settings, projectors: Any, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real `tutorconnect api` process with the short presence TTL."""
    port = free_port()
    log = tmp_path / "api.log"
    env = server_env(fast, PRESENCE_TTL_S=str(TTL_S))
    proc = spawn(["api", "--host", "127.0.0.1", "--port", str(port)], env, log)
    root = f"http://127.0.0.1:{port}"
    wait_http(root, proc, log)
    yield root, proc
    stop_process(proc)


class RemoteSocket:
    """A WebSocket to a real API process, held open by a thread (aiohttp), counting the frames it gets."""

    def __init__(self, url: str) -> None:
        self.url, self.opened, self.frames = url, threading.Event(), 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.opened.wait(15), "the socket did not open"

    def _run(self) -> None:
        import asyncio

        import aiohttp

        async def hold() -> None:
            async with aiohttp.ClientSession() as s, s.ws_connect(self.url) as ws:
                self.opened.set()
                async for _ in ws:
                    self.frames += 1

        asyncio.run(hold())


def test_a_killed_process_stops_counting_within_its_ttl(
    two: tuple[TestClient[Any], TestClient[Any]], killable_api: tuple[str, subprocess.Popen[bytes]]
) -> None:
    one, _ = two
    root, proc = killable_api
    a, b = register(one, "student"), register(one, "tutor")
    thread_id = _thread(one, a, b)
    with one.websocket_connect(f"{API}/ws?token={b['access_token']}") as to_b:
        RemoteSocket(f"{root.replace('http', 'ws')}{API}/ws?token={a['access_token']}")
        assert _presence(to_b) == {"user_id": a["user"]["id"], "online": True}
        assert _other_party(one, b, thread_id)["online"] is True
        os.killpg(proc.pid, signal.SIGKILL)  # granian and its worker: no shutdown, nothing closed in Redis
        proc.wait(10)
        killed = time.monotonic()
        assert _presence(to_b, within=4 * TTL_S + 5) == {"user_id": a["user"]["id"], "online": False}
        assert time.monotonic() - killed < 4 * TTL_S + 5
        party = _other_party(one, b, thread_id)
        assert party["online"] is False and party["last_seen_at"] is not None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A redis-server of this test's own, which the test may stop and start again (same port)."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    procs = [subprocess.Popen(redis_command(port, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    wait_ready(lambda: _alive(url), 10, "redis-server", procs[0])
    yield url, procs
    for p in procs:
        p.terminate()
        p.wait(5)


def _alive(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def test_redis_stopping_breaks_neither_sockets_nor_threads(
    prepared: Settings, projectors: Any, private_redis: tuple[str, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    url, procs = private_redis
    settings = make_settings(prepared.database_url, url, presence_ttl_s=TTL_S)
    with TestClient(create_app(settings), base_url="http://one.local", timeout=30) as client:
        a, b = register(client, "student"), register(client, "tutor")
        thread_id = _thread(client, a, b)
        with client.websocket_connect(f"{API}/ws?token={a['access_token']}") as to_a:
            wait_until(lambda: _other_party(client, b, thread_id)["online"], 10, "a online")
            procs[0].terminate()
            procs[0].wait(5)
            party = _other_party(client, b, thread_id)
            assert party["online"] is False and party["last_seen_at"] is None
            r = client.post(f"{API}/threads/{thread_id}/messages", json={"body": "still on?"}, headers=bearer(b))
            assert r.status_code == 201, r.text
            frame = json.loads(to_a.receive_text(timeout=10))
            assert frame["type"] == "message.created" and frame["data"]["body"] == "still on?"
            with client.websocket_connect(f"{API}/ws?token={b['access_token']}"):  # a socket opens without Redis
                pass
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            procs.append(
                subprocess.Popen(redis_command(port, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            wait_ready(lambda: _alive(url), 10, "redis-server", procs[-1])
            # the restarted server knows nothing: the process tells it its sockets again
            wait_until(lambda: _other_party(client, b, thread_id)["online"], 15, "a online again")


def test_a_dead_redis_port_from_the_start(prepared: Settings, projectors: Any) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with TestClient(create_app(make_settings(prepared.database_url, dead)), timeout=30) as client:
        a, b = register(client, "student"), register(client, "tutor")
        thread_id = _thread(client, a, b)
        with client.websocket_connect(f"{API}/ws?token={a['access_token']}") as to_a:
            r = client.post(f"{API}/threads/{thread_id}/messages", json={"body": "hello"}, headers=bearer(b))
            assert r.status_code == 201, r.text
            assert json.loads(to_a.receive_text(timeout=10))["type"] == "message.created"
            party = _other_party(client, b, thread_id)
            assert party["online"] is False and party["last_seen_at"] is None
