"""The long-running processes: API server, projectors, dramatiq worker, mailer, and the `serve` supervisor."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import migrations
from application.settings import Settings
from projections import all_projections, follower, generations
from workers import embedded

log = logging.getLogger("tutorconnect")


def _on_term(stop: threading.Event) -> None:
    def handler(signum: int, _: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def prepare(settings: Settings) -> None:
    """Schema, event table and projection tables: idempotent, safe from several processes."""
    migrations.apply(settings.database_url)
    from application.store import EventStoreApp, close_all

    EventStoreApp(settings)  # creates the events table on first use
    close_all()  # this process may never write events: do not keep its pool open
    generations.ensure(settings.database_url, all_projections())


def run_api(host: str, port: int, workers: int, max_connections: int) -> None:
    """Serve the Litestar app with granian (no access log: 2-4x faster than `litestar run`).

    `max_connections` is per worker. Granian's `backpressure` counts open connections, not requests in flight: an
    idle keep-alive connection or a WebSocket holds its place for as long as it stays open, and the next client
    waits unaccepted (20-30 s and more) however idle the worker is. So the cap is sized for open connections; the
    work in flight is bounded by the handler threads and the database pool."""
    import resource

    from granian import Granian
    from granian.constants import Interfaces, Loops

    prepare(Settings.from_env())
    # Each connection is a file descriptor: lift this process's soft limit (often 1024) as far as the hard one allows.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + 256  # and the pools, sockets and files a worker has besides
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard)
        )
    Granian(
        "api.app:create_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        # uvloop: ~10 % more search requests/s than asyncio's loop at 8 clients (docs/PERFORMANCE.md)
        loop=Loops.uvloop,
        workers=workers,
        log_access=False,
        backlog=max(1024, 2 * max_connections),
        backpressure=max_connections,
    ).serve()


def run_projectors() -> None:
    """Follow the log with every projection until SIGTERM."""
    settings = Settings.from_env()
    prepare(settings)
    stop = threading.Event()
    _on_term(stop)
    follower.follow_all(
        settings.database_url,
        all_projections(),
        stop,
        settings.projector_threads,
        settings.projector_gather_ms,
        background_ms=settings.projector_background_ms,
    )
    log.info("projectors running: %s", ", ".join(p.name for p in all_projections()))
    stop.wait()


def run_worker(threads: int = 4) -> None:
    """dramatiq worker for the scheduled and background actors, plus the sweeper."""
    settings = Settings.from_env()
    prepare(settings)
    import dramatiq

    from workers import actors

    stop = threading.Event()
    _on_term(stop)
    worker = dramatiq.Worker(actors.broker, worker_threads=threads)
    worker.start()
    sweeper = threading.Thread(target=actors.sweeper, args=(stop, settings.redis_url), daemon=True)
    sweeper.start()
    log.info("worker running")
    stop.wait()
    worker.stop(timeout=5000)


def run_mailer() -> None:
    """Send the outbox's e-mails until SIGTERM (nothing at all without SMTP_URL)."""
    settings = Settings.from_env()
    if not settings.smtp_url:
        log.info("mailer: SMTP_URL is not set; no e-mail is sent")
        return
    prepare(settings)
    from application.clock import Clock
    from workers.mailer import Mailer

    stop = threading.Event()
    _on_term(stop)
    mailer = Mailer(
        settings.database_url, settings.smtp_url, settings.smtp_from, Clock(settings.redis_url, settings.test_clock)
    )
    log.info("mailer running")
    mailer.run(stop)


def child_specs(host: str, port: int, settings: Settings) -> dict[str, list[str]]:
    """The child processes `serve` supervises: the mailer only when SMTP_URL is set."""
    exe = [sys.executable, "-m", "workers.cli"]
    specs = {
        "api": [*exe, "api", "--host", host, "--port", str(port)],
        "projectors": [*exe, "projectors"],
        "worker": [*exe, "worker"],
    }
    if settings.smtp_url:
        specs["mailer"] = [*exe, "mailer"]
    return specs


def serve(host: str, port: int, say: Callable[[str], None]) -> int:
    """Start what is missing, then run the API, projectors, worker (and mailer) as supervised child processes."""
    stop = threading.Event()
    _on_term(stop)
    box = embedded.ensure(dict(os.environ), say)
    env = box.env
    try:
        settings = Settings.from_env(env)
        prepare(settings)
        specs = child_specs(host, port, settings)
        children: dict[str, subprocess.Popen[bytes]] = {}
        for name, args in specs.items():
            children[name] = subprocess.Popen(args, env=env)
        say(f"serving on http://{host}:{port} ({', '.join(specs)} running)")
        while not stop.wait(0.5):
            for name, child in list(children.items()):
                if child.poll() is not None:
                    say(f"{name} exited with {child.returncode}; restarting")
                    time.sleep(1)  # back off before restarting a crashed child so a crash loop cannot spin
                    children[name] = subprocess.Popen(specs[name], env=env)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        return 0
    finally:
        box.stop()
        say("stopped")
