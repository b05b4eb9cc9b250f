"""Exactly once, whatever happens to the SMTP server or the mailers: an outage (the server stopped, then started
again on the same port), a mailer process stopped mid-way and a new one started, two mailers at once, a mailer that
dies holding rows, and a rebuild of the outbox read model. Each e-mail arrives once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from application.settings import Settings
from projections import generations
from projections.emails import Emails
from tests.email.support import B0, SmtpServer, World, caught_up, deliveries, settle
from tests.support.system import server_env, spawn, stop_process, wait_until
from workers.mailer import Mailer

START = B0 + timedelta(hours=30)


def requests(w: World, n: int) -> None:
    """`n` lesson requests, an hour apart: one e-mail to the tutor each."""
    for i in range(n):
        w.book(START + timedelta(hours=i))


def once_each(smtp: SmtpServer, n: int) -> None:
    """`n` e-mails arrived, each exactly once (by Message-ID), and no more come."""
    settle(1.5)
    counts = Counter(m.message_id for m in smtp.messages())
    assert len(counts) == n and set(counts.values()) == {1}, counts


def test_an_smtp_outage_delays_but_neither_loses_nor_repeats(
    client: Any, prepared: Settings, smtp: SmtpServer, start_mailer: Any
) -> None:
    w = World(client, prepared)
    start_mailer()
    smtp.stop()
    requests(w, 3)
    wait_until(
        lambda: len(d := deliveries(w.dsn)) == 3 and all(x["attempts"] >= 2 and x["last_error"] for x in d),
        20,
        "the mailer to try twice and fail while the server is down",
    )
    assert all(d["sent_at"] is None for d in deliveries(w.dsn))
    assert "ConnectionRefusedError" in deliveries(w.dsn)[0]["last_error"]
    smtp.start()
    smtp.wait_for(3)
    once_each(smtp, 3)
    assert all(d["sent_at"] is not None and d["last_error"] is None for d in deliveries(w.dsn))


def test_a_mailer_process_stopped_mid_way_and_a_new_one_lose_and_repeat_nothing(
    client: Any, prepared: Settings, smtp: SmtpServer, tmp_path: Path
) -> None:
    w = World(client, prepared)
    smtp.delay_s = 0.3  # a slow server: the mailer is still sending when it is stopped
    requests(w, 12)
    caught_up(w.dsn)
    env = server_env(prepared, SMTP_URL=prepared.smtp_url, SMTP_FROM=prepared.smtp_from)
    first = spawn(["mailer"], env, tmp_path / "mailer-1.log")
    try:
        smtp.wait_for(3, what="e-mails from the first mailer")
    finally:
        stop_process(first)
    sent_by_first = len(smtp.messages())
    assert sent_by_first < 12, "the first mailer finished before it was stopped: nothing tested"
    assert sum(d["sent_at"] is not None for d in deliveries(w.dsn)) == sent_by_first
    second = spawn(["mailer"], env, tmp_path / "mailer-2.log")
    try:
        smtp.wait_for(12, timeout=30, what="e-mails from both mailers")
        once_each(smtp, 12)
    finally:
        stop_process(second)
    assert all(d["sent_at"] is not None for d in deliveries(w.dsn))


def test_two_mailers_at_once_send_each_email_once(
    client: Any, prepared: Settings, smtp: SmtpServer, start_mailer: Any
) -> None:
    w = World(client, prepared)
    smtp.delay_s = 0.3  # each holds its rows a while: the other must not take them meanwhile
    requests(w, 7)  # odd: one finishes its last batch first, while the other still sends
    caught_up(w.dsn)
    start_mailer(batch=2)
    start_mailer(batch=2)
    smtp.wait_for(7)
    once_each(smtp, 7)


def test_rows_a_dead_mailer_held_are_sent_by_another_after_the_lease(
    client: Any, prepared: Settings, smtp: SmtpServer, start_mailer: Any
) -> None:
    w = World(client, prepared)
    requests(w, 3)
    caught_up(w.dsn)
    dead = Mailer(w.dsn, prepared.smtp_url, prepared.smtp_from, w.clock, lease=timedelta(seconds=2))
    dead.enroll()
    assert len(dead.claim()) == 3  # ... and it never sends them
    dead.close()
    start_mailer()
    settle(1.0)
    assert smtp.messages() == []  # leased: nobody else takes them meanwhile
    smtp.wait_for(3)
    once_each(smtp, 3)
    assert [d["attempts"] for d in deliveries(w.dsn)] == [2, 2, 2]


def test_a_refused_recipient_is_given_up_after_three_tries_and_the_rest_go_on(
    client: Any, prepared: Settings, smtp: SmtpServer, start_mailer: Any
) -> None:
    w = World(client, prepared)
    smtp.refuse[w.tutor.email] = "550 5.1.1 no such mailbox"
    smtp.refuse[w.student.email] = "451 4.3.0 try again later"
    start_mailer()
    booking = w.book(START)
    w.act(w.tutor, booking, "confirm")
    wait_until(
        lambda: [d["skipped"] for d in deliveries(w.dsn)][:1] == ["refused: recipient refused: [550]"],
        20,
        "the tutor's e-mail given up",
    )
    tutor = deliveries(w.dsn)[0]
    assert tutor["attempts"] == 3 and tutor["sent_at"] is None
    wait_until(lambda: deliveries(w.dsn)[1]["attempts"] >= 4, 20, "the student's e-mail retried past three tries")
    assert deliveries(w.dsn)[1]["skipped"] is None  # a 4xx is tried again, not given up
    del smtp.refuse[w.student.email]
    smtp.wait_for(1)
    once_each(smtp, 1)
    assert smtp.messages()[0].to == [w.student.email]


def test_a_rebuilt_outbox_sends_nothing_again(
    client: Any, prepared: Settings, smtp: SmtpServer, start_mailer: Any
) -> None:
    w = World(client, prepared)
    start_mailer()
    requests(w, 2)
    smtp.wait_for(2)
    before = {d["email_id"] for d in deliveries(w.dsn)}
    generation = generations.rebuild(w.dsn, Emails())
    assert generation == 2
    requests_after = 1
    w.book(START + timedelta(days=2))
    smtp.wait_for(2 + requests_after)
    once_each(smtp, 3)
    assert before < {d["email_id"] for d in deliveries(w.dsn)}
