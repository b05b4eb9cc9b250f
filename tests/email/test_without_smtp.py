"""Without SMTP_URL nothing is sent and nothing fails: every command that would send an e-mail works, the outbox
read model follows the log without a failure, `serve` starts no mailer and `tutorconnect mailer` ends at once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from application.settings import Settings
from tests.email.support import B0, SmtpServer, World, caught_up, deliveries, settle
from tests.support.system import server_env, spawn
from workers.processes import child_specs

SMTP = False  # this module's settings have no SMTP_URL (tests/email/conftest.py)


def test_nothing_is_sent_and_nothing_fails_without_smtp_url(
    client: Any, prepared: Settings, smtp: SmtpServer, tmp_path: Path
) -> None:
    assert prepared.smtp_url == ""
    w = World(client, prepared)
    first = w.book(B0 + timedelta(hours=30))
    w.act(w.tutor, first, "confirm")
    second = w.book(B0 + timedelta(hours=33))
    w.act(w.tutor, second, "decline")
    w.act(w.student, first, "cancel", {"reason": "no"})
    caught_up(w.dsn)
    with psycopg.connect(w.dsn) as c:
        assert c.execute("SELECT count(*) FROM projection_failures").fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM emails").fetchone() == (5,)  # the outbox is there, unsent
    assert set(child_specs("127.0.0.1", 8000, prepared)) == {"api", "projectors", "worker"}
    proc = spawn(["mailer"], server_env(prepared), tmp_path / "mailer.log")
    assert proc.wait(60) == 0, (tmp_path / "mailer.log").read_text()
    settle(0.5)
    assert smtp.messages() == [] and deliveries(w.dsn) == []


def test_serve_starts_a_mailer_when_smtp_url_is_set(prepared: Settings) -> None:
    import msgspec

    with_smtp = msgspec.structs.replace(prepared, smtp_url="smtp://127.0.0.1:2525")
    specs = child_specs("127.0.0.1", 8000, with_smtp)
    assert specs["mailer"][-1] == "mailer" and set(specs) == {"api", "projectors", "worker", "mailer"}
