"""The mailer: sends the e-mails of the `emails` outbox read model (projections/emails.py) over SMTP.

Why the standard library (smtplib and email.message.EmailMessage) and no extra package: smtplib is the well-kept SMTP
client the other Python SMTP libraries wrap, and all we need (one connection per round, STARTTLS or TLS, AUTH,
a multipart text + HTML message) is in it.

Each e-mail is sent once, as far as SMTP allows. What happened to an outbox row lives in the runtime table
`email_deliveries` (migrations/0005), never in the read model's tables, so a rebuild of the outbox (same ids) sends
nothing again. A round: new outbox rows are enrolled (those above the highest position enrolled), then a few due
rows are claimed in a short transaction (`FOR UPDATE SKIP LOCKED`: two mailers never claim the same row) and leased
for LEASE (their next attempt moved past it), sent one by one, and each marked sent in its own commit. A failure
records the error and the next attempt, with exponential backoff and jitter (5 s doubling to at most 10 min); a
mailer stopped meanwhile gives back what it claimed and did not send. A mailer that dies while holding rows leaves
them to the next after the lease.

The window nothing closes: a crash after the SMTP server accepted a message and before its `sent_at` committed
sends it again after the lease. The resend carries the same Message-ID (derived from the e-mail's id), so a
receiver that deduplicates on it shows it once.

Rows are not sent but marked `skipped` when their recipient turned e-mails off or their account closed since
(checked again at send time), when they are older than MAX_AGE by business time (an SMTP outage of days: the news
is stale), and when the server refused them for good (5xx) GIVE_UP_REFUSED times. Outbox rows of events from before
the first mailer ran (`email_mailer.started_position`) are history and never enrolled."""

from __future__ import annotations

import logging
import random
import smtplib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import psycopg
from psycopg.rows import dict_row

from application.clock import Clock, real_now

log = logging.getLogger("tutorconnect.mailer")

LEASE = timedelta(minutes=2)  # longer than a batch's sends can take (BATCH x the SMTP timeout)
BATCH = 10
POLL_S = 1.0
SMTP_TIMEOUT_S = 10.0
MAX_AGE = timedelta(hours=72)
GIVE_UP_REFUSED = 3
TEMPLATES = Path(__file__).resolve().parent / "templates" / "email"
SUBJECTS = {
    "booking.requested": "New lesson request: {subject} with {other_name}",
    "booking.confirmed": "Lesson confirmed: {subject} with {other_name}, {when}",
    "booking.declined": "Lesson request declined: {subject} with {other_name}",
    "booking.cancelled": "Lesson cancelled: {subject} with {other_name}, {when}",
    "booking.reminder": "Reminder: {subject} with {other_name}, {when}",
    "credit.expiring": "Your credit with {other_name} expires {when}",
}


