"""Credits context: a student's CreditAccount holds lots (prepaid minutes with one tutor) and booking holds.

Every minute of credit is held, captured, released, expired (breakage) or refunded exactly once. Money values
are pro rata of each lot's price, rounded deterministically so a lot's parts add up to its price exactly."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, NotFound, ValidationFailed, WrongStatus
from domain.ids import derived_id
from domain.money import bps_of


class InsufficientCredit(DomainError):
    """Not enough unexpired credit with this tutor."""


def _share(value: int, minutes: int, take: int) -> int:
    """The value of `take` of `minutes` minutes worth `value`; taking all takes exactly all."""
    return value if take >= minutes else value * take // minutes


class CreditAccount(Aggregate):
    """One per student: lots by id, holds by booking id."""

    @event("Opened")
    def __init__(self, student_id: UUID) -> None:
        self.student_id = student_id
        self.lots: dict[str, dict[str, Any]] = {}
        self.holds: dict[str, dict[str, Any]] = {}

    @staticmethod
    def create_id(student_id: UUID) -> UUID:
        """One account per student."""
        return derived_id("credit-account", str(student_id))

    # -------------------------------------------------------------------------------------------- queries

    def _usable(self, tutor_id: str, now: datetime) -> list[dict[str, Any]]:
        lots = [
            lot
            for lot in self.lots.values()
            if lot["tutor_id"] == tutor_id
            and lot["minutes_remaining"] > 0
            and datetime.fromisoformat(lot["expires_at"]) > now
        ]
        return sorted(lots, key=lambda lot: (lot["expires_at"], lot["lot_id"]))

    def available(self, tutor_id: str, now: datetime) -> int:
        """Unexpired, unheld minutes with a tutor."""
        return sum(lot["minutes_remaining"] for lot in self._usable(tutor_id, now))

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
        expires_at: str,
    ) -> None:
        self.lots[lot_id] = {
            "lot_id": lot_id,
            "purchase_id": purchase_id,
            "tutor_id": tutor_id,
            "minutes": minutes,
            "price": amount,
            "currency": currency,
            "expires_at": expires_at,
            "minutes_remaining": minutes,
            "value_remaining": amount,
            "state": "open",
        }

    def hold(self, booking_id: str, tutor_id: str, minutes: int, now: datetime, commission_bps: int) -> None:
        """Reserve `minutes` with a tutor for a booking, from the lots that expire first."""
        if booking_id in self.holds:
            raise WrongStatus("this booking already holds credit")
        if minutes <= 0:
            raise ValidationFailed([("minutes", "a positive number of minutes")])
        usable = self._usable(tutor_id, now)
        if usable:
            currency = usable[0]["currency"]
            usable = [lot for lot in usable if lot["currency"] == currency]
        if sum(lot["minutes_remaining"] for lot in usable) < minutes:
            raise InsufficientCredit(f"{minutes} minutes needed with this tutor")
        parts, left = [], minutes
        for lot in usable:
            take = min(left, lot["minutes_remaining"])
            parts.append(
                {
                    "lot_id": lot["lot_id"],
                    "minutes": take,
                    "amount": _share(lot["value_remaining"], lot["minutes_remaining"], take),
                }
            )
            left -= take
            if not left:
                break
        self._held(
            student_id=str(self.student_id),
            booking_id=booking_id,
            tutor_id=tutor_id,
            parts=parts,
            currency=usable[0]["currency"],
            commission_bps=commission_bps,
        )

    @event("CreditHeld")
    def _held(
        self,
        student_id: str,
        booking_id: str,
        tutor_id: str,
        parts: list[dict[str, Any]],
        currency: str,
        commission_bps: int,
    ) -> None:
        for p in parts:
            lot = self.lots[p["lot_id"]]
            lot["minutes_remaining"] -= p["minutes"]
            lot["value_remaining"] -= p["amount"]
        self.holds[booking_id] = {
            "booking_id": booking_id,
            "tutor_id": tutor_id,
            "parts": parts,
            "currency": currency,
            "commission_bps": commission_bps,
            "state": "open",
        }

    def resolve(self, booking_id: str, capture_minutes: int, outcome: str) -> dict[str, Any]:
        """Settle a hold once: capture `capture_minutes` (tutor net + commission), release the rest."""
        hold = self.holds.get(booking_id)
        if hold is None:
            raise NotFound("no hold for this booking")
        if hold["state"] != "open":
            raise WrongStatus("this hold was already resolved")
        total = sum(p["minutes"] for p in hold["parts"])
        left = max(0, min(capture_minutes, total))
        captured, released = [], []
        for p in hold["parts"]:
            take = min(left, p["minutes"])
            cap_amount = _share(p["amount"], p["minutes"], take) if take else 0
            if take:
                captured.append({"lot_id": p["lot_id"], "minutes": take, "amount": cap_amount})
            if p["minutes"] - take:
                released.append(
                    {"lot_id": p["lot_id"], "minutes": p["minutes"] - take, "amount": p["amount"] - cap_amount}
                )
            left -= take
        gross = sum(c["amount"] for c in captured)
        commission = bps_of(gross, hold["commission_bps"])
        self._resolved(
            student_id=str(self.student_id),
            booking_id=booking_id,
            tutor_id=hold["tutor_id"],
            outcome=outcome,
            captured=captured,
            released=released,
            commission=commission,
            currency=hold["currency"],
        )
        return {
            "captured_minutes": sum(c["minutes"] for c in captured),
            "released_minutes": sum(r["minutes"] for r in released),
            "tutor_net": gross - commission,
            "currency": hold["currency"],
        }

    @event("HoldResolved")
    def _resolved(
        self,
        student_id: str,
        booking_id: str,
        tutor_id: str,
        outcome: str,
        captured: list[dict[str, Any]],
        released: list[dict[str, Any]],
        commission: int,
        currency: str,
    ) -> None:
        for r in released:
            lot = self.lots[r["lot_id"]]
            lot["minutes_remaining"] += r["minutes"]
            lot["value_remaining"] += r["amount"]
        self.holds[booking_id]["state"] = outcome

    def expire(self, now: datetime) -> int:
        """Turn unused minutes of expired lots into breakage; returns how many lots expired."""
        due = [
            lot
            for lot in self.lots.values()
            # whatever its state: credit released into a lot after it expired can never be used either
            if lot["minutes_remaining"] > 0 and datetime.fromisoformat(lot["expires_at"]) <= now
        ]
        for lot in sorted(due, key=lambda x: x["lot_id"]):
            self._expired(
                student_id=str(self.student_id),
                lot_id=lot["lot_id"],
                minutes=lot["minutes_remaining"],
                amount=lot["value_remaining"],
                currency=lot["currency"],
            )
        return len(due)

    @event("LotExpired")
    def _expired(self, student_id: str, lot_id: str, minutes: int, amount: int, currency: str) -> None:
        lot = self.lots[lot_id]
        lot["minutes_remaining"] -= minutes
        lot["value_remaining"] -= amount
        lot["state"] = "expired"

    def refund(self, lot_id: str, amount: int | None = None) -> tuple[int, int]:
        """Remove unused credit of a lot: all of it, or credit worth `amount`; returns (minutes, amount) removed."""
        lot = self.lots.get(lot_id)
        if lot is None:
            raise NotFound("no such credit lot")
        if lot["minutes_remaining"] <= 0 or lot["value_remaining"] <= 0:
            return 0, 0
        value = lot["value_remaining"] if amount is None else min(amount, lot["value_remaining"])
        minutes = (
            lot["minutes_remaining"]
            if value >= lot["value_remaining"]
            else lot["minutes_remaining"] * value // lot["value_remaining"]
        )
        if value <= 0:
            return 0, 0
        self._refunded(
            student_id=str(self.student_id), lot_id=lot_id, minutes=minutes, amount=value, currency=lot["currency"]
        )
        return minutes, value

    @event("CreditRefunded")
    def _refunded(self, student_id: str, lot_id: str, minutes: int, amount: int, currency: str) -> None:
        lot = self.lots[lot_id]
        lot["minutes_remaining"] -= minutes
        lot["value_remaining"] -= amount
        if lot["value_remaining"] == 0:
            lot["state"] = "refunded"
