"""API throughput for authenticated GETs against one `python -m workers.cli api` process (granian).

Setup: a fresh database, Redis db 14 flushed, `python -m workers.cli projectors` and `python -m workers.cli api`
as child processes (1 granian worker; generous RATE_LIMITS; cheap argon2). Seeds --users students through
POST /auth/register and one admin (created as the CLI does, then POST /auth/login), and waits for the read
models to reach the log head so no measured request waits for a projection.

Load: a separate process (this script with --drive) runs asyncio with --concurrency keep-alive connections
for --seconds per endpoint after a warm-up, using a minimal HTTP/1.1 client (--client httpx uses
httpx.AsyncClient instead, which costs more CPU per request than the API itself does):
  me                GET /api/v1/me as a new student (2 events in their User stream): JWT check, account row,
                    replay of the caller's User stream
  admin_users       GET /api/v1/admin/users?limit=20: admin check, read-your-writes position check,
                    users_directory page
  me_long_history   GET /api/v1/me as a student who has logged in --history times (every login appends
                    User.SessionStarted to their stream, which /me replays)
Reports requests/s, latency p50/p90/p99, and CPU per request of the API process, of PostgreSQL (all backends
of the benchmark database) and of the load driver, since on 2 cores all three compete.

Run: .venv/bin/python bench/api_get.py [--quick] [--seconds 15] [--concurrency 32] [--users 200] [--history 300]
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    backends_cpu_seconds,
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
ENDPOINTS = (
    ("me", "/api/v1/me", "student"),
    ("admin_users", "/api/v1/admin/users?limit=20", "admin"),
    ("me_long_history", "/api/v1/me", "veteran"),
)


# ------------------------------------------------------------------------------------------- load driver


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client connection: GET only, Content-Length or chunked bodies.

    httpx's AsyncClient spends ~10 ms of CPU per request at concurrency 32 on this machine (more than the API
    itself), so with 2 cores it would mostly measure httpx; this costs well under 1 ms."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.head = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\n{self.head}".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
        if "content-length" in fields:
            await self.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def drive(url: str, token: str, seconds: float, warmup: float, concurrency: int, client: str) -> dict[str, Any]:
    import resource
    from urllib.parse import urlsplit

    lat: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    done = 0
    u = urlsplit(url)
    path = u.path + (f"?{u.query}" if u.query else "")
    if client == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        hx = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=30)

        async def get_factory() -> Any:
            async def get() -> int:
                return (await hx.get(url)).status_code

            return get
    else:
        hx = None

        async def get_factory() -> Any:
            conn = RawConnection(u.hostname or "127.0.0.1", u.port or 80, token)

            async def get() -> int:
                try:
                    return await asyncio.wait_for(conn.get(path), 30)
                except BaseException:
                    conn.close()
                    raise

            return get

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t_start = time.perf_counter()
    t_measure = t_start + warmup
    t_end = t_measure + seconds

    async def worker() -> None:
        nonlocal errors, done
        get = await get_factory()
        while True:
            t0 = time.perf_counter()
            if t0 >= t_end:
                return
            try:
                code = str(await get())
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
                code = type(e).__name__
            except Exception as e:  # httpx's errors
                code = type(e).__name__
            t1 = time.perf_counter()
            done += 1
            if t0 >= t_measure:
                lat.append(t1 - t0)
                statuses[code] = statuses.get(code, 0) + 1
                if code != "200":
                    errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t_measure
    usage = resource.getrusage(resource.RUSAGE_SELF)
    if hx is not None:
        await hx.aclose()
    return {
        "driver_cpu_s": usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime,
        "driver_requests": done,
        "requests": len(lat),
        "seconds": elapsed,
        "rps": len(lat) / elapsed,
        "p50_ms": 1000 * percentile(lat, 50),
        "p90_ms": 1000 * percentile(lat, 90),
        "p99_ms": 1000 * percentile(lat, 99),
        "errors": errors,
        "statuses": statuses,
    }


def driver_main(argv: list[str]) -> None:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--drive", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--warmup", type=float, required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--client", default="raw")
    a = p.parse_args(argv)
    result = asyncio.run(drive(a.drive, a.token, a.seconds, a.warmup, a.concurrency, a.client))
    print(json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------------------ helpers


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=None, help="measured seconds per endpoint (default 15; quick 5)")
    p.add_argument("--concurrency", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    p.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load driver's HTTP client: a minimal asyncio HTTP/1.1 one (default) or httpx.AsyncClient",
    )
    p.add_argument(
        "--history", type=int, default=None, help="logins of the me_long_history user (default 300; quick 100)"
    )
    p.add_argument("--users", type=int, default=None, help="students to register first (default 200; quick 50)")
    a = p.parse_args()
    seconds = a.seconds or (5.0 if a.quick else 15.0)
    warmup = 1.0 if a.quick else 2.0
    nusers = a.users or (50 if a.quick else 200)
    history = a.history or (100 if a.quick else 300)
    figures: dict[str, Any] = {
        "bench": "api_get",
        **machine(),
        "concurrency": a.concurrency,
        "api_workers": 1,
        "client": a.client,
    }

    import httpx
    import redis

    from application import context
    from application.identity import Identity
    from projections import generations
    from workers.processes import prepare

    with temp_database(a.keep_db) as dsn, tempfile.TemporaryDirectory() as tmp:
        dbname = dsn.rsplit("/", 1)[1].split("?", 1)[0]
        settings = make_settings(dsn)
        redis.Redis.from_url(settings.redis_url).flushdb()
        prepare(settings)
        env = server_env(settings)
        port = free_port()
        root = f"http://127.0.0.1:{port}"
        api_log, proj_log = Path(tmp) / "api.log", Path(tmp) / "projectors.log"
        projectors = spawn(["projectors"], env, proj_log)
        api = spawn(["api", "--host", "127.0.0.1", "--port", str(port)], env, api_log)
        try:
            wait_http(root, api, api_log, timeout=60)
            say(f"api (granian, 1 worker) on {root}; projectors running")

            say(f"seeding: {nusers} students via POST /auth/register, one admin via the CLI path + POST /auth/login")
            tokens: dict[str, str] = {}
            with httpx.Client(base_url=root, timeout=30) as c:
                for i in range(nusers):
                    r = c.post(
                        "/api/v1/auth/register",
                        json={
                            "email": f"student{i}-{secrets.token_hex(3)}@example.test",
                            "password": PASSWORD,
                            "full_name": f"Bench Student {i}",
                            "role": "student",
                        },
                    )
                    if r.status_code != 201:
                        raise SystemExit(f"register failed: {r.status_code} {r.text}")
                    tokens.setdefault("student", r.json()["access_token"])
                email = f"admin-{secrets.token_hex(4)}@example.test"
                with context.acting(actor_role="system"):
                    Identity(settings).register(email, PASSWORD, "Bench Admin", "admin", staff=True)
                r = c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
                if r.status_code != 200:
                    raise SystemExit(f"login failed: {r.status_code} {r.text}")
                tokens["admin"] = r.json()["access_token"]
                say(f"  a student who logs in {history} times (through Identity.login, as POST /auth/login does)")
                veteran = f"veteran-{secrets.token_hex(4)}@example.test"
                identity = Identity(settings)
                identity.register(veteran, PASSWORD, "Long History", "student")
                for _ in range(history - 1):
                    identity.login(veteran, PASSWORD)
                r = c.post("/api/v1/auth/login", json={"email": veteran, "password": PASSWORD})
                if r.status_code != 200:
                    raise SystemExit(f"login failed: {r.status_code} {r.text}")
                tokens["veteran"] = r.json()["access_token"]
                figures["me_long_history_stream_events"] = history + 1
                deadline = time.monotonic() + 60
                while any(s.lag for s in generations.status(dsn) if s.state == "active"):
                    if time.monotonic() > deadline:
                        raise SystemExit("projections did not catch up in 60 s")
                    time.sleep(0.1)  # projectors run in their own process: ask until lag is 0 (60 s at most)
                for _, path, who in ENDPOINTS:
                    r = c.get(path, headers={"Authorization": f"Bearer {tokens[who]}"})
                    if r.status_code != 200:
                        raise SystemExit(f"GET {path}: {r.status_code} {r.text}")
            say("  read models at the log head; every endpoint answers 200")

            for name, path, who in ENDPOINTS:
                say(f"{name}: GET {path}: {a.concurrency} connections, {warmup:.0f}s warm-up + {seconds:.0f}s measured")
                cpu0 = group_cpu_seconds(api.pid)
                db0 = backends_cpu_seconds(dbname)
                driver = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--drive",
                        root + path,
                        "--token",
                        tokens[who],
                        "--seconds",
                        str(seconds),
                        "--warmup",
                        str(warmup),
                        "--concurrency",
                        str(a.concurrency),
                        "--client",
                        a.client,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=seconds + warmup + 120,
                )
                cpu = group_cpu_seconds(api.pid) - cpu0
                db1 = backends_cpu_seconds(dbname)
                if driver.returncode != 0:
                    raise SystemExit(f"load driver failed:\n{driver.stderr[-3000:]}")
                res = json.loads(driver.stdout.strip().splitlines()[-1])
                total_requests = res["driver_requests"]  # the CPU readings cover the warm-up too
                figures[f"{name}_rps"] = rnd(res["rps"])
                figures[f"{name}_p50_ms"] = rnd(res["p50_ms"], 2)
                figures[f"{name}_p90_ms"] = rnd(res["p90_ms"], 2)
                figures[f"{name}_p99_ms"] = rnd(res["p99_ms"], 2)
                figures[f"{name}_errors"] = res["errors"]
                figures[f"{name}_api_cpu_ms_per_req"] = rnd(1000 * cpu / max(total_requests, 1), 2)
                db_ms = 1000 * (db1 - db0) / max(total_requests, 1) if db0 is not None and db1 is not None else None
                figures[f"{name}_postgres_cpu_ms_per_req"] = rnd(db_ms, 2) if db_ms is not None else None
                driver_ms = 1000 * res["driver_cpu_s"] / max(total_requests, 1)
                figures[f"{name}_driver_cpu_ms_per_req"] = rnd(driver_ms, 2)
                say(
                    f"  {res['rps']:,.0f} req/s; p50 {res['p50_ms']:.1f} ms, p90 {res['p90_ms']:.1f} ms,"
                    f" p99 {res['p99_ms']:.1f} ms; {res['errors']} non-200 {res['statuses']};"
                    f" API process CPU {1000 * cpu / max(total_requests, 1):.2f} ms/request"
                )
                say(
                    f"  CPU per request: API {1000 * cpu / max(total_requests, 1):.2f} ms, PostgreSQL"
                    f" {db_ms if db_ms is not None else float('nan'):.2f} ms, load driver {driver_ms:.2f} ms"
                    f" (all three share the machine's {os.cpu_count()} cores)"
                )
        finally:
            stop_process(api)
            stop_process(projectors)
    emit(figures)


if __name__ == "__main__":
    if "--drive" in sys.argv:
        driver_main(sys.argv[1:])
    else:
        main()