def backoff(
    attempts: int, first_s: float = 5.0, cap_s: float = 600.0, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling from `first_s` up to `cap_s`, each drawn
    from the upper half so mailers that failed together do not retry together."""
    base = min(cap_s, first_s * 2 ** max(0, attempts - 1))
    return float(base / 2 + rand() * base / 2)


@dataclass(frozen=True)
class SmtpTarget:
    """Where to send: `smtp://[user:password@]host:port` (STARTTLS when the server offers it) or `smtps://...`."""

    host: str
    port: int
    user: str
    password: str
    tls: bool

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        """Read SMTP_URL (never logged: it may hold a password)."""
        u = urlsplit(url)
        if u.scheme not in ("smtp", "smtps") or not u.hostname:
            raise ValueError("SMTP_URL: want smtp://[user:password@]host:port or smtps://...")
        tls = u.scheme == "smtps"
        return cls(
            u.hostname, u.port or (465 if tls else 25), unquote(u.username or ""), unquote(u.password or ""), tls
        )


def local_time(iso: str, zone: str) -> str:
    """An instant as the recipient reads it: `Monday 2 March 2027, 10:00 CET (Europe/Berlin)`."""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz, zone = ZoneInfo("UTC"), "UTC"
    t = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(tz)
    return f"{t:%A} {t.day} {t:%B %Y, %H:%M} {t.tzname()} ({zone})"


class Renderer:
    """Subject line, text and HTML of an outbox row, from the Jinja templates beside this module (HTML escaped)."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )

    def render(self, kind: str, data: dict[str, Any]) -> tuple[str, str, str]:
        at = data.get("start") or data.get("expires_at") or ""
        ctx = {**data, "when": local_time(at, data.get("timezone") or "UTC") if at else ""}
        subject = " ".join(
            SUBJECTS[kind].format(**{k: ctx.get(k, "") for k in ("subject", "other_name", "when")}).split()
        )
        return (
            subject,
            self.env.get_template(f"{kind}.txt").render(ctx),
            self.env.get_template(f"{kind}.html").render(ctx),
        )


class Refused(Exception):
    """The server refused this message (not the connection): for good with a 5xx answer, for now with a 4xx."""

    def __init__(self, detail: str, permanent: bool) -> None:
        super().__init__(detail)
        self.permanent = permanent


class Mailer:
    """Enrols, claims and sends outbox rows; any number may run at once (see the module's docstring)."""

    def __init__(
        self,
        dsn: str,
        smtp_url: str,
        sender: str,
        clock: Clock | None = None,
        *,
        batch: int = BATCH,
        lease: timedelta = LEASE,
        first_retry_s: float = 5.0,
        max_retry_s: float = 600.0,
    ) -> None:
        self.dsn, self.target, self.sender = dsn, SmtpTarget.parse(smtp_url), sender
        self.clock = clock or Clock()
        self.batch, self.lease = batch, lease
        self.first_retry_s, self.max_retry_s = first_retry_s, max_retry_s
        self.renderer = Renderer()
        self._conn: psycopg.Connection[Any] | None = None
        self._begun = False  # the first mailer's start is recorded (email_mailer)

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def run(self, stop: threading.Event, poll_s: float = POLL_S) -> None:
        """Rounds until `stop`; a full round goes on at once, else it waits `poll_s`."""
        try:
            while not stop.is_set():
                try:
                    busy = self.round(stop)
                except (psycopg.OperationalError, psycopg.InterfaceError) as e:
                    log.warning("mailer: database unavailable (%s); trying again", type(e).__name__)
                    self.close()
                    busy = False
                    stop.wait(2.0)
                if not busy:
                    stop.wait(poll_s)
        finally:
            self.close()

    def round(self, stop: threading.Event | None = None) -> bool:
        """Enrol new rows, claim due ones and send them; True when it claimed a full batch."""
        self.enroll()
        claimed = self.claim()
        self.deliver(claimed, stop)
        return len(claimed) >= self.batch

    def enroll(self) -> int:
        """Give each outbox row above the highest enrolled position (and the first mailer's start) a delivery."""
        c = self.conn
        if not self._begun:
            c.execute(
                "INSERT INTO email_mailer (id, started_position)"
                " SELECT 1, coalesce(max(notification_id), 0) FROM tutorconnect_events ON CONFLICT (id) DO NOTHING"
            )
            self._begun = True
        return c.execute(
            "INSERT INTO email_deliveries (email_id, position) SELECT email_id, position FROM emails"
            " WHERE position > greatest((SELECT coalesce(max(position), 0) FROM email_deliveries),"
            " (SELECT started_position FROM email_mailer WHERE id = 1)) ON CONFLICT (email_id) DO NOTHING"
        ).rowcount

    def claim(self) -> list[dict[str, Any]]:
        """Lease up to `batch` due rows (skipping those another mailer holds) with what each e-mail says."""
        with self.conn.transaction():
            ids = self.conn.execute(
                "WITH due AS (SELECT email_id FROM email_deliveries WHERE sent_at IS NULL AND skipped IS NULL"
                " AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)"
                " UPDATE email_deliveries d SET attempts = d.attempts + 1, next_attempt_at = now() + %s"
                " FROM due WHERE d.email_id = due.email_id RETURNING d.email_id, d.attempts",
                (self.batch, self.lease),
            ).fetchall()
            if not ids:
                return []
            attempts = {r["email_id"]: r["attempts"] for r in ids}
            rows = self.conn.execute(
                "SELECT e.email_id, e.position, e.kind, e.address, e.created_at, e.data, u.notify, u.active"
                " FROM emails e LEFT JOIN email_users u ON u.user_id = e.user_id WHERE e.email_id = ANY(%s)",
                (list(attempts),),
            ).fetchall()
        found = {r["email_id"]: r for r in rows}
        claimed = [{**found.get(i, {"email_id": i, "kind": None}), "attempts": n} for i, n in attempts.items()]
        return sorted(claimed, key=lambda r: (r.get("position") or 0, str(r["email_id"])))

    def deliver(self, claimed: list[dict[str, Any]], stop: threading.Event | None = None) -> None:
        """Send the claimed rows over one connection; a connection failure puts off the rest of them too."""
        smtp: smtplib.SMTP | None = None
        try:
            for i, row in enumerate(claimed):
                if stop is not None and stop.is_set():
                    self._give_back(claimed[i:])
                    return
                if (why := self._skip(row)) is not None:
                    self._mark(row["email_id"], "skipped = %s, last_error = NULL", why)
                    continue
                try:
                    smtp = smtp or self._connect()
                    send(smtp, self.message(row))
                except Refused as e:  # this message only: the connection goes on with the next
                    self._failed(row, str(e), permanent=e.permanent)
                    continue
                except (OSError, smtplib.SMTPException) as e:
                    error = f"{type(e).__name__}: {e}"
                    for rest in claimed[i:]:
                        self._failed(rest, error)
                    return
                self._mark(row["email_id"], "sent_at = now(), last_error = NULL")
        finally:
            if smtp is not None:
                try:
                    smtp.quit()
                except (OSError, smtplib.SMTPException):
                    smtp.close()

    def message(self, row: dict[str, Any]) -> EmailMessage:
        """The e-mail of an outbox row, with a Message-ID derived from its id (the same if it is ever resent)."""
        data = row["data"]
        subject, text, html = self.renderer.render(row["kind"], data)
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = formataddr((" ".join(str(data.get("recipient_name", "")).split()), row["address"]))
        msg["Subject"] = subject
        msg["Message-ID"] = message_id(row["email_id"])
        msg["Date"] = format_datetime(real_now())
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
        return msg

    def _skip(self, row: dict[str, Any]) -> str | None:
        if row["kind"] is None:
            return "not in the outbox"
        if row["notify"] is False:
            return "e-mails turned off"
        if row["active"] is False:
            return "account closed"
        if row["created_at"] < self.clock.now() - MAX_AGE:
            return "too old"
        return None

    def _connect(self) -> smtplib.SMTP:
        t = self.target
        if t.tls:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                t.host, t.port, timeout=SMTP_TIMEOUT_S, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(t.host, t.port, timeout=SMTP_TIMEOUT_S)
        try:
            if not t.tls:
                smtp.ehlo()
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
            if t.user:
                smtp.login(t.user, t.password)  # a refused login is our configuration: retried, never given up
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _failed(self, row: dict[str, Any], error: str, permanent: bool = False) -> None:
        if permanent and row["attempts"] >= GIVE_UP_REFUSED:
            self._mark(row["email_id"], "skipped = %s, last_error = %s", f"refused: {error}"[:500], error[:500])
            return
        delay = timedelta(seconds=backoff(row["attempts"], self.first_retry_s, self.max_retry_s))
        log.warning("mailer: %s not sent (try %d): %s", row["email_id"], row["attempts"], error)
        self._mark(row["email_id"], "next_attempt_at = now() + %s, last_error = %s", delay, error[:500])

    def _give_back(self, rows: list[dict[str, Any]]) -> None:
        """Rows claimed but not tried (the mailer is stopping): due again at once, this claim not counted."""
        ids = [r["email_id"] for r in rows]
        self.conn.execute(
            "UPDATE email_deliveries SET next_attempt_at = now(), attempts = attempts - 1"
            " WHERE email_id = ANY(%s) AND sent_at IS NULL AND skipped IS NULL",
            (ids,),
        )

    def _mark(self, email_id: UUID, assignments: str, *values: Any) -> None:
        self.conn.execute(f"UPDATE email_deliveries SET {assignments} WHERE email_id = %s", (*values, email_id))


def message_id(email_id: UUID) -> str:
    """The Message-ID of an outbox row's e-mail."""
    return f"<{email_id}@tutorconnect>"


def send(smtp: smtplib.SMTP, msg: EmailMessage) -> None:
    """Send one message; the server's refusal of it (recipient, sender or data) is `Refused`, for good if 5xx."""
    try:
        smtp.send_message(msg)
    except smtplib.SMTPRecipientsRefused as e:
        codes = [code for code, _ in e.recipients.values()]
        raise Refused(f"recipient refused: {codes}", bool(codes) and min(codes) >= 500) from None
    except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as e:
        raise Refused(f"{e.smtp_code} {e.smtp_error!r}", e.smtp_code >= 500) from None
