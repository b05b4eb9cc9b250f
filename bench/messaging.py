"""Messaging end to end across two API processes: messages/s accepted and delivery latency to the other party.

Setup: a fresh database, Redis db 14 flushed, `python -m workers.cli projectors` and TWO `python -m workers.cli api`
processes (one granian worker each, own ports) as child processes; --pairs pairs of users registered through
POST /auth/register, each pair sharing a thread (POST /threads). Every pair's first user holds a WebSocket on the
first API process and the second user on the second, so each frame crosses processes (the sender's post is
recorded through its own process; the recipient's process hears it through the log's NOTIFY; presence frames
through Redis).

Load: posts through POST /threads/{id}/messages at a steady --rate (messages/s, all pairs in turn, the two sides
alternating, each through its own API process) for --seconds after a 2 s warm-up; each post is timed from just
before it is sent to the moment its `message.created` frame arrives at the other party's socket (one driver
process and clock for both ends; the driver competes with the APIs, the projectors and PostgreSQL for the cores).

Run: .venv/bin/python bench/messaging.py [--quick] [--pairs 100] [--seconds 25] [--rate 100]
"""

from __future__ import annotations

import asyncio
import json
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    emit,
    free_port,
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
    wait_http,
)

PASSWORD = "Passw0rd-bench"
API = "/api/v1"


