"""The e-mail tests' SMTP server and the world they book lessons in."""

from __future__ import annotations

import email
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from typing import Any
from uuid import UUID

import psycopg
from aiosmtpd.controller import Controller

from application.clock import Clock
from application.settings import Settings
from tests.support.api import API, Actor, ok, signup
from tests.support.system import wait_until
from tests.support.world import approve_tutor, grant


@dataclass(frozen=True)
class Received:
    """One message as the server accepted it."""

    to: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None and body.get_content_subtype() == subtype, f"no text/{subtype} part"
        return str(body.get_content())


class SmtpServer:
    """aiosmtpd's Controller on a fixed port, recording each message; stop() and start() again on the same port
    (an outage)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"smtp://127.0.0.1:{port}"
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.delay_s = 0.0  # how long each DATA takes: a slow server, to stop a mailer mid-way
        self.refuse: dict[str, str] = {}  # recipient address -> the server's answer to RCPT (e.g. a 550)
        self.controller: Controller | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls it by this name
        if self.delay_s:
            import asyncio

            await asyncio.sleep(self.delay_s)
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        with self.lock:
            self.received.append(Received(list(envelope.rcpt_tos), msg))
        return "250 OK"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages() if address in m.to]

    def wait_for(self, count: int, timeout: float = 20.0, what: str = "e-mails") -> list[Received]:
        """Wait until at least `count` messages arrived; all of them."""
        wait_until(lambda: len(self.messages()) >= count, timeout, f"{count} {what}", every=0.05)
        return self.messages()


def head(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        row = c.execute("SELECT coalesce(max(notification_id), 0) FROM tutorconnect_events").fetchone()
    return int(row[0]) if row else 0


def caught_up(dsn: str, names: tuple[str, ...] = ("emails",), position: int | None = None) -> None:
    """Wait until the read models `names` reached `position` (default: the log's head now)."""
    target = head(dsn) if position is None else position
    sql = "SELECT min(position) FROM projection_tracking WHERE state = 'active' AND name = ANY(%s)"

    def reached() -> bool:
        with psycopg.connect(dsn) as c:
            row = c.execute(sql, (list(names),)).fetchone()
        return bool(row and row[0] is not None and row[0] >= target)

    wait_until(reached, 15, f"{names} at {target}", every=0.05)


def deliveries(dsn: str) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, row_factory=dict_row) as c:
        return c.execute("SELECT * FROM email_deliveries ORDER BY position").fetchall()


def settle(seconds: float) -> None:
    """Let others' time pass (to show that nothing more happens): bounded, only after the awaited state."""
    time.sleep(seconds)  # a bounded wait on purpose: the test then shows that nothing more arrived


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def uid(value: str) -> UUID:
    return UUID(value)


B0 = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)  # a Monday; Berlin is on CET (+1), New York on EST (-5)


class World:
    """A tutor in Europe/Berlin (approved, teaching a subject of its own around the clock) and a student in
    America/New_York with 20 hours of credit, registered through the API; business time at B0; e-mail begun
    (the first mailer's start recorded) before anything worth an e-mail happens."""

    def __init__(self, client: Any, settings: Settings, student_name: str = "Sam Student") -> None:
        from application.catalog import Catalog
        from application.money import Money
        from workers.mailer import Mailer

        self.client, self.settings, self.dsn = client, settings, settings.database_url
        self.clock = Clock(settings.redis_url, True, cache_s=0.0)
        self.clock.set(B0)
        if settings.smtp_url:
            Mailer(self.dsn, settings.smtp_url, settings.smtp_from, self.clock).enroll()
        self.tutor = signup(client, "tutor", full_name="Greta Lehrer")[0]
        self.student = signup(client, "student", full_name=student_name)[0]
        ok(client.patch(f"{API}/me", json={"timezone": "Europe/Berlin"}, headers=self.tutor.auth))
        ok(client.patch(f"{API}/me", json={"timezone": "America/New_York"}, headers=self.student.auth))
        self.subject_name = f"Organic Chemistry {secrets.token_hex(2)}"
        subject, _ = Catalog(settings).create_subject(self.subject_name, "science")
        self.subject_id = str(subject["id"])
        approve_tutor(settings, UUID(self.tutor.id), subject_id=self.subject_id, clock=self.clock)
        self.money = Money(settings, self.clock)
        grant(self.money, UUID(self.student.id), UUID(self.tutor.id), 1200, 120000)

    def book(self, start: datetime, note: str = "") -> str:
        body = {"tutor_id": self.tutor.id, "subject_id": self.subject_id, "start": iso(start), "duration_minutes": 60}
        r = self.client.post(f"{API}/bookings", json={**body, "note": note}, headers=self.student.auth)
        return str(ok(r, 201)["id"])

    def act(self, who: Actor, booking_id: str, what: str, body: dict[str, Any] | None = None) -> None:
        ok(self.client.post(f"{API}/bookings/{booking_id}/{what}", json=body or {}, headers=who.auth))
