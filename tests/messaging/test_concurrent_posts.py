"""Posts to one thread are never refused because others post at the same time: 50 posts from 16 clients through a
real granian process all land, each exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from application.settings import Settings
from tests.support.api import bearer, register
from tests.support.system import server_env, spawn, stop_process
from workers.embedded import free_port, wait_http

API = "/api/v1"


@pytest.fixture(params=[1, 2], ids=["one-worker", "two-workers"])
def api_root(request: Any, prepared: Settings, projectors: Any, tmp_path: Path) -> Iterator[str]:
    """A real `tutorconnect api` process with one or two granian workers (two: writers in two processes)."""
    port = free_port()
    log = tmp_path / "api.log"
    args = ["api", "--host", "127.0.0.1", "--port", str(port), "--workers", str(request.param)]
    proc = spawn(args, server_env(prepared), log)
    root = f"http://127.0.0.1:{port}"
    wait_http(root, proc, log)
    yield root
    stop_process(proc)


def test_fifty_posts_from_sixteen_clients_all_land_once(api_root: str, prepared: Settings) -> None:
    live_server = api_root
    with httpx.Client(base_url=live_server, timeout=60) as c:
        a, b = register(c, "student"), register(c, "tutor")
        thread = c.post(f"{API}/threads", json={"participant_id": b["user"]["id"]}, headers=bearer(a)).json()
    url = f"{API}/threads/{thread['id']}/messages"
    clients = [httpx.Client(base_url=live_server, timeout=60) for _ in range(16)]

    def post(i: int) -> httpx.Response:
        who = a if i % 2 else b
        return clients[i % 16].post(url, json={"body": f"message {i}"}, headers=bearer(who))

    try:
        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(post, range(50)))
    finally:
        for c in clients:
            c.close()
    statuses = [r.status_code for r in responses]
    assert statuses == [201] * 50, [(r.status_code, r.text[:200]) for r in responses if r.status_code != 201]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 50
    with psycopg.connect(prepared.database_url) as conn:
        bodies: list[Any] = [
            r[0]
            for r in conn.execute(
                "SELECT convert_from(state, 'UTF8')::jsonb ->> 'body' FROM tutorconnect_events"
                " WHERE originator_id = %s AND topic LIKE %s",
                (thread["id"], "%MessagePosted"),
            ).fetchall()
        ]
    assert sorted(bodies) == sorted(f"message {i}" for i in range(50))
