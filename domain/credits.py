"""Credits context: a student's CreditAccount holds lots (prepaid minutes with one tutor) and booking holds.

Every minute of credit is held, captured, released, expired (breakage) or refunded exactly once. Money values
are pro rata of each lot's price, rounded deterministically so a lot's parts add up to its price exactly."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, NotFound, ValidationFailed, WrongStatus
from domain.ids import derived_id
from domain.money import bps_of
from domain.values import Value

EXPIRY_WARNING = timedelta(days=7)  # a student hears of unused credit this long before it expires


class InsufficientCredit(DomainError):
    """Not enough unexpired credit with this tutor."""


class LotState(StrEnum):
    """A lot is open until its last minute expires unused or its value is refunded."""

    OPEN = "open"
    EXPIRED = "expired"
    REFUNDED = "refunded"


class HoldState(StrEnum):
    """A hold is open until its booking settles it, then keeps the outcome it was settled with."""

    OPEN = "open"
    CAPTURED = "captured"  # the lesson took place (completed): all of it is captured
    RELEASED = "released"  # declined, expired or withdrawn: all of it goes back to the lots
    CANCELLED = "cancelled"  # the policy's share of a late cancellation is captured
    NO_SHOW = "no_show"  # all but the policy's no-show refund is captured


@dataclass(frozen=True, slots=True)
class Lot(Value):
    """Prepaid minutes with one tutor, bought at `price`; what is left of them and of their value."""

    lot_id: str
    purchase_id: str
    tutor_id: str
    minutes: int
    price: int
    currency: str
    expires_at: datetime
    minutes_remaining: int
    value_remaining: int
    state: LotState = LotState.OPEN
    expiry_warned: bool = False

    def less(self, minutes: int, amount: int) -> Lot:
        """This lot with `minutes` worth `amount` taken out of it (negative numbers put them back)."""
        return replace(
            self, minutes_remaining=self.minutes_remaining - minutes, value_remaining=self.value_remaining - amount
        )


@dataclass(frozen=True, slots=True)
class Part(Value):
    """Minutes of one lot and their value, as a hold takes them and a settlement captures or releases them. The
    events record each as `{"lot_id", "minutes", "amount"}`, the shape they always had."""

    lot_id: str
    minutes: int
    amount: int


@dataclass(frozen=True, slots=True)
class Hold(Value):
    """Credit reserved for one booking until it is settled, at the commission in force when it was booked."""

    booking_id: str
    tutor_id: str
    parts: tuple[Part, ...]
    currency: str
    commission_bps: int
    state: HoldState = HoldState.OPEN


def _share(value: int, minutes: int, take: int) -> int:
    """The value of `take` of `minutes` minutes worth `value`; taking all takes exactly all."""
    return value if take >= minutes else value * take // minutes


class CreditAccount(Aggregate):
    """One per student: lots by id, holds by booking id (frozen values: a change replaces the value)."""

    @event("Opened")
    def __init__(self, student_id: UUID) -> None:
        self.student_id = student_id
        self.lots: dict[str, Lot] = {}
        self.holds: dict[str, Hold] = {}

    @staticmethod
    def create_id(student_id: UUID) -> UUID:
        """One account per student."""
        return derived_id("credit-account", str(student_id))

    # -------------------------------------------------------------------------------------------- queries

    def _usable(self, tutor_id: str, now: datetime) -> list[Lot]:
        lots = [
            lot
            for lot in self.lots.values()
            if lot.tutor_id == tutor_id and lot.minutes_remaining > 0 and lot.expires_at > now
        ]
        return sorted(lots, key=lambda lot: (lot.expires_at, lot.lot_id))

    def available(self, tutor_id: str, now: datetime) -> int:
        """Unexpired, unheld minutes with a tutor."""
        return sum(lot.minutes_remaining for lot in self._usable(tutor_id, now))

    # ------------------------------------------------------------------------------------------- commands

    def grant(
        self,
        lot_id: str,
        purchase_id: str,
        tutor_id: str,
        minutes: int,
        amount: int,
        currency: str,
        expires_at: datetime,
    ) -> bool:
        """Add a paid lot; granting the same lot again records nothing (returns False)."""
        if lot_id in self.lots:
            return False
        if minutes <= 0 or amount < 0:
            raise ValidationFailed([("minutes", "a positive number of minutes")])
        self._granted(
            student_id=str(self.student_id),
            lot_id=lot_id,
            purchase_id=purchase_id,
            tutor_id=tutor_id,
            minutes=minutes,
            amount=amount,
            currency=currency,
            expires_at=expires_at.isoformat(),
        )
        return True

    @event("CreditGranted")
    def _granted(
        self,
        student_id: str,
        lot_id: str,
        purchase_id: str,
        tutor_id: str,
        minutes: int,
        amount: int,
        currency: str,
        expires_at: str,  # recorded as ISO text with its offset (the ledger and read models copy it as it is)
    ) -> None:
        self.lots[lot_id] = Lot(
            lot_id=lot_id,
            purchase_id=purchase_id,
            tutor_id=tutor_id,
            minutes=minutes,
            price=amount,
            currency=currency,
            expires_at=datetime.fromisoformat(expires_at),
            minutes_remaining=minutes,
            value_remaining=amount,
        )

    def hold(self, booking_id: str, tutor_id: str, minutes: int, now: datetime, commission_bps: int) -> None:
        """Reserve `minutes` with a tutor for a booking, from the lots that expire first."""
        if booking_id in self.holds:
            raise WrongStatus("this booking already holds credit")
        if minutes <= 0:
            raise ValidationFailed([("minutes", "a positive number of minutes")])
        usable = self._usable(tutor_id, now)
        if usable:
            currency = usable[0].currency
            usable = [lot for lot in usable if lot.currency == currency]
        if sum(lot.minutes_remaining for lot in usable) < minutes:
            raise InsufficientCredit(f"{minutes} minutes needed with this tutor")
        parts, left = [], minutes
        for lot in usable:
            take = min(left, lot.minutes_remaining)
            parts.append(Part(lot.lot_id, take, _share(lot.value_remaining, lot.minutes_remaining, take)))
            left -= take
            if not left:
                break
        self._held(
            student_id=str(self.student_id),
            booking_id=booking_id,
            tutor_id=tutor_id,
            parts=tuple(parts),
            currency=usable[0].currency,
            commission_bps=commission_bps,
        )

    @event("CreditHeld")
    def _held(
        self,
        student_id: str,
        booking_id: str,
        tutor_id: str,
        parts: tuple[Part, ...],
        currency: str,
        commission_bps: int,
    ) -> None:
        lots = self.lots
        for p in parts:
            lots[p.lot_id] = lots[p.lot_id].less(p.minutes, p.amount)
        self.holds[booking_id] = Hold(booking_id, tutor_id, parts, currency, commission_bps)

    def resolve(self, booking_id: str, capture_minutes: int, outcome: HoldState) -> dict[str, Any]:
        """Settle a hold once: capture `capture_minutes` (tutor net + commission), release the rest."""
        hold = self.holds.get(booking_id)
        if hold is None:
            raise NotFound("no hold for this booking")
        if hold.state is not HoldState.OPEN:
            raise WrongStatus("this hold was already resolved")
        if HoldState(outcome) is HoldState.OPEN:
            raise ValueError("a settlement's outcome is not open")
        left = max(0, min(capture_minutes, sum(p.minutes for p in hold.parts)))
        captured, released = [], []
        for p in hold.parts:
            take = min(left, p.minutes)
            cap_amount = _share(p.amount, p.minutes, take) if take else 0
            if take:
                captured.append(Part(p.lot_id, take, cap_amount))
            if p.minutes - take:
                released.append(Part(p.lot_id, p.minutes - take, p.amount - cap_amount))
            left -= take
        gross = sum(c.amount for c in captured)
        commission = bps_of(gross, hold.commission_bps)
        self._resolved(
            student_id=str(self.student_id),
            booking_id=booking_id,
            tutor_id=hold.tutor_id,
            outcome=outcome,
            captured=tuple(captured),
            released=tuple(released),
            commission=commission,
            currency=hold.currency,
        )
        return {
            "captured_minutes": sum(c.minutes for c in captured),
            "released_minutes": sum(r.minutes for r in released),
            "tutor_net": gross - commission,
            "currency": hold.currency,
        }

    @event("HoldResolved")
    def _resolved(
        self,
        student_id: str,
        booking_id: str,
        tutor_id: str,
        outcome: str,
        captured: tuple[Part, ...],
        released: tuple[Part, ...],
        commission: int,
        currency: str,
    ) -> None:
        lots = self.lots
        for r in released:
            lots[r.lot_id] = lots[r.lot_id].less(-r.minutes, -r.amount)
        self.holds[booking_id] = replace(self.holds[booking_id], state=HoldState(outcome))

    def expire(self, now: datetime) -> int:
        """Turn unused minutes of expired lots into breakage; returns how many lots expired."""
        due = [
            lot
            for lot in self.lots.values()
            # whatever its state: credit released into a lot after it expired can never be used either
            if lot.minutes_remaining > 0 and lot.expires_at <= now
        ]
        for lot in sorted(due, key=lambda x: x.lot_id):
            self._expired(
                student_id=str(self.student_id),
                lot_id=lot.lot_id,
                minutes=lot.minutes_remaining,
                amount=lot.value_remaining,
                currency=lot.currency,
            )
        return len(due)

    def warn_expiring(self, now: datetime) -> int:
        """Record, once per lot, that unused credit of an open lot expires within EXPIRY_WARNING; returns how many
        lots were warned of."""
        due = [
            lot
            for lot in self.lots.values()
            if lot.state is LotState.OPEN
            and not lot.expiry_warned
            and lot.minutes_remaining > 0
            and now < lot.expires_at <= now + EXPIRY_WARNING
        ]
        for lot in sorted(due, key=lambda x: x.lot_id):
            self._expiry_warned(
                student_id=str(self.student_id),
                lot_id=lot.lot_id,
                tutor_id=lot.tutor_id,
                minutes=lot.minutes_remaining,
                expires_at=lot.expires_at.isoformat(),
            )
        return len(due)

    @event("ExpiryWarned")
    def _expiry_warned(self, student_id: str, lot_id: str, tutor_id: str, minutes: int, expires_at: str) -> None:
        self.lots[lot_id] = replace(self.lots[lot_id], expiry_warned=True)

    @event("LotExpired")
    def _expired(self, student_id: str, lot_id: str, minutes: int, amount: int, currency: str) -> None:
        self.lots[lot_id] = replace(self.lots[lot_id].less(minutes, amount), state=LotState.EXPIRED)

    def refund(self, lot_id: str, amount: int | None = None) -> tuple[int, int]:
        """Remove unused credit of a lot: all of it, or credit worth `amount`; returns (minutes, amount) removed."""
        lot = self.lots.get(lot_id)
        if lot is None:
            raise NotFound("no such credit lot")
        if lot.minutes_remaining <= 0 or lot.value_remaining <= 0:
            return 0, 0
        value = lot.value_remaining if amount is None else min(amount, lot.value_remaining)
        minutes = (
            lot.minutes_remaining
            if value >= lot.value_remaining
            else lot.minutes_remaining * value // lot.value_remaining
        )
        if value <= 0:
            return 0, 0
        self._refunded(
            student_id=str(self.student_id), lot_id=lot_id, minutes=minutes, amount=value, currency=lot.currency
        )
        return minutes, value

    @event("CreditRefunded")
    def _refunded(self, student_id: str, lot_id: str, minutes: int, amount: int, currency: str) -> None:
        lot = self.lots[lot_id].less(minutes, amount)
        self.lots[lot_id] = replace(lot, state=LotState.REFUNDED) if lot.value_remaining == 0 else lot
