"""Scheduling context: booking requests as one atomic write of the Booking, the tutor's calendar week(s) and the
student's credit hold; the lifecycle with its money (release, capture, policy shares); reviews."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.booking_views import booking_view, z
from application.identity import Account
from application.money import Money
from application.store import retrying
from domain.availability import available, covers, on_grid, parse_rules
from domain.booking import (
    POLICY_KEYS,
    POLICY_TIMINGS,
    Booking,
    BookingConflict,
    Calendar,
    OutsideAvailability,
    TooShortNotice,
    weeks_between,
)
from domain.credits import CreditAccount
from domain.errors import NotFound, ValidationFailed
from domain.inbox import Inbox
from domain.messaging import Thread, thread_id_for
from domain.platform import SETTINGS_ID, PlatformSettings
from domain.subject import Subject
from domain.tutor import TutorNotBookable, TutorProfile

AUTO_CONFIRM_AFTER = timedelta(hours=24)
# What a lifecycle step changed besides the booking (saved with it), and the extra fields of its answer
Changed = tuple[list[Any], dict[str, Any]]


def _iv(raw: list[dict[str, str]]) -> list[tuple[datetime, datetime]]:
    return [(datetime.fromisoformat(x["start"]), datetime.fromisoformat(x["end"])) for x in raw]


class Scheduling(Money):
    """Bookings and their money; Money supplies accounts, payouts and settlement."""

    def _profile(self, tutor_id: UUID) -> TutorProfile:
        try:
            t: Any = self.repository.get(TutorProfile.create_id(tutor_id))
        except AggregateNotFoundError:
            raise TutorNotBookable("this tutor cannot be booked") from None
        return t  # type: ignore[no-any-return]

    def _booking(self, booking_id: UUID) -> Booking:
        try:
            b: Any = self.repository.get(booking_id)
        except AggregateNotFoundError:
            raise NotFound("no such booking") from None
        if not isinstance(b, Booking):
            raise NotFound("no such booking")
        return b

    def _calendars(self, tutor_id: UUID, start: datetime, end: datetime) -> list[Calendar]:
        out = []
        for week in weeks_between(start, end):
            try:
                c: Any = self.repository.get(Calendar.create_id(tutor_id, week))
            except AggregateNotFoundError:
                c = Calendar(tutor_id=tutor_id, week=week)
            out.append(c)
        return out

    def _check_time(self, tutor: TutorProfile, start: datetime, minutes: int, now: datetime) -> None:
        end = start + timedelta(minutes=minutes)
        a = tutor.availability
        if not on_grid(start) or not a["timezone"]:
            raise OutsideAvailability("start must be on the :00/:30 grid inside the tutor's availability")
        free = available(
            parse_rules(a["weekly"]),
            a["timezone"],
            _iv(a["openings"]),
            _iv(a["blocks"]),
            start - timedelta(days=1),
            end + timedelta(days=1),
        )
        if not covers(free, start, end):
            raise OutsideAvailability("the tutor is not available at that time")
        if start < now + timedelta(minutes=tutor.min_notice_minutes):
            raise TooShortNotice(f"the tutor needs {tutor.min_notice_minutes} minutes' notice")

    # ------------------------------------------------------------------------------------------ request

    def request_booking(
        self, actor: Account, tutor_id: UUID, subject_id: UUID, start: datetime, minutes: int, note: str
    ) -> tuple[dict[str, Any], int]:
        """One atomic write: Booking + the tutor's calendar week(s) + the student's credit hold."""
        start = start.astimezone(UTC)  # one representation: the grid, the ISO week and the views are UTC's
        Booking.request(actor.user_id, tutor_id, subject_id, start, minutes, note, {}, 0, self.now())  # body rules
        weeks = weeks_between(start, start + timedelta(minutes=minutes))
        calendar_ids = [Calendar.create_id(tutor_id, w) for w in weeks]
        account_id = CreditAccount.create_id(actor.user_id)
        profile_id = TutorProfile.create_id(tutor_id)
        thread_id = thread_id_for(actor.user_id, tutor_id)  # written when the request confirms itself
        # Everything the request reads, brought up to date in one query (profile, subject and settings are only
        # read: the cached objects themselves); the retries below read again only what they write.
        writes = [*calendar_ids, account_id, thread_id]  # never read shared (read_only) anywhere
        loaded = self.get_many([], read_only=[profile_id, subject_id, SETTINGS_ID], take=writes)
        try:
            tutor: Any = loaded.get(profile_id)
            if not isinstance(tutor, TutorProfile):
                raise TutorNotBookable("this tutor cannot be booked")
            tutor.check_bookable()
            subject = loaded.get(subject_id)
            if str(subject_id) not in tutor.subjects or not isinstance(subject, Subject) or not subject.active:
                raise ValidationFailed([("subject_id", "a subject this tutor teaches")])
            now = self.now()
            self._check_time(tutor, start, minutes, now)
        except Exception:
            self.give_back((loaded.get(i) for i in writes), {i: loaded[i].version for i in writes if i in loaded})
            raise
        settings: Any = loaded.get(SETTINGS_ID) or PlatformSettings.defaults()
        policy = {k: settings.values[k] for k in (*POLICY_KEYS, *POLICY_TIMINGS)}
        first = True

        def attempt() -> tuple[dict[str, Any], int]:
            nonlocal loaded, first
            if not first:
                loaded = self.get_many([], take=writes)
            first = False
            taken = {i: loaded[i].version for i in writes if i in loaded}
            try:
                return attempt_with(loaded)
            finally:
                # what this attempt left unchanged (refused, or not needed) goes back; what it saved is cached
                self.give_back((loaded.get(i) for i in writes), taken)

        def attempt_with(loaded: dict[UUID, Any]) -> tuple[dict[str, Any], int]:
            booking = Booking.request(
                actor.user_id, tutor_id, subject_id, start, minutes, note, policy, settings.settings_version, now
            )
            calendars = [
                loaded.get(cid) or Calendar(tutor_id=tutor_id, week=w)
                for cid, w in zip(calendar_ids, weeks, strict=True)
            ]
            for c in calendars:
                c.reserve(str(booking.id), start, booking.end)
            account = loaded.get(account_id) or CreditAccount(student_id=actor.user_id)
            account.hold(str(booking.id), str(tutor_id), minutes, now, int(policy["commission_bps"]))
            extra: list[Any] = []
            if tutor.auto_confirm and start - now > AUTO_CONFIRM_AFTER:
                booking.confirm(None, auto=True)
                extra.append(self._unlock(booking, loaded.get(thread_id)))
            return booking_view(booking), self.record(booking, *calendars, account, *extra)

        try:
            return retrying(attempt, attempts=12)
        except BookingConflict:
            raise
        except Exception as e:
            from domain.errors import ConcurrencyConflict

            if isinstance(e, ConcurrencyConflict):
                raise BookingConflict("the slot or the credit changed concurrently; try again") from None
            raise

    # ---------------------------------------------------------------------------------------- lifecycle

    def view(self, actor: Account, booking_id: UUID) -> dict[str, Any]:
        """A booking for its participants (and admins)."""
        b = self._booking(booking_id)
        if actor.role != "admin" and actor.user_id not in (b.student_id, b.tutor_id):
            raise NotFound("no such booking")
        return booking_view(b)

    # ------------------------------------------------------------------------------------ lifecycle commands
    #
    # One method per command; each is load -> the booking's own method -> save, through `_change`. The step returns
    # what else it changed (calendars, the credit account, the tutor's payouts, the pair's thread) and any extra
    # fields of the answer, or None when there was nothing to do (a sweep that finds the booking already ended).

    def confirm(self, actor: Account, booking_id: UUID) -> tuple[dict[str, Any], int]:
        """The tutor accepts a pending request; the pair may see each other's contact details from now on."""

        def step(b: Booking, now: datetime) -> Changed:
            b.confirm(actor.user_id, now=now)
            return [self._unlock(b)], {}

        return self._change(booking_id, actor, step)

    def decline(self, actor: Account, booking_id: UUID) -> tuple[dict[str, Any], int]:
        """The tutor refuses a pending request: the time and the held credit are released."""

        def step(b: Booking, now: datetime) -> Changed:
            b.decline(actor.user_id)
            return self._release(b, capture=0, outcome="released"), {}

        return self._change(booking_id, actor, step)

    def expire(self, booking_id: UUID) -> tuple[dict[str, Any], int]:
        """The sweep: an unanswered request lapses (nothing happens if it was answered or has not lapsed)."""

        def step(b: Booking, now: datetime) -> Changed | None:
            if not b.expire(now):
                return None
            return self._release(b, capture=0, outcome="released"), {}

        return self._change(booking_id, None, step)

    def cancel(self, actor: Account, booking_id: UUID, reason: str = "") -> tuple[dict[str, Any], int]:
        """Either party cancels; a late student cancellation forfeits the policy's share of the credit."""

        def step(b: Booking, now: datetime) -> Changed:
            refunded, forfeited = b.cancel(actor.user_id, reason, now)
            extra = {"refunded_minutes": refunded, "forfeited_minutes": forfeited}
            return self._release(b, capture=forfeited, outcome="cancelled"), extra

        return self._change(booking_id, actor, step)

    def withdraw(self, booking_id: UUID, reason: str) -> tuple[dict[str, Any], int]:
        """The platform cancels a lesson whose tutor can no longer teach, refunding it all (nothing if it has ended
        or started)."""

        def step(b: Booking, now: datetime) -> Changed | None:
            if not b.withdraw(reason, now):
                return None
            return self._release(b, capture=0, outcome="released"), {}

        return self._change(booking_id, None, step)

    def complete(self, actor: Account | None, booking_id: UUID) -> tuple[dict[str, Any], int]:
        """The tutor marks the lesson done after its end (`actor` None: it completes by itself later); the hold
        is captured for the tutor."""

        def step(b: Booking, now: datetime) -> Changed:
            b.complete(actor.user_id if actor else None, now, auto=actor is None)
            return self._settle_only(b, capture=b.duration_minutes, outcome="captured"), {}

        return self._change(booking_id, actor, step)

    def no_show(self, actor: Account, booking_id: UUID) -> tuple[dict[str, Any], int]:
        """The tutor marks the student absent; the policy's share comes back to the student."""

        def step(b: Booking, now: datetime) -> Changed:
            refund = b.no_show(actor.user_id, now)
            return self._release(b, capture=b.duration_minutes - refund, outcome="no_show"), {}

        return self._change(booking_id, actor, step)

    def propose(self, actor: Account, booking_id: UUID, start: datetime) -> tuple[dict[str, Any], int]:
        """Either party proposes a new time: it must be bookable now (availability, notice, no overlap)."""

        def step(b: Booking, now: datetime) -> Changed:
            new_start = start.astimezone(UTC)
            new_end = new_start + timedelta(minutes=b.duration_minutes)
            self._check_time(self._profile(b.tutor_id), new_start, b.duration_minutes, now)
            for c in self._calendars(b.tutor_id, new_start, new_end):
                c.reserve(str(b.id), new_start, new_end)  # the conflict check only: nothing is saved
                c.collect_events()
            b.propose(actor.user_id, new_start)
            return [], {}

        return self._change(booking_id, actor, step)

    def answer(self, actor: Account, booking_id: UUID, accept: bool) -> tuple[dict[str, Any], int]:
        """The other party accepts a proposal (the lesson moves in the calendars) or rejects it."""

        def step(b: Booking, now: datetime) -> Changed:
            old = (b.start, b.end)
            proposal = b.answer_reschedule(actor.user_id, accept)
            if not accept:
                return [], {}
            self._check_time(self._profile(b.tutor_id), proposal["start"], b.duration_minutes, now)
            olds = self._calendars(b.tutor_id, *old)
            for c in olds:
                c.release(str(b.id))
            moved = {c.id: c for c in olds}
            for c in self._calendars(b.tutor_id, proposal["start"], proposal["end"]):
                c = moved.get(c.id, c)
                c.reserve(str(b.id), proposal["start"], proposal["end"])
                moved[c.id] = c
            return list(moved.values()), {}

        return self._change(booking_id, actor, step)

    def _change(
        self, booking_id: UUID, actor: Account | None, step: Callable[[Booking, datetime], Changed | None]
    ) -> tuple[dict[str, Any], int]:
        """Load the booking (404 for someone else's), run `step`, save the booking with what the step changed, in
        one transaction; a version clash runs it all again on fresh state."""

        def attempt() -> tuple[dict[str, Any], int]:
            b = self._booking(booking_id)
            if actor is not None and actor.role != "admin" and actor.user_id not in (b.student_id, b.tutor_id):
                raise NotFound("no such booking")
            changed = step(b, self.now())
            if changed is None:
                return booking_view(b), self.head()
            others, extra = changed
            position = self.record(b, *others)
            body = booking_view(b)
            return ({"booking": body, **extra} if extra else body), position

        return retrying(attempt, attempts=12)

    def _unlock(self, b: Booking, loaded: Any = None) -> Thread:
        """A confirmed booking lets the pair see each other's contact details from now on (`loaded`: the pair's
        thread if the caller has just read it)."""
        t: Any = loaded
        if t is None:
            try:
                t = self.repository.get(thread_id_for(b.student_id, b.tutor_id))
            except AggregateNotFoundError:
                t = Thread(participant_ids=[str(b.student_id), str(b.tutor_id)])
        t.unlock_contacts()
        return t  # type: ignore[no-any-return]

    def _release(self, b: Booking, capture: int, outcome: str) -> list[Any]:
        """Free the calendar and settle the hold (capture `capture` minutes, release the rest)."""
        cals = self._calendars(b.tutor_id, b.start, b.end)
        for c in cals:
            c.release(str(b.id))
        return [*cals, *self._settle_only(b, capture, outcome)]

    def _settle_only(self, b: Booking, capture: int, outcome: str) -> list[Any]:
        account = self._account(b.student_id)
        if str(b.id) not in account.holds or account.holds[str(b.id)]["state"] != "open":
            return []
        _, payouts = self.settle(account, str(b.id), capture, outcome)
        return [account, payouts] if payouts else [account]

    # ------------------------------------------------------------------------------------------ reviews

    def review(self, actor: Account, booking_id: UUID, rating: int, text: str) -> tuple[dict[str, Any], int]:
        """The student's one review of a completed lesson."""

        def attempt() -> tuple[dict[str, Any], int]:
            b = self._booking(booking_id)
            if actor.user_id not in (b.student_id, b.tutor_id):
                raise NotFound("no such booking")
            b.add_review(actor.user_id, rating, text, self.now())
            return self._review_view(b), self.record(b)

        return retrying(attempt)

    def respond(self, actor: Account, booking_id: UUID, text: str) -> tuple[dict[str, Any], int]:
        """The tutor's one response to the review."""

        def attempt() -> tuple[dict[str, Any], int]:
            b = self._booking(booking_id)
            if actor.user_id not in (b.student_id, b.tutor_id):
                raise NotFound("no such booking")
            b.respond(actor.user_id, text, self.now())
            return self._review_view(b), self.record(b)

        return retrying(attempt)

    def mark_read(self, user_id: UUID, notification_ids: list[str]) -> int:
        """Record read receipts on the user's inbox stream."""

        def attempt() -> int:
            inbox = self._inbox(user_id)
            inbox.mark_read(notification_ids)
            return self.record(inbox)

        return retrying(attempt)

    def remind(self, booking_id: UUID) -> int:
        """Queue the lesson reminder for both participants (once per booking time)."""

        def attempt() -> int:
            b = self._booking(booking_id)
            if b.status != "confirmed":
                return self.head()
            changed = []
            for uid in (b.student_id, b.tutor_id):
                inbox = self._inbox(uid)
                if inbox.remind(str(b.id), z(b.start)):
                    changed.append(inbox)
            return self.record(*changed) if changed else self.head()

        return retrying(attempt)

    def _inbox(self, user_id: UUID) -> Inbox:
        try:
            i: Any = self.repository.get(Inbox.create_id(user_id))
            return i  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            return Inbox(user_id=user_id)

    @staticmethod
    def _review_view(b: Booking) -> dict[str, Any]:
        r, resp = b.review or {}, b.review_response
        return {
            "id": str(b.id),
            "booking_id": str(b.id),
            "rating": r.get("rating"),
            "text": r.get("text"),
            "created_at": z(r["created_at"]) if r else None,
            "response": {"text": resp["text"], "created_at": z(resp["created_at"])} if resp else None,
        }
