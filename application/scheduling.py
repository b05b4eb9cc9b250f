"""Scheduling context: booking requests as one atomic write of the Booking, the tutor's calendar week(s) and the
student's credit hold; the lifecycle with its money (release, capture, policy shares); reviews.

Every command reads: load (`command`, application/store.py) -> the aggregates' own methods -> `record`. The rules
live in the aggregates: availability, notice and subjects in TutorProfile, overlaps in Calendar, the lifecycle,
its timing and refunds in Booking, holds in CreditAccount."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.accounts import Account
from application.calendar_feeds import CalendarFeeds
from application.clock import Clock
from application.settings import Settings
from application.settlement import Settlement
from application.store import EventStoreApp, Loaded
from domain.booking import Booking, BookingConflict, Calendar, weeks_between
from domain.credits import CreditAccount, HoldState
from domain.errors import ConcurrencyConflict, NotFound
from domain.inbox import Inbox
from domain.messaging import Thread, thread_id_for
from domain.platform import DEFAULT_POLICY, SETTINGS_ID, PlatformSettings
from domain.subject import Subject
from domain.tutor import TutorNotBookable, TutorProfile


def meeting_secret() -> str:
    """A new lesson's meeting-room secret: random (128 bits), never derived from the booking."""
    return secrets.token_urlsafe(16)


# What a lifecycle step changed besides the booking, saved with it (None: nothing to do)
Step = Callable[[Booking, datetime], list[Any] | None]