class Driver:
    """The pairs' sockets and the timed posts."""

    def __init__(self, roots: tuple[str, str], cpu: Callable[[], float]) -> None:
        self.roots, self.cpu = roots, cpu
        self.sent: dict[str, float] = {}
        self.delivered: dict[str, float] = {}
        self.post_ms: list[float] = []
        self.statuses: dict[int, int] = {}
        self.presence_frames = 0
        self.measuring = False

    async def register(self, http: Any, root: str, i: int) -> dict[str, Any]:
        body = {
            "email": f"bench{i}-{secrets.token_hex(3)}@example.test",
            "password": PASSWORD,
            "full_name": f"Bench User {i}",
            "role": "student" if i % 2 else "tutor",
        }
        async with http.post(f"{root}{API}/auth/register", json=body) as r:
            if r.status != 201:
                raise SystemExit(f"register: {r.status} {await r.text()}")
            out = await r.json()
        return {"id": out["user"]["id"], "token": out["access_token"], "root": root}

    async def listen(self, ws: Any, me: str) -> None:
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame["type"] == "presence":
                self.presence_frames += 1
            elif frame["type"] == "message.created" and frame["data"]["sender_id"] != me:
                key = frame["data"]["body"]
                if key in self.sent and key not in self.delivered:
                    self.delivered[key] = time.perf_counter()

    async def post(self, http: Any, who: dict[str, Any], thread_id: str, key: str) -> None:
        t0 = time.perf_counter()
        if self.measuring:
            self.sent[key] = t0
        headers = {"Authorization": f"Bearer {who['token']}"}
        async with http.post(
            f"{who['root']}{API}/threads/{thread_id}/messages", json={"body": key}, headers=headers
        ) as r:
            await r.read()
            status = r.status
        if self.measuring:
            self.post_ms.append((time.perf_counter() - t0) * 1000)
            self.statuses[status] = self.statuses.get(status, 0) + 1

    async def run(self, pairs: int, seconds: float, rate: float) -> dict[str, Any]:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=64)
        sockets_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0)
        )  # a socket holds its connection
        async with (
            aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http,
            sockets_session,
        ):
            say(f"seeding: {2 * pairs} users (POST /auth/register), {pairs} threads (POST /threads)")
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> dict[str, Any]:
                async with sem:
                    return await self.register(http, self.roots[i % 2], i)

            users = await asyncio.gather(*(one(i) for i in range(2 * pairs)))
            threads: list[tuple[dict[str, Any], dict[str, Any], str]] = []
            for k in range(pairs):
                a, b = users[2 * k], users[2 * k + 1]
                async with http.post(
                    f"{a['root']}{API}/threads",
                    json={"participant_id": b["id"]},
                    headers={"Authorization": f"Bearer {a['token']}"},
                ) as r:
                    if r.status != 201:
                        raise SystemExit(f"open thread: {r.status} {await r.text()}")
                    threads.append((a, b, (await r.json())["id"]))
            say(f"connecting {2 * pairs} WebSockets, half on each API process")
            t0 = time.perf_counter()
            sockets = []
            for u in users:
                ws_url = u["root"].replace("http", "ws", 1) + f"{API}/ws?token={u['token']}"
                sockets.append(await sockets_session.ws_connect(ws_url, heartbeat=None))
            connect_s = time.perf_counter() - t0
            readers = [asyncio.create_task(self.listen(ws, u["id"])) for ws, u in zip(sockets, users, strict=True)]
            await asyncio.sleep(1.0)
            presence_at_connect = self.presence_frames

            async def load(duration: float, start_k: int) -> int:
                tasks = []
                begin = time.perf_counter()
                n = int(duration * rate)
                for i in range(n):
                    await asyncio.sleep(max(0.0, begin + i / rate - time.perf_counter()))
                    k = start_k + i
                    a, b, tid = threads[k % pairs]
                    who = a if (k // pairs) % 2 == 0 else b
                    tasks.append(asyncio.create_task(self.post(http, who, tid, f"bench {k}")))
                await asyncio.gather(*tasks)
                return n

            say(f"warm-up 2 s at {rate:.0f} messages/s")
            warm = await load(2.0, 0)
            say(f"measuring {seconds:.0f} s at {rate:.0f} messages/s across {pairs} threads")
            self.measuring = True
            t0, cpu0 = time.perf_counter(), self.cpu()
            posted = await load(seconds, warm)
            elapsed, cpu = time.perf_counter() - t0, self.cpu() - cpu0
            deadline = time.perf_counter() + 5
            while len(self.delivered) < len(self.sent) and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
            for t in readers:
                t.cancel()
            for ws in sockets:
                await ws.close()
        latencies = [(self.delivered[k] - t) * 1000 for k, t in self.sent.items() if k in self.delivered]
        accepted = self.statuses.get(201, 0)
        return {
            "posted": posted,
            "accepted": accepted,
            "refused": posted - accepted,
            "accepted_per_s": rnd(accepted / elapsed),
            "api_cpu_ms_per_message": rnd(cpu * 1000 / max(1, posted), 2),
            "delivered": len(latencies),
            "post_ms_p50": rnd(percentile(self.post_ms, 50)),
            "post_ms_p99": rnd(percentile(self.post_ms, 99)),
            "delivery_ms_p50": rnd(percentile(latencies, 50)),
            "delivery_ms_p90": rnd(percentile(latencies, 90)),
            "delivery_ms_p99": rnd(percentile(latencies, 99)),
            "delivery_ms_max": rnd(max(latencies, default=float("nan"))),
            "sockets": len(sockets),
            "connect_all_s": rnd(connect_s, 2),
            "presence_frames_at_connect": presence_at_connect,
        }


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--seconds", type=float, default=25.0)
    p.add_argument("--rate", type=float, default=100.0, help="messages per second, all threads together")
    a = p.parse_args()
    pairs, seconds = (20, 8.0) if a.quick else (a.pairs, a.seconds)
    figures: dict[str, Any] = {"bench": "messaging", **machine(), "api_processes": 2, "pairs": pairs}
    figures.update(rate_per_s=a.rate, seconds=seconds)

    import redis

    from workers.processes import prepare

    with temp_database(a.keep_db) as dsn, tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(dsn)
        redis.Redis.from_url(settings.redis_url).flushdb()
        prepare(settings)
        env = server_env(settings)
        procs = [spawn(["projectors"], env, Path(tmp) / "projectors.log")]
        roots = []
        try:
            for i in range(2):
                port = free_port()
                log = Path(tmp) / f"api{i}.log"
                api = spawn(["api", "--host", "127.0.0.1", "--port", str(port)], env, log)
                procs.append(api)
                roots.append(f"http://127.0.0.1:{port}")
                wait_http(roots[-1], api, log, timeout=60)
            say(f"two API processes ({', '.join(roots)}), projectors running")
            driver = Driver((roots[0], roots[1]), lambda: sum(group_cpu_seconds(p.pid) for p in procs[1:]))
            figures.update(asyncio.run(driver.run(pairs, seconds, a.rate)))
            figures["target_p99_ms"] = 100
        finally:
            for proc in procs:
                stop_process(proc)
    say(
        f"{figures['accepted_per_s']} messages/s accepted; delivery p50 {figures['delivery_ms_p50']} ms,"
        f" p99 {figures['delivery_ms_p99']} ms ({figures['delivered']}/{figures['posted']} delivered)"
    )
    emit(figures)


if __name__ == "__main__":
    main()
