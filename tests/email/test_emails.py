"""Every kind of e-mail, end to end: commands through the real app, the emails projection in projector threads, the
worker's sweeps run in this process, and a mailer thread sending to an SMTP server in this process. Each arrives
once, to the right person, naming what happened, the subject, the other party and the lesson's time in the
recipient's own time zone, as text and as HTML; nobody who turned e-mails off gets one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from application.settings import Settings
from tests.email.support import B0, SmtpServer, World, caught_up, deliveries, head, settle
from tests.support.api import API, ok, problem
from tests.support.system import server_env

START = B0 + timedelta(hours=30)  # Tuesday 2 March 2027 14:00 UTC
BERLIN = "Tuesday 2 March 2027, 15:00 CET (Europe/Berlin)"
NEW_YORK = "Tuesday 2 March 2027, 09:00 EST (America/New_York)"


@pytest.fixture
def actors(prepared: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """workers.actors in this process, a sweep's jobs run at once instead of going through the broker."""
    for key, value in server_env(prepared).items():
        if key in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "TUTORCONNECT_TEST_CLOCK"):
            monkeypatch.setenv(key, value)
    from workers import actors

    for name in ("remind_booking", "warn_expiring_credits", "expire_booking", "complete_booking", "withdraw_booking"):
        actor = getattr(actors, name)
        monkeypatch.setattr(actor, "send", actor.fn)
    yield actors


def one(smtp: SmtpServer, address: str, words: str) -> Any:
    """The one message to `address` whose subject starts with `words`."""
    found = [m for m in smtp.to(address) if m.subject.startswith(words)]
    assert len(found) == 1, [m.subject for m in smtp.to(address)]
    return found[0]


def test_each_kind_arrives_once_naming_subject_other_party_and_local_time(
    client: Any, prepared: Settings, smtp: SmtpServer, start_mailer: Any, actors: Any
) -> None:
    w = World(client, prepared)
    start_mailer()
    tutor, student = w.tutor, w.student

    first = w.book(START, note="<script>alert(1)</script> & more")
    smtp.wait_for(1)
    m = one(smtp, tutor.email, "New lesson request")
    assert m.subject == f"New lesson request: {w.subject_name} with Sam Student"
    text, html = m.part("plain"), m.part("html")
    for body in (text, html):
        assert w.subject_name in body and "Sam Student" in body and BERLIN in body, body
    assert "<script>" in text and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html and "<script>" not in html
    assert m.message["To"].addresses[0].addr_spec == tutor.email and m.to == [tutor.email]
    assert m.message["From"] == "TutorConnect <mail@tutorconnect.test>"

    w.act(tutor, first, "confirm")
    smtp.wait_for(2)
    m = one(smtp, student.email, "Lesson confirmed")
    assert m.subject == f"Lesson confirmed: {w.subject_name} with Greta Lehrer, {NEW_YORK}"
    assert "Greta Lehrer confirmed your lesson" in m.part("plain") and NEW_YORK in m.part("html")

    second = w.book(START + timedelta(hours=3))
    w.act(tutor, second, "decline")
    smtp.wait_for(4)
    m = one(smtp, student.email, "Lesson request declined")
    assert "Greta Lehrer declined" in m.part("plain") and "Tuesday 2 March 2027, 12:00 EST" in m.part("plain")

    w.act(student, first, "cancel", {"reason": "I caught a cold"})
    smtp.wait_for(5)
    m = one(smtp, tutor.email, "Lesson cancelled")
    assert m.subject == f"Lesson cancelled: {w.subject_name} with Sam Student, {BERLIN}"
    assert "Sam Student cancelled your lesson" in m.part("plain") and "I caught a cold" in m.part("html")
    assert not [x for x in smtp.to(student.email) if x.subject.startswith("Lesson cancelled")]  # they acted

    # The reminder: not 24 h and a minute before the lesson, then for both a minute inside the 24 h.
    third = w.book(START + timedelta(hours=6))
    w.act(tutor, third, "confirm")
    smtp.wait_for(7)
    w.clock.set(START + timedelta(hours=6) - timedelta(hours=24, minutes=1))
    caught_up(w.dsn, ("bookings",))
    before = head(w.dsn)
    actors.sweep_bookings.fn()
    assert head(w.dsn) == before  # no reminder recorded yet
    w.clock.set(START + timedelta(hours=6) - timedelta(hours=23, minutes=59))
    actors.sweep_bookings.fn()
    smtp.wait_for(9)
    for who, other, when in ((tutor, "Sam Student", "21:00 CET"), (student, "Greta Lehrer", "15:00 EST")):
        m = one(smtp, who.email, "Reminder")
        assert m.subject.startswith(f"Reminder: {w.subject_name} with {other}, Tuesday 2 March 2027, {when} (")
        assert when in m.part("plain") and other in m.part("html")

    # Credit that expires within a week: the student hears once which tutor's credit and when (their time).
    lot_expiry = w.clock.now() + timedelta(days=10)
    from tests.support.world import grant

    grant(w.money, UUID(student.id), UUID(tutor.id), 120, 12000, lot_expiry)
    w.clock.set(lot_expiry - timedelta(days=6))
    caught_up(w.dsn, ("student_credits",))
    actors.sweep_expiring_credit.fn()
    smtp.wait_for(10)
    m = one(smtp, student.email, "Your credit with Greta Lehrer expires")
    assert "120 minutes of your credit with Greta Lehrer" in m.part("plain")
    assert "(America/New_York)" in m.subject and "Greta Lehrer" in m.part("html")

    # Exactly once each: nothing more arrives, every delivery is marked sent, and the Message-IDs differ.
    caught_up(w.dsn)
    settle(1.5)
    got = smtp.messages()
    assert len(got) == 10, [x.subject for x in got]
    assert len({x.message_id for x in got}) == 10
    assert [d["sent_at"] is not None for d in deliveries(w.dsn)] == [True] * 10


