"""Scheduling context: the Booking lifecycle and the per-tutor-week Calendar that refuses overlaps.

pending -> confirmed | declined | expired | cancelled; confirmed -> cancelled | completed | no_show (and
rescheduled: same booking, new time); completed -> reviewed (once) -> responded (once). Every transition is an
event with its actor; the money side (hold, capture, release) is on the student's CreditAccount, saved in the
same transaction by the application."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.booking_values import Party, Proposal, Review, ReviewResponse
from domain.errors import DomainError, Forbidden, ValidationFailed, WrongStatus
from domain.ids import derived_id
from domain.money import bps_of
from domain.platform import TIMING_HOURS, Policy


class BookingStatus(StrEnum):
    """Where a booking is in its lifecycle (equal to the strings the read models and the contract use)."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    DECLINED = "declined"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"


DURATIONS = (30, 60, 90, 120)
ACTIVE = (BookingStatus.PENDING, BookingStatus.CONFIRMED)
# a lesson has a meeting room from its confirmation on, until it is called off
MEETS = (BookingStatus.CONFIRMED, BookingStatus.COMPLETED, BookingStatus.NO_SHOW)
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
NO_SHOW_AFTER = timedelta(minutes=10)


def _timing(policy: Policy | Mapping[str, Any], name: str) -> timedelta:
    hours = getattr(policy, name) if isinstance(policy, Policy) else policy.get(name, TIMING_HOURS)
    return timedelta(hours=int(hours))


def lapses_at(requested_at: datetime, start: datetime, policy: Policy | Mapping[str, Any]) -> datetime:
    """When an unanswered request lapses: its pending expiry after the request, or its start if sooner (`policy` as
    the booking keeps it, or as the read models copy it from the event)."""
    return min(requested_at + _timing(policy, "pending_expiry_hours"), start)


def completes_by_itself_at(end: datetime, policy: Policy | Mapping[str, Any]) -> datetime:
    """When a confirmed lesson nobody marked completes by itself: its auto-complete delay after its end."""
    return end + _timing(policy, "auto_complete_hours")


def meets(status: str, meeting_secret: str | None) -> bool:
    """Whether a lesson has its meeting room now: from its confirmation on, not once declined, expired or cancelled
    (`status` and `meeting_secret` as the booking keeps them, or as the read model copies them)."""
    return meeting_secret is not None and status in MEETS


class BookingConflict(DomainError):
    """The tutor already has a booking at that time."""


class OutsideAvailability(DomainError):
    """The time is not on the :00/:30 grid inside the tutor's availability."""


class TooShortNotice(DomainError):
    """The time is within the tutor's minimum notice."""


