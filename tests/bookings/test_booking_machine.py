"""Booking in memory: a hypothesis state machine drives one booking through any order of the parties' actions and
time, against a model of its lifecycle.

What must hold: only the tutor confirms, declines, completes and marks a no-show; a request lapses at
min(requested + pending expiry, start) and cannot be confirmed after; a student cannot cancel once the lesson has
started; a cancellation or no-show splits the duration exactly into refunded and forfeited minutes (late student
cancellations by the policy's basis points, rounded half up); a lesson completes only after its end; a proposal is
answered only by the other party; ended bookings never change; the meeting secret given at confirmation is the
booking's for good (reschedules keep it) and a room exists only while confirmed, completed or marked a no-show; the
recorded events replay to the same state."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain.booking import NO_SHOW_AFTER, Booking, meets
from domain.errors import DomainError, Forbidden, WrongStatus
from domain.money import bps_of
from domain.platform import Policy

NOW = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)
POLICY = Policy(
    cancellation_window_hours=24,
    late_cancel_refund_bps=5000,
    no_show_refund_bps=2500,
    commission_bps=2000,
    pending_expiry_hours=24,
    auto_complete_hours=24,
)
SECRET = "Zm9vYmFyYmF6cXV4LV8x"  # 20 URL-safe characters, as Scheduling makes them (longer)
ENDED = ("declined", "expired", "cancelled", "completed", "no_show")


class BookingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.student, self.tutor, self.stranger = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        self.now = NOW
        self.booking = Booking.request(
            self.student, self.tutor, uuid.uuid4(), NOW + timedelta(hours=30), 60, "", POLICY, 1, NOW
        )
        self.events: list[Any] = list(self.booking.collect_events())
        self.status = "pending"
        self.start = NOW + timedelta(hours=30)
        self.proposal: tuple[datetime, str] | None = None
        self.secret: str | None = None

    def party(self, who: str) -> uuid.UUID:
        return {"student": self.student, "tutor": self.tutor, "stranger": self.stranger}[who]

    def _done(self) -> None:
        self.events += self.booking.collect_events()

    def attempt(self, expected: type[DomainError] | None, action: Any) -> None:
        if expected is None:
            action()
        else:
            with pytest.raises(expected):
                action()
        self._done()

    @initialize(confirmed=st.booleans())
    def maybe_confirmed_at_once(self, confirmed: bool) -> None:
        """Half the runs start from a confirmed booking, so that the rules of lessons (no-show, completion,
        rescheduling, late cancellation) are reached as often as those of requests."""
        if confirmed:
            self.confirm("tutor")

    @rule(minutes=st.sampled_from([5, 60, 300, 720, 1500]))
    def time_passes(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    def _reach(self, at: int | None) -> None:
        """Act at a moment around the lesson's start (minutes from it) where the rules change, if still ahead."""
        if at is not None:
            self.now = max(self.now, self.start + timedelta(minutes=at))

    @rule(who=st.sampled_from(["student", "tutor", "stranger"]))
    def confirm(self, who: str) -> None:
        lapsed = self.now >= min(NOW + timedelta(hours=24), self.start)
        expected: type[DomainError] | None = None
        if who != "tutor":
            expected = Forbidden
        elif self.status != "pending" or lapsed:
            expected = WrongStatus
        secret = uuid.uuid4().hex  # a new one each attempt: only the first confirmation's may stick
        self.attempt(expected, lambda: self.booking.confirm(self.party(who), secret, now=self.now))
        if expected is None:
            self.status, self.secret = "confirmed", secret

    @rule(who=st.sampled_from(["student", "tutor"]))
    def decline(self, who: str) -> None:
        expected = Forbidden if who != "tutor" else None if self.status == "pending" else WrongStatus
        self.attempt(expected, lambda: self.booking.decline(self.party(who)))
        if expected is None:
            self.status = "declined"

    @rule()
    def sweep_expires(self) -> None:
        lapses = self.status == "pending" and self.now >= min(NOW + timedelta(hours=24), self.start)
        assert self.booking.expire(self.now) == lapses
        self._done()
        if lapses:
            self.status = "expired"

    @rule(
        who=st.sampled_from(["student", "tutor"]),
        at=st.sampled_from([None, -25 * 60, -23 * 60, -5, 0, 5, 10, 55, 60, 65]),
    )
    def cancel(self, who: str, at: int | None) -> None:
        self._reach(at)
        expected: type[DomainError] | None = None
        if self.status not in ("pending", "confirmed") or (who == "student" and self.now >= self.start):
            expected = WrongStatus
        result: list[tuple[int, int]] = []
        self.attempt(expected, lambda: result.append(self.booking.cancel(self.party(who), "x", self.now)))
        if expected is None:
            refunded, forfeited = result[0]
            early = who == "tutor" or self.start - self.now > timedelta(hours=24)
            assert refunded == (60 if early else bps_of(60, 5000))
            assert refunded + forfeited == 60
            self.status, self.proposal = "cancelled", None

    @rule(
        who=st.sampled_from(["student", "tutor"]),
        at=st.sampled_from([None, -25 * 60, -23 * 60, -5, 0, 5, 10, 55, 60, 65]),
    )
    def complete(self, who: str, at: int | None) -> None:
        self._reach(at)
        expected: type[DomainError] | None = None
        if who != "tutor":
            expected = Forbidden
        elif self.status != "confirmed" or self.now < self.start + timedelta(minutes=60):
            expected = WrongStatus
        self.attempt(expected, lambda: self.booking.complete(self.party(who), self.now))
        if expected is None:
            self.status, self.proposal = "completed", None

    @rule(
        who=st.sampled_from(["student", "tutor"]),
        at=st.sampled_from([None, -25 * 60, -23 * 60, -5, 0, 5, 10, 55, 60, 65]),
    )
    def no_show(self, who: str, at: int | None) -> None:
        self._reach(at)
        expected: type[DomainError] | None = None
        if who != "tutor":
            expected = Forbidden
        elif self.status != "confirmed" or self.now < self.start + NO_SHOW_AFTER:
            expected = WrongStatus
        result: list[int] = []
        self.attempt(expected, lambda: result.append(self.booking.no_show(self.party(who), self.now)))
        if expected is None:
            assert result[0] == bps_of(60, 2500)
            self.status = "no_show"

    @rule(who=st.sampled_from(["student", "tutor"]), hours=st.sampled_from([-3, 2, 48]))
    def propose(self, who: str, hours: int) -> None:
        expected = None if self.status == "confirmed" else WrongStatus
        new_start = self.start + timedelta(hours=hours)
        self.attempt(expected, lambda: self.booking.propose(self.party(who), new_start))
        if expected is None:
            self.proposal = (new_start, who)

    @rule(who=st.sampled_from(["student", "tutor"]), accept=st.booleans())
    def answer(self, who: str, accept: bool) -> None:
        expected: type[DomainError] | None = None
        if self.status != "confirmed" or self.proposal is None:
            expected = WrongStatus
        elif self.proposal[1] == who:
            expected = Forbidden
        self.attempt(expected, lambda: self.booking.answer_reschedule(self.party(who), accept))
        if expected is None:
            if accept:
                self.start = self.proposal[0]
            self.proposal = None

    @invariant()
    def the_booking_is_what_the_model_says(self) -> None:
        b = self.booking
        assert b.status == self.status
        assert b.start == self.start and b.end == self.start + timedelta(minutes=60)
        assert (b.pending_reschedule is None) == (self.proposal is None)
        if b.status in ("cancelled", "no_show"):
            assert b.refunded_minutes + b.forfeited_minutes == 60
        assert b.meeting_secret == self.secret
        assert meets(b.status, b.meeting_secret) == (self.status in ("confirmed", "completed", "no_show"))

    @invariant()
    def the_events_replay_to_the_same_state(self) -> None:
        replayed: Any = None
        for e in self.events:
            replayed = e.mutate(replayed)
        names = (
            "status",
            "start",
            "end",
            "pending_reschedule",
            "refunded_minutes",
            "forfeited_minutes",
            "meeting_secret",
        )
        for name in names:
            assert getattr(replayed, name) == getattr(self.booking, name), name


BookingMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_booking = BookingMachine.TestCase


def _confirmed() -> tuple[Booking, uuid.UUID, uuid.UUID]:
    student, tutor = uuid.uuid4(), uuid.uuid4()
    b = Booking.request(student, tutor, uuid.uuid4(), NOW + timedelta(hours=30), 60, "", POLICY, 1, NOW)
    b.confirm(tutor, SECRET, now=NOW)
    return b, student, tutor


def test_the_boundaries_of_the_lesson_rules() -> None:
    """The moments where the rules change, each side of them (the machine reaches them by chance; these always)."""
    start = NOW + timedelta(hours=30)
    b, student, tutor = _confirmed()
    with pytest.raises(WrongStatus):
        b.no_show(tutor, start + NO_SHOW_AFTER - timedelta(minutes=1))
    assert b.no_show(tutor, start + NO_SHOW_AFTER) == bps_of(60, 2500)
    b, student, tutor = _confirmed()
    with pytest.raises(WrongStatus):
        b.complete(tutor, start + timedelta(minutes=59))
    with pytest.raises(WrongStatus):  # by itself only after the auto-complete delay
        b.complete(None, start + timedelta(minutes=60, hours=24) - timedelta(seconds=1), auto=True)
    assert b.completes_at == start + timedelta(minutes=60, hours=24)
    b.complete(tutor, start + timedelta(minutes=60))
    b, student, tutor = _confirmed()
    with pytest.raises(WrongStatus):
        b.cancel(student, "late", start)
    assert b.cancel(student, "late", start - timedelta(hours=24)) == (30, 30)  # inside the window: half back
    b, student, tutor = _confirmed()
    assert b.cancel(student, "early", start - timedelta(hours=24, minutes=1)) == (60, 0)
    b, student, tutor = _confirmed()
    b.complete(None, start + timedelta(minutes=60, hours=24), auto=True)
    assert b.status == "completed"
    lapsing = Booking.request(student, tutor, uuid.uuid4(), start, 60, "", POLICY, 1, NOW)
    with pytest.raises(WrongStatus):
        lapsing.confirm(tutor, SECRET, now=NOW + timedelta(hours=24))
    assert not lapsing.expire(NOW + timedelta(hours=24) - timedelta(seconds=1))
    assert lapsing.expire(NOW + timedelta(hours=24))


def test_the_meeting_secret_is_recorded_at_confirmation_and_kept_across_a_reschedule() -> None:
    b, student, tutor = _confirmed()
    confirmed = [e for e in b.collect_events() if isinstance(e, Booking.Confirmed)]
    assert [e.meeting_secret for e in confirmed] == [SECRET]
    b.propose(student, NOW + timedelta(hours=48))
    b.answer_reschedule(tutor, True)
    assert b.start == NOW + timedelta(hours=48) and b.meeting_secret == SECRET and meets(b.status, SECRET)
    assert all("meeting_secret" not in vars(e) for e in b.collect_events())  # a reschedule records no new room
    b.cancel(tutor, "ill", NOW)
    assert b.meeting_secret == SECRET and not meets(b.status, b.meeting_secret)


def test_a_confirmation_needs_an_unguessable_url_safe_secret() -> None:
    b = Booking.request(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), NOW + timedelta(hours=30), 60, "", POLICY, 1, NOW)
    for bad in ("", "short", "x" * 15, "a/b?c#d" * 4, "spaces are not ok!!"):
        with pytest.raises(ValueError):
            b.confirm(b.tutor_id, bad, now=NOW)
    assert b.status == "pending" and b.meeting_secret is None
