"""Scheduled transitions with the real worker process (`tutorconnect worker`: dramatiq + the sweeper) and the
shared test clock: an unanswered request expires within 15 s of its due time (hold released), a confirmed lesson
completes by itself 24 h after its end (hold captured, the tutor's earning accrues), a lesson reminder appears
once, and neither a worker restart nor running the sweep twice changes anything twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from application.accounts import Account
from application.clock import Clock
from application.scheduling import Scheduling
from application.settings import Settings
from projections.reconcile import reconcile
from tests.bookings.support import events_of, head, rows, scalar, wait_until
from tests.support.system import server_env, spawn, stop_process
from tests.support.world import approve_tutor, grant

B0 = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)  # a Monday; the tutor teaches around the clock (UTC)
DUE_WITHIN = 15.0  # the contract: scheduled transitions happen within 15 s of their due time


class Env:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dsn = settings.database_url
        self.clock = Clock(settings.redis_url, True, cache_s=0.0)
        self.app = Scheduling(settings, self.clock)
        self.tutor, self.student = uuid4(), uuid4()
        self.subject, _ = approve_tutor(settings, self.tutor)
        grant(self.app, self.student, self.tutor, 600, 60000)

    def request(self, start: datetime, confirm: bool = False) -> UUID:
        view, _ = self.app.request_booking(
            Account(self.student, "student"), self.tutor, UUID(self.subject), start, 60, "scales"
        )
        if confirm:
            self.app.confirm(Account(self.tutor, "tutor"), view.id)
        return view.id

    def status(self, booking: UUID) -> str:
        return str(self.app.repository.get(booking).status)

    def hold(self, booking: UUID) -> str:
        return str(self.app.settlement.account(self.student).holds[str(booking)].state)

    def reminders(self, booking: UUID) -> list[tuple[Any, ...]]:
        return rows(
            self.dsn,
            "SELECT user_id, count(*) FROM notifications WHERE type = 'booking.reminder' AND data->>'booking_id' = %s"
            " GROUP BY user_id ORDER BY user_id",
            (str(booking),),
        )

    def footprint(self, *bookings: UUID) -> dict[str, Any]:
        """Every stream the scheduled work touches, as event type lists (equal = nothing happened)."""
        from domain.credits import CreditAccount
        from domain.inbox import Inbox
        from domain.payouts import TutorPayouts

        ids = {
            **{str(b): b for b in bookings},
            "credit": CreditAccount.create_id(self.student),
            "payouts": TutorPayouts.create_id(self.tutor),
            "inbox-student": Inbox.create_id(self.student),
            "inbox-tutor": Inbox.create_id(self.tutor),
        }
        return {name: events_of(self.dsn, i) for name, i in ids.items()}


@pytest.fixture
def env(shared_settings: Settings, shared_projectors: None) -> Env:
    return Env(shared_settings)


@pytest.fixture
def worker(shared_settings: Settings, tmp_path: Path) -> Iterator[Any]:
    procs: list[Any] = []

    def start() -> Any:
        proc = spawn(["worker"], server_env(shared_settings), tmp_path / "worker.log")
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        stop_process(p)


def _elapsed_until(predicate: Any, what: str, timeout: float = DUE_WITHIN + 5) -> float:
    t0 = time.monotonic()
    wait_until(predicate, timeout, what, every=0.1)
    return time.monotonic() - t0


def test_expiry_auto_completion_and_reminder_by_the_worker(env: Env, worker: Any, tmp_path: Path) -> None:
    env.clock.set(B0)
    pending = env.request(B0 + timedelta(hours=30))  # lapses 24 h after the request (before its start)
    lesson = env.request(B0 + timedelta(hours=2), confirm=True)  # reminder due at once; auto-completes at end + 24 h
    requested_at = env.app.repository.get(pending).requested_at
    proc = worker()
    # The reminder: once for each participant, and the request is still pending meanwhile.
    wait_until(lambda: len(env.reminders(lesson)) == 2, 40, "the lesson reminder (worker start-up included)")
    assert env.status(pending) == "pending" and env.hold(pending) == "open"
    # The request lapses within 15 s of its due time, and its hold is released.
    env.clock.set(requested_at + timedelta(hours=24))
    took = _elapsed_until(lambda: env.status(pending) == "expired", "the request to expire")
    assert took <= DUE_WITHIN, f"expired {took:.1f}s after it was due"
    assert env.hold(pending) == "released"
    assert env.status(lesson) == "confirmed"  # its end passed, but it completes only 24 h later
    # The confirmed lesson completes by itself 24 h after its end: captured, the tutor's earning accrues.
    env.clock.set(B0 + timedelta(hours=3) + timedelta(hours=24))
    took = _elapsed_until(lambda: env.status(lesson) == "completed", "the lesson to complete")
    assert took <= DUE_WITHIN, f"completed {took:.1f}s after it was due"
    assert env.hold(lesson) == "captured"
    assert env.app.settlement.payouts(env.tutor).earned == {"USD": 4800}  # 60 of 600 minutes of 600.00, less 20 %
    assert events_of(env.dsn, lesson)[-1] == "Booking.Completed"
    assert env.app.repository.get(lesson).status == "completed"
    # Exactly once, and nothing more after a restart of the worker (two sweeps' time at least).
    assert [n for _, n in env.reminders(lesson)] == [1, 1]
    before = env.footprint(pending, lesson)
    assert before[str(pending)].count("Booking.Expired") == 1
    assert before[str(lesson)].count("Booking.Completed") == 1
    assert before["inbox-student"].count("Inbox.Reminded") == before["inbox-tutor"].count("Inbox.Reminded") == 1
    stop_process(proc)
    worker()
    # Proving that nothing happens needs time to pass: two sweep periods (5 s each) of the restarted worker,
    # plus its start-up, must leave every stream as it was.
    time.sleep(12)
    assert env.footprint(pending, lesson) == before
    wait_until(lambda: _ledger_position(env.dsn) >= head(env.dsn), 15, "the ledger to catch up")
    assert reconcile(env.dsn)["ok"]
    payable = scalar(env.dsn, "SELECT coalesce(sum(signed), 0) FROM ledger_postings WHERE account = %s",
                     (f"tutor_payable:{env.tutor}",))  # fmt: skip
    assert payable == 4800


def _ledger_position(dsn: str) -> int:
    return int(scalar(dsn, "SELECT position FROM projection_tracking WHERE name = 'ledger' AND state = 'active'"))


def test_running_the_sweep_twice_changes_nothing_twice(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep and its jobs, run in this process (jobs inline instead of through the broker), twice."""
    for key, value in server_env(env.settings).items():
        monkeypatch.setenv(key, value)
    from workers import actors

    for job in (actors.expire_booking, actors.complete_booking, actors.remind_booking):
        monkeypatch.setattr(job, "send", job.fn)
    t = B0 + timedelta(days=10)
    env.clock.set(t)
    pending = env.request(t + timedelta(hours=30))
    lesson = env.request(t + timedelta(hours=2), confirm=True)
    env.clock.set(t + timedelta(hours=27, minutes=1))  # the request lapsed, the lesson ended 24 h ago
    upcoming = env.request(t + timedelta(hours=32), confirm=True)  # starts within 24 h: a reminder is due
    position = head(env.dsn)
    wait_until(lambda: scalar(env.dsn, "SELECT min(position) FROM projection_tracking WHERE name = 'bookings'")
               >= position, 15, "the bookings read model")  # fmt: skip
    actors.sweep_bookings.fn()
    first = env.footprint(pending, lesson, upcoming)
    assert first[str(pending)][-1] == "Booking.Expired"
    assert first[str(lesson)][-1] == "Booking.Completed"
    assert first["inbox-student"].count("Inbox.Reminded") == 1
    assert first["inbox-tutor"].count("Inbox.Reminded") == 1
    actors.sweep_bookings.fn()  # possibly on a read model that has not seen the first sweep's events yet
    for b in (pending, lesson, upcoming):
        actors.expire_booking.fn(str(b))
        actors.complete_booking.fn(str(b))
        actors.remind_booking.fn(str(b))
    assert env.footprint(pending, lesson, upcoming) == first
    assert env.status(upcoming) == "confirmed"


def test_a_lapsed_request_cannot_be_confirmed_before_the_sweep_records_its_expiry(env: Env) -> None:
    from domain.errors import WrongStatus

    t = B0 + timedelta(days=20)
    env.clock.set(t)
    late, timely = env.request(t + timedelta(hours=30)), env.request(t + timedelta(hours=31))
    env.clock.set(t + timedelta(hours=24, minutes=1))  # both lapsed (pending expiry 24 h); no sweep has run
    with pytest.raises(WrongStatus, match="expired"):
        env.app.confirm(Account(env.tutor, "tutor"), late)
    assert env.status(late) == "pending" and env.hold(late) == "open"  # nothing recorded by the refusal
    env.clock.set(t + timedelta(hours=23, minutes=59))  # a minute before the lapse, confirming still works
    env.app.confirm(Account(env.tutor, "tutor"), timely)
    assert env.status(timely) == "confirmed"