class Booking(Aggregate):
    """One lesson between a student and a tutor."""

    @event("Requested")
    def __init__(
        self,
        student_id: UUID,
        tutor_id: UUID,
        subject_id: UUID,
        start: datetime,
        end: datetime,
        duration_minutes: int,
        note: str,
        policy: Policy,
        settings_version: int,
        requested_at: datetime,
    ) -> None:
        self.student_id = student_id
        self.tutor_id = tutor_id
        self.subject_id = subject_id
        self.start = start
        self.end = end
        self.duration_minutes = duration_minutes
        self.note = note
        self.policy = policy
        self.settings_version = settings_version
        self.requested_at = requested_at
        self.status = BookingStatus.PENDING
        self.pending_reschedule: Proposal | None = None
        self.review: Review | None = None
        self.review_response: ReviewResponse | None = None
        self.refunded_minutes = 0
        self.forfeited_minutes = 0
        self.meeting_secret: str | None = None

    @classmethod
    def request(
        cls,
        student_id: UUID,
        tutor_id: UUID,
        subject_id: UUID,
        start: datetime,
        duration_minutes: int,
        note: str,
        policy: Policy,
        settings_version: int,
        now: datetime,
    ) -> Booking:
        """A student asks for a lesson."""
        cls.check_request(duration_minutes, note)
        return cls(
            student_id=student_id,
            tutor_id=tutor_id,
            subject_id=subject_id,
            start=start,
            end=start + timedelta(minutes=duration_minutes),
            duration_minutes=duration_minutes,
            note=note,
            policy=policy,
            settings_version=settings_version,
            requested_at=now,
        )

    @staticmethod
    def check_request(duration_minutes: int, note: str) -> None:
        """A request's own rules, checked before anything is read."""
        if duration_minutes not in DURATIONS:
            raise ValidationFailed([("duration_minutes", "30, 60, 90 or 120")])
        if len(note) > 2000:
            raise ValidationFailed([("note", "at most 2000 characters")])

    def _party(self, actor_id: UUID | None) -> Party:
        """The actor's side of the booking (the platform, None, is neither)."""
        if actor_id == self.student_id:
            return Party.STUDENT
        if actor_id == self.tutor_id:
            return Party.TUTOR
        raise Forbidden("not a participant of this booking")

    def _need(self, *statuses: BookingStatus) -> None:
        if self.status not in statuses:
            raise WrongStatus(f"booking is {self.status}")

    def confirm(
        self, actor_id: UUID | None, meeting_secret: str, auto: bool = False, now: datetime | None = None
    ) -> None:
        """The tutor (or auto-confirm) accepts a pending request, not once it has lapsed (even if the sweep that
        records the expiry has not run yet); `meeting_secret` (random, URL-safe, made by the caller) names the
        lesson's meeting room for good, reschedules included."""
        if not auto and self._party(actor_id) is not Party.TUTOR:
            raise Forbidden("only the tutor confirms")
        self._need(BookingStatus.PENDING)
        if now is not None and now >= self.expires_at:
            raise WrongStatus("the request has expired")
        if len(meeting_secret) < 16 or not _URLSAFE.issuperset(meeting_secret):
            raise ValueError("a meeting secret is at least 16 URL-safe characters")
        self._confirmed(auto=auto, meeting_secret=meeting_secret)

    class Confirmed(Aggregate.Event):
        """v2 records the meeting room's secret; v1 (before meeting links) had none."""

        auto: bool
        meeting_secret: str | None
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["meeting_secret"] = None  # confirmed before meeting links: no room

    @event(Confirmed)
    def _confirmed(self, auto: bool, meeting_secret: str | None) -> None:
        self.status = BookingStatus.CONFIRMED
        self.meeting_secret = meeting_secret

    def decline(self, actor_id: UUID) -> None:
        """The tutor turns a pending request down (the hold is released)."""
        if self._party(actor_id) is not Party.TUTOR:
            raise Forbidden("only the tutor declines")
        self._need(BookingStatus.PENDING)
        self._declined()

    @event("Declined")
    def _declined(self) -> None:
        self.status = BookingStatus.DECLINED

    def expire(self, now: datetime) -> bool:
        """An unanswered request lapses at requested_at + pending expiry or at its start (whichever first)."""
        if self.status is not BookingStatus.PENDING or now < self.expires_at:
            return False
        self._expired()
        return True

    @property
    def expires_at(self) -> datetime:
        """When an unanswered request lapses."""
        return lapses_at(self.requested_at, self.start, self.policy)

    @property
    def completes_at(self) -> datetime:
        """When the lesson completes by itself if nobody marked it (`complete(..., auto=True)` from then on)."""
        return completes_by_itself_at(self.end, self.policy)

    @event("Expired")
    def _expired(self) -> None:
        self.status = BookingStatus.EXPIRED

    def cancellation_terms(self, actor_id: UUID, now: datetime) -> tuple[Party, int]:
        """(who cancels, minutes to refund): early or tutor cancellations refund all, late ones the policy share."""
        party = self._party(actor_id)
        self._need(*ACTIVE)
        if party is Party.STUDENT and now >= self.start:
            raise WrongStatus("the lesson has started: it is completed or marked a no-show, not cancelled")
        total = self.duration_minutes
        window = timedelta(hours=self.policy.cancellation_window_hours)
        if party is Party.TUTOR or self.start - now > window:
            return party, total
        return party, bps_of(total, self.policy.late_cancel_refund_bps)

    def cancel(self, actor_id: UUID, reason: str, now: datetime) -> tuple[int, int]:
        """Cancel a pending or confirmed booking; returns (refunded, forfeited) minutes."""
        party, refund = self.cancellation_terms(actor_id, now)
        if len(reason) > 2000:
            raise ValidationFailed([("reason", "at most 2000 characters")])
        self._cancelled(
            by=party, reason=reason, refunded_minutes=refund, forfeited_minutes=self.duration_minutes - refund
        )
        return refund, self.duration_minutes - refund

    def withdraw(self, reason: str, now: datetime) -> bool:
        """The platform cancels a lesson that has not started because its tutor can no longer teach (account
        deactivated or deleted): the student gets every minute back. False when there is nothing to withdraw."""
        if self.status not in ACTIVE or now >= self.start:
            return False
        self._cancelled(by="platform", reason=reason, refunded_minutes=self.duration_minutes, forfeited_minutes=0)
        return True

    @event("Cancelled")
    def _cancelled(self, by: str, reason: str, refunded_minutes: int, forfeited_minutes: int) -> None:
        self.status = BookingStatus.CANCELLED
        self.pending_reschedule = None
        self.refunded_minutes = refunded_minutes
        self.forfeited_minutes = forfeited_minutes

    def propose(self, actor_id: UUID, start: datetime) -> None:
        """Either party proposes a new time for a confirmed booking."""
        party = self._party(actor_id)
        self._need(BookingStatus.CONFIRMED)
        if start == self.start:
            raise ValidationFailed([("start", "that is the current time")])
        self._proposed(start=start, end=start + timedelta(minutes=self.duration_minutes), proposed_by=party)

    @event("RescheduleProposed")
    def _proposed(self, start: datetime, end: datetime, proposed_by: Party) -> None:
        self.pending_reschedule = Proposal(start, end, proposed_by)

    def answer_reschedule(self, actor_id: UUID, accept: bool) -> Proposal:
        """The other party accepts (the booking moves) or rejects a proposal; returns the proposal."""
        party = self._party(actor_id)
        self._need(BookingStatus.CONFIRMED)
        proposal = self.pending_reschedule
        if proposal is None:
            raise WrongStatus("no reschedule proposal is pending")
        if proposal.proposed_by is party:
            raise Forbidden("the other party answers a proposal")
        if accept:
            self._rescheduled(start=proposal.start, end=proposal.end, previous_start=self.start, by=party)
        else:
            self._reschedule_rejected(by=party)
        return proposal

    @event("Rescheduled")
    def _rescheduled(self, start: datetime, end: datetime, previous_start: datetime, by: str) -> None:
        self.start = start
        self.end = end
        self.pending_reschedule = None

    @event("RescheduleRejected")
    def _reschedule_rejected(self, by: str) -> None:
        self.pending_reschedule = None

    def complete(self, actor_id: UUID | None, now: datetime, auto: bool = False) -> None:
        """The lesson happened: the tutor marks it after the end, or it completes by itself later."""
        if not auto and self._party(actor_id) is not Party.TUTOR:
            raise Forbidden("only the tutor completes")
        self._need(BookingStatus.CONFIRMED)
        if now < self.end:
            raise WrongStatus("the lesson has not ended yet")
        if auto and now < self.completes_at:
            raise WrongStatus("the lesson completes by itself only after its auto-complete delay")
        self._completed(auto=auto)

    @event("Completed")
    def _completed(self, auto: bool) -> None:
        self.status = BookingStatus.COMPLETED
        self.pending_reschedule = None

    def no_show(self, actor_id: UUID, now: datetime) -> int:
        """The tutor marks the student absent from start + 10 min; returns the minutes refunded by policy."""
        if self._party(actor_id) is not Party.TUTOR:
            raise Forbidden("only the tutor marks a no-show")
        self._need(BookingStatus.CONFIRMED)
        if now < self.start + NO_SHOW_AFTER:
            raise WrongStatus("a no-show can be marked from 10 minutes after the start")
        refund = bps_of(self.duration_minutes, self.policy.no_show_refund_bps)
        self._no_show(refunded_minutes=refund, forfeited_minutes=self.duration_minutes - refund)
        return refund

    @event("NoShowMarked")
    def _no_show(self, refunded_minutes: int, forfeited_minutes: int) -> None:
        self.status = BookingStatus.NO_SHOW
        self.refunded_minutes = refunded_minutes
        self.forfeited_minutes = forfeited_minutes

    def add_review(self, actor_id: UUID, rating: int, text: str, now: datetime) -> None:
        """The student reviews a completed booking once; reviews are immutable."""
        if self._party(actor_id) is not Party.STUDENT:
            raise Forbidden("only the student reviews")
        self._need(BookingStatus.COMPLETED)
        if self.review is not None:
            raise WrongStatus("this booking is already reviewed")
        if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
            raise ValidationFailed([("rating", "1 to 5")])
        if len(text) > 2000:
            raise ValidationFailed([("text", "at most 2000 characters")])
        self._reviewed(tutor_id=str(self.tutor_id), rating=rating, text=text.strip(), created_at=now)

    @event("Reviewed")
    def _reviewed(self, tutor_id: str, rating: int, text: str, created_at: datetime) -> None:
        self.review = Review(rating, text, created_at)

    def respond(self, actor_id: UUID, text: str, now: datetime) -> None:
        """The tutor answers the review once."""
        if self._party(actor_id) is not Party.TUTOR:
            raise Forbidden("only the tutor responds")
        if self.review is None:
            raise WrongStatus("there is no review to respond to")
        if self.review_response is not None:
            raise WrongStatus("the review already has a response")
        if not text.strip() or len(text) > 2000:
            raise ValidationFailed([("text", "1 to 2000 characters")])
        self._responded(tutor_id=str(self.tutor_id), text=text.strip(), created_at=now)

    @event("ReviewResponded")
    def _responded(self, tutor_id: str, text: str, created_at: datetime) -> None:
        self.review_response = ReviewResponse(text, created_at)