class Scheduling(EventStoreApp):
    """Bookings and their money; `settlement` settles their credit holds; `feeds` issues calendar feed URLs."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        super().__init__(settings, clock)
        self.settlement = Settlement(self)
        self.feeds = CalendarFeeds(self)

    def _profile(self, tutor_id: UUID) -> TutorProfile:
        try:
            t: Any = self.repository.get(TutorProfile.create_id(tutor_id))
        except AggregateNotFoundError:
            raise TutorNotBookable("this tutor cannot be booked") from None
        if not isinstance(t, TutorProfile):
            raise TutorNotBookable("this tutor cannot be booked")
        return t

    def _calendars(self, tutor_id: UUID, start: datetime, end: datetime) -> list[Calendar]:
        out = []
        for week in weeks_between(start, end):
            try:
                c: Any = self.repository.get(Calendar.create_id(tutor_id, week))
            except AggregateNotFoundError:
                c = Calendar(tutor_id=tutor_id, week=week)
            out.append(c)
        return out

    # ------------------------------------------------------------------------------------------ request

    def request_booking(
        self, actor: Account, tutor_id: UUID, subject_id: UUID, start: datetime, minutes: int, note: str
    ) -> tuple[Booking, int]:
        """One atomic write: Booking + the tutor's calendar week(s) + the student's credit hold."""
        start = start.astimezone(UTC)  # one representation: the grid, the ISO week and the views are UTC's
        Booking.check_request(minutes, note)
        weeks = weeks_between(start, start + timedelta(minutes=minutes))
        calendar_ids = [Calendar.create_id(tutor_id, w) for w in weeks]
        account_id = CreditAccount.create_id(actor.user_id)
        profile_id = TutorProfile.create_id(tutor_id)
        thread_id = thread_id_for(actor.user_id, tutor_id)  # written when the request confirms itself

        def book(got: Loaded) -> tuple[Booking, int]:
            tutor = got.get(TutorProfile, profile_id)
            if tutor is None:
                raise TutorNotBookable("this tutor cannot be booked")
            tutor.check_bookable()
            subject = got.get(Subject, subject_id)
            tutor.check_teaches(subject_id, subject is not None and subject.active)
            now = self.now()
            tutor.check_time(start, minutes, now)
            settings = got.get(PlatformSettings, SETTINGS_ID)
            policy, version = (settings.booking_policy, settings.settings_version) if settings else (DEFAULT_POLICY, 1)
            booking = Booking.request(actor.user_id, tutor_id, subject_id, start, minutes, note, policy, version, now)
            calendars = [
                got.get(Calendar, cid) or Calendar(tutor_id=tutor_id, week=w)
                for cid, w in zip(calendar_ids, weeks, strict=True)
            ]
            for c in calendars:
                c.reserve(str(booking.id), start, booking.end)
            account = got.get(CreditAccount, account_id) or CreditAccount(student_id=actor.user_id)
            account.hold(str(booking.id), str(tutor_id), minutes, now, policy.commission_bps)
            extra: list[Any] = []
            if tutor.confirms_by_itself(start, now):
                booking.confirm(None, meeting_secret(), auto=True)
                extra.append(self._unlock(booking, got.get(Thread, thread_id)))
            return booking, self.record(booking, *calendars, account, *extra)

        try:
            # the profile, subject and settings are only read (the cached objects themselves); the calendars, the
            # account and the thread are this request's own until it saves them
            return self.command(
                book,
                changes=[*calendar_ids, account_id, thread_id],
                reads=[profile_id, subject_id, SETTINGS_ID],
                attempts=12,
            )
        except BookingConflict:
            raise
        except ConcurrencyConflict:
            raise BookingConflict("the slot or the credit changed concurrently; try again") from None

    # ------------------------------------------------------------------------------------ lifecycle commands
    #
    # One method per command; each is load -> the booking's own method -> save, through `_change`. The step returns
    # what else it changed (calendars, the credit account, the tutor's payouts, the pair's thread), or None when
    # there was nothing to do (a sweep that finds the booking already ended). Each answers the booking as saved
    # and the position of its last event.

    def confirm(self, actor: Account, booking_id: UUID) -> tuple[Booking, int]:
        """The tutor accepts a pending request; the pair may see each other's contact details from now on, and the
        lesson gets its meeting room."""

        def step(b: Booking, now: datetime) -> list[Any]:
            b.confirm(actor.user_id, meeting_secret(), now=now)
            return [self._unlock(b)]

        return self._change(booking_id, actor, step)

    def decline(self, actor: Account, booking_id: UUID) -> tuple[Booking, int]:
        """The tutor refuses a pending request: the time and the held credit are released."""

        def step(b: Booking, now: datetime) -> list[Any]:
            b.decline(actor.user_id)
            return self._release(b, capture=0, outcome=HoldState.RELEASED)

        return self._change(booking_id, actor, step)

    def expire(self, booking_id: UUID) -> tuple[Booking, int]:
        """The sweep: an unanswered request lapses (nothing happens if it was answered or has not lapsed)."""

        def step(b: Booking, now: datetime) -> list[Any] | None:
            if not b.expire(now):
                return None
            return self._release(b, capture=0, outcome=HoldState.RELEASED)

        return self._change(booking_id, None, step)

    def cancel(self, actor: Account, booking_id: UUID, reason: str = "") -> tuple[Booking, int]:
        """Either party cancels; a late student cancellation forfeits the policy's share of the credit (the booking
        records the minutes refunded and forfeited)."""

        def step(b: Booking, now: datetime) -> list[Any]:
            _, forfeited = b.cancel(actor.user_id, reason, now)
            return self._release(b, capture=forfeited, outcome=HoldState.CANCELLED)

        return self._change(booking_id, actor, step)

    def withdraw(self, booking_id: UUID, reason: str) -> tuple[Booking, int]:
        """The platform cancels a lesson whose tutor can no longer teach, refunding it all (nothing if it has ended
        or started)."""

        def step(b: Booking, now: datetime) -> list[Any] | None:
            if not b.withdraw(reason, now):
                return None
            return self._release(b, capture=0, outcome=HoldState.RELEASED)

        return self._change(booking_id, None, step)

    def complete(self, actor: Account | None, booking_id: UUID) -> tuple[Booking, int]:
        """The tutor marks the lesson done after its end (`actor` None: it completes by itself later); the hold
        is captured for the tutor."""

        def step(b: Booking, now: datetime) -> list[Any]:
            b.complete(actor.user_id if actor else None, now, auto=actor is None)
            return self._settle(b, capture=b.duration_minutes, outcome=HoldState.CAPTURED)

        return self._change(booking_id, actor, step)

    def no_show(self, actor: Account, booking_id: UUID) -> tuple[Booking, int]:
        """The tutor marks the student absent; the policy's share comes back to the student."""

        def step(b: Booking, now: datetime) -> list[Any]:
            refund = b.no_show(actor.user_id, now)
            return self._release(b, capture=b.duration_minutes - refund, outcome=HoldState.NO_SHOW)

        return self._change(booking_id, actor, step)

    def propose(self, actor: Account, booking_id: UUID, start: datetime) -> tuple[Booking, int]:
        """Either party proposes a new time: it must be bookable now (availability, notice, no overlap)."""

        def step(b: Booking, now: datetime) -> list[Any]:
            new_start = start.astimezone(UTC)
            new_end = new_start + timedelta(minutes=b.duration_minutes)
            self._profile(b.tutor_id).check_time(new_start, b.duration_minutes, now)
            for c in self._calendars(b.tutor_id, new_start, new_end):
                c.reserve(str(b.id), new_start, new_end)  # the conflict check only: nothing is saved
                c.collect_events()
            b.propose(actor.user_id, new_start)
            return []

        return self._change(booking_id, actor, step)

    def answer(self, actor: Account, booking_id: UUID, accept: bool) -> tuple[Booking, int]:
        """The other party accepts a proposal (the lesson moves in the calendars) or rejects it."""

        def step(b: Booking, now: datetime) -> list[Any]:
            old = (b.start, b.end)
            proposal = b.answer_reschedule(actor.user_id, accept)
            if not accept:
                return []
            self._profile(b.tutor_id).check_time(proposal.start, b.duration_minutes, now)
            olds = self._calendars(b.tutor_id, *old)
            for c in olds:
                c.release(str(b.id))
            moved = {c.id: c for c in olds}
            for c in self._calendars(b.tutor_id, proposal.start, proposal.end):
                c = moved.get(c.id, c)
                c.reserve(str(b.id), proposal.start, proposal.end)
                moved[c.id] = c
            return list(moved.values())

        return self._change(booking_id, actor, step)

    def _change(self, booking_id: UUID, actor: Account | None, step: Step) -> tuple[Booking, int]:
        """Load the booking (404 for someone else's), run `step`, save the booking with what the step changed, in
        one transaction; a version clash runs it all again on fresh state."""

        def change(got: Loaded) -> tuple[Booking, int]:
            b = self._yours(got, booking_id, actor)
            others = step(b, self.now())
            return b, (self.head() if others is None else self.record(b, *others))

        return self.command(change, changes=[booking_id], attempts=12)

    @staticmethod
    def _yours(got: Loaded, booking_id: UUID, actor: Account | None) -> Booking:
        """The booking, for its parties, an admin or the platform (`actor` None); 404 for anyone else."""
        b = got.get(Booking, booking_id)
        if b is None or (
            actor is not None and actor.role != "admin" and actor.user_id not in (b.student_id, b.tutor_id)
        ):
            raise NotFound("no such booking")
        return b

    def _unlock(self, b: Booking, loaded: Thread | None = None) -> Thread:
        """A confirmed booking lets the pair see each other's contact details from now on (`loaded`: the pair's
        thread if the caller has just read it)."""
        t = loaded
        if t is None:
            try:
                found: Any = self.repository.get(thread_id_for(b.student_id, b.tutor_id))
                t = found if isinstance(found, Thread) else None
            except AggregateNotFoundError:
                pass
        t = t or Thread(participant_ids=[str(b.student_id), str(b.tutor_id)])
        t.unlock_contacts()
        return t

    def _release(self, b: Booking, capture: int, outcome: HoldState) -> list[Any]:
        """Free the calendar and settle the hold (capture `capture` minutes, release the rest)."""
        cals = self._calendars(b.tutor_id, b.start, b.end)
        for c in cals:
            c.release(str(b.id))
        return [*cals, *self._settle(b, capture, outcome)]

    def _settle(self, b: Booking, capture: int, outcome: HoldState) -> list[Any]:
        account = self.settlement.account(b.student_id)
        hold = account.holds.get(str(b.id))
        if hold is None or hold.state is not HoldState.OPEN:
            return []
        _, payouts = self.settlement.settle(account, str(b.id), capture, outcome)
        return [account, payouts] if payouts else [account]

    # ------------------------------------------------------------------------------------------ reviews

    def review(self, actor: Account, booking_id: UUID, rating: int, text: str) -> tuple[Booking, int]:
        """The student's one review of a completed lesson."""

        def add(got: Loaded) -> tuple[Booking, int]:
            b = self._yours(got, booking_id, actor)
            b.add_review(actor.user_id, rating, text, self.now())
            return b, self.record(b)

        return self.command(add, changes=[booking_id])

    def respond(self, actor: Account, booking_id: UUID, text: str) -> tuple[Booking, int]:
        """The tutor's one response to the review."""

        def add(got: Loaded) -> tuple[Booking, int]:
            b = self._yours(got, booking_id, actor)
            b.respond(actor.user_id, text, self.now())
            return b, self.record(b)

        return self.command(add, changes=[booking_id])

    # ------------------------------------------------------------------------------------------ inbox

    def mark_read(self, user_id: UUID, notification_ids: list[str]) -> int:
        """Record read receipts on the user's inbox stream."""
        inbox_id = Inbox.create_id(user_id)

        def mark(got: Loaded) -> int:
            inbox = got.get(Inbox, inbox_id) or Inbox(user_id=user_id)
            inbox.mark_read(notification_ids)
            return self.record(inbox)

        return self.command(mark, changes=[inbox_id])

    def remind(self, booking_id: UUID) -> int:
        """Queue the lesson reminder for both participants (once per booking time)."""

        def remind(got: Loaded) -> int:
            b = self._yours(got, booking_id, None)
            if b.status != "confirmed":
                return self.head()
            changed = []
            for uid in (b.student_id, b.tutor_id):
                inbox = self._inbox(uid)
                if inbox.remind(str(b.id), b.start.isoformat().replace("+00:00", "Z")):
                    changed.append(inbox)
            return self.record(*changed) if changed else self.head()

        return self.command(remind, changes=[booking_id])

    def _inbox(self, user_id: UUID) -> Inbox:
        try:
            found: Any = self.repository.get(Inbox.create_id(user_id))
        except AggregateNotFoundError:
            return Inbox(user_id=user_id)
        return found if isinstance(found, Inbox) else Inbox(user_id=user_id)
