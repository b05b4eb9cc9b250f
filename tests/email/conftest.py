"""Fixtures of the e-mail tests: an SMTP server (aiosmtpd's Controller) running in this process on a free port,
recording what arrives; settings that point SMTP_URL at it; and mailers run as threads of this process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from application.clock import Clock
from application.settings import Settings
from tests.email.support import SmtpServer
from tests.support.system import make_settings
from workers.embedded import free_port
from workers.mailer import Mailer


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 (a free port) that keeps every message it accepts."""
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(request: pytest.FixtureRequest, database: str, redis_url: str, smtp: SmtpServer) -> Settings:
    """The conftest's settings with a 3-connection pool and SMTP_URL pointing at `smtp` (left unset in a module
    with `SMTP = False`)."""
    if not getattr(request.module, "SMTP", True):
        return make_settings(database, redis_url, pool_size=3)
    return make_settings(
        database, redis_url, pool_size=3, smtp_url=smtp.url, smtp_from="TutorConnect <mail@tutorconnect.test>"
    )


@pytest.fixture
def start_mailer(prepared: Settings) -> Iterator[Callable[..., tuple[Mailer, threading.Event]]]:
    """Start a mailer thread (quick retries: 0.2 s doubling to 1 s); each is stopped at the end of the test."""
    running: list[tuple[threading.Thread, threading.Event]] = []

    def start(**options: Any) -> tuple[Mailer, threading.Event]:
        options = {"first_retry_s": 0.2, "max_retry_s": 1.0, **options}
        clock = Clock(prepared.redis_url, True, cache_s=0.0)
        mailer = Mailer(prepared.database_url, prepared.smtp_url, prepared.smtp_from, clock, **options)
        stop = threading.Event()
        thread = threading.Thread(target=mailer.run, args=(stop, 0.1), daemon=True)
        thread.start()
        running.append((thread, stop))
        return mailer, stop

    yield start
    for thread, stop in running:
        stop.set()
        thread.join(15)