def week_of(t: datetime) -> str:
    """ISO year-week of a UTC instant, e.g. '2026-W49'."""
    y, w, _ = t.isocalendar()
    return f"{y}-W{w:02d}"


def weeks_between(start: datetime, end: datetime) -> list[str]:
    """The ISO weeks an interval touches (one or two for a lesson)."""
    out = [week_of(start)]
    last = week_of(end - timedelta(microseconds=1))
    if last != out[0]:
        out.append(last)
    return out


class Calendar(Aggregate):
    """A tutor's reservations in one ISO week: the consistency boundary that forbids overlaps."""

    @event("Opened")
    def __init__(self, tutor_id: UUID, week: str) -> None:
        self.tutor_id = tutor_id
        self.week = week
        self.slots: dict[str, list[str]] = {}

    @staticmethod
    def create_id(tutor_id: UUID, week: str) -> UUID:
        """One calendar stream per tutor and week."""
        return derived_id("calendar", str(tutor_id), week)

    def reserve(self, booking_id: str, start: datetime, end: datetime) -> None:
        """Take [start, end) for a booking, refusing any overlap with an active reservation."""
        for other, (a, b) in self.slots.items():
            if other != booking_id and datetime.fromisoformat(a) < end and start < datetime.fromisoformat(b):
                raise BookingConflict("the tutor already has a booking at that time")
        self._reserved(booking_id=booking_id, start=start.isoformat(), end=end.isoformat())

    @event("Reserved")
    def _reserved(self, booking_id: str, start: str, end: str) -> None:
        self.slots[booking_id] = [start, end]

    def release(self, booking_id: str) -> None:
        """Free a booking's time (cancelled, declined, expired or moved)."""
        if booking_id in self.slots:
            self._released(booking_id=booking_id)

    @event("Released")
    def _released(self, booking_id: str) -> None:
        self.slots.pop(booking_id, None)