def test_no_email_to_whom_turned_them_off_and_get_me_shows_it(
    client: Any, prepared: Settings, smtp: SmtpServer, start_mailer: Any
) -> None:
    w = World(client, prepared)
    me = ok(client.get(f"{API}/me", headers=w.student.auth))
    assert me["email_notifications"] is True
    out = ok(client.patch(f"{API}/me", json={"email_notifications": False}, headers=w.student.auth))
    assert out["email_notifications"] is False
    assert ok(client.get(f"{API}/me", headers=w.student.auth))["email_notifications"] is False
    problem(client.patch(f"{API}/me", json={"email_notifications": "no"}, headers=w.student.auth), 422)

    start_mailer()
    booking = w.book(START)
    w.act(w.tutor, booking, "confirm")
    smtp.wait_for(1)  # the tutor's request
    caught_up(w.dsn)
    settle(1.0)
    assert [m.to for m in smtp.messages()] == [[w.tutor.email]]

    # Turned back on, e-mails come again (only for what happens from then on).
    ok(client.patch(f"{API}/me", json={"email_notifications": True}, headers=w.student.auth))
    w.act(w.student, booking, "cancel", {"reason": "sorry"})
    other = w.book(START + timedelta(hours=2))
    w.act(w.tutor, other, "decline")
    smtp.wait_for(4)  # the tutor's cancellation and request, the student's decline
    assert [m.subject.split(":")[0] for m in smtp.to(w.student.email)] == ["Lesson request declined"]


def test_a_recipient_who_turns_emails_off_before_the_mailer_sends_gets_none(
    client: Any, prepared: Settings, smtp: SmtpServer, start_mailer: Any
) -> None:
    """The outbox row was written while e-mails were on; the mailer checks again when it sends and skips it."""
    w = World(client, prepared)
    booking = w.book(START)
    w.act(w.tutor, booking, "confirm")
    caught_up(w.dsn)
    ok(client.patch(f"{API}/me", json={"email_notifications": False}, headers=w.student.auth))
    caught_up(w.dsn)
    start_mailer()
    smtp.wait_for(1)
    caught_up(w.dsn)
    settle(1.0)
    assert [m.to for m in smtp.messages()] == [[w.tutor.email]]
    skipped = [d["skipped"] for d in deliveries(w.dsn)]
    assert skipped == [None, "e-mails turned off"], skipped
