"""Scheduling context: booking requests as one atomic write of the Booking, the tutor's calendar week(s) and the
student's credit hold; the lifecycle with its money (release, capture, policy shares); reviews."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

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


def _z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def booking_view(b: Booking) -> dict[str, Any]:
    """The contract's booking shape."""
    pr = b.pending_reschedule
    return {
        "id": str(b.id),
        "tutor_id": str(b.tutor_id),
        "student_id": str(b.student_id),
        "subject_id": str(b.subject_id),
        "start": _z(b.start),
        "end": _z(b.end),
        "duration_minutes": b.duration_minutes,
        "status": b.status,
        "note": b.note,
        "policy": {k: b.policy[k] for k in POLICY_KEYS},
        "created_at": _z(b.requested_at),
        "pending_reschedule": {"start": _z(pr["start"]), "proposed_by": pr["proposed_by"]} if pr else None,
    }


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

    def _transition(
        self, booking_id: UUID, actor: Account | None, action: str, **kw: Any
    ) -> tuple[dict[str, Any], int]:
        def attempt() -> tuple[dict[str, Any], int]:
            b = self._booking(booking_id)
            if actor is not None and actor.role != "admin" and actor.user_id not in (b.student_id, b.tutor_id):
                raise NotFound("no such booking")
            now = self.now()
            aid = actor.user_id if actor else None
            extra: dict[str, Any] = {}
            to_save: list[Any] = [b]
            bid = str(b.id)
            if action == "confirm":
                b.confirm(aid, now=now)
                to_save.append(self._unlock(b))
            elif action in ("decline", "expire"):
                if action == "decline":
                    b.decline(aid)  # type: ignore[arg-type]
                elif not b.expire(now):
                    return booking_view(b), self.head()
                to_save += self._release(b, capture=0, outcome="released")
            elif action == "cancel":
                refunded, forfeited = b.cancel(aid, kw.get("reason", ""), now)  # type: ignore[arg-type]
                to_save += self._release(b, capture=forfeited, outcome="cancelled")
                extra = {"refunded_minutes": refunded, "forfeited_minutes": forfeited}
            elif action == "withdraw":
                if not b.withdraw(kw.get("reason", ""), now):
                    return booking_view(b), self.head()
                to_save += self._release(b, capture=0, outcome="released")
            elif action == "complete":
                b.complete(aid, now, auto=actor is None)
                to_save += self._settle_only(b, capture=b.duration_minutes, outcome="captured")
            elif action == "no_show":
                refund = b.no_show(aid, now)  # type: ignore[arg-type]
                to_save += self._release(b, capture=b.duration_minutes - refund, outcome="no_show")
            elif action == "propose":
                tutor = self._profile(b.tutor_id)
                new_start: datetime = kw["start"].astimezone(UTC)
                self._check_time(tutor, new_start, b.duration_minutes, now)
                for c in self._calendars(b.tutor_id, new_start, new_start + timedelta(minutes=b.duration_minutes)):
                    c.reserve(bid, new_start, new_start + timedelta(minutes=b.duration_minutes))  # conflict check only
                    c.collect_events()
                b.propose(aid, new_start)  # type: ignore[arg-type]
            elif action in ("accept", "reject"):
                old = (b.start, b.end)
                proposal = b.answer_reschedule(aid, action == "accept")  # type: ignore[arg-type]
                if action == "accept":
                    tutor = self._profile(b.tutor_id)
                    self._check_time(tutor, proposal["start"], b.duration_minutes, now)
                    olds = self._calendars(b.tutor_id, *old)
                    for c in olds:
                        c.release(bid)
                    news = {c.id: c for c in olds}
                    for c in self._calendars(b.tutor_id, proposal["start"], proposal["end"]):
                        c = news.get(c.id, c)
                        c.reserve(bid, proposal["start"], proposal["end"])
                        news[c.id] = c
                    to_save += list(news.values())
            else:
                raise ValidationFailed([("action", "unknown")])
            position = self.record(*to_save)
            body = booking_view(b)
            if extra:
                return {"booking": body, **extra}, position
            return body, position

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

    def act(self, actor: Account | None, booking_id: UUID, action: str, **kw: Any) -> tuple[dict[str, Any], int]:
        """Run a lifecycle action (confirm, decline, cancel, propose, accept, reject, complete, no_show, expire;
        withdraw: the platform cancels for a tutor who can no longer teach)."""
        return self._transition(booking_id, actor, action, **kw)

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
                if inbox.remind(str(b.id), _z(b.start)):
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
            "created_at": _z(r["created_at"]) if r else None,
            "response": {"text": resp["text"], "created_at": _z(resp["created_at"])} if resp else None,
        }
