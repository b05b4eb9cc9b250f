"""Earnings context: TutorPayouts, one per tutor; payouts never exceed what the tutor has earned."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, ValidationFailed
from domain.ids import derived_id


class PayoutExceedsPayable(DomainError):
    """The payout is larger than what the tutor is owed."""


class TutorPayouts(Aggregate):
    """Accrued earnings and recorded payouts per currency."""

    @event("Opened")
    def __init__(self, tutor_id: UUID) -> None:
        self.tutor_id = tutor_id
        self.earned: dict[str, int] = {}
        self.paid: dict[str, int] = {}
        self.bookings: list[str] = []

    @staticmethod
    def create_id(tutor_id: UUID) -> UUID:
        """One payouts stream per tutor."""
        return derived_id("tutor-payouts", str(tutor_id))

    def payable(self, currency: str) -> int:
        """Earned and not yet paid out."""
        return self.earned.get(currency, 0) - self.paid.get(currency, 0)

    def accrue(self, booking_id: str, amount: int, currency: str) -> None:
        """A captured booking's net earning; once per booking."""
        if booking_id in self.bookings or amount <= 0:
            return
        self._accrued(tutor_id=str(self.tutor_id), booking_id=booking_id, amount=amount, currency=currency)

    @event("EarningAccrued")
    def _accrued(self, tutor_id: str, booking_id: str, amount: int, currency: str) -> None:
        self.earned[currency] = self.earned.get(currency, 0) + amount
        self.bookings.append(booking_id)

    def pay_out(self, payout_id: str, amount: int, currency: str, reference: str) -> dict[str, Any]:
        """Record money sent to the tutor, never more than payable."""
        if amount <= 0:
            raise ValidationFailed([("amount.amount", "more than 0")])
        if not reference.strip() or len(reference) > 200:
            raise ValidationFailed([("reference", "1 to 200 characters")])
        if amount > self.payable(currency):
            raise PayoutExceedsPayable(f"payable is {self.payable(currency)} {currency}")
        self._paid(
            tutor_id=str(self.tutor_id),
            payout_id=payout_id,
            amount=amount,
            currency=currency,
            reference=reference.strip(),
        )
        return {
            "id": payout_id,
            "tutor_id": str(self.tutor_id),
            "amount": {"amount": amount, "currency": currency},
            "reference": reference.strip(),
        }

    @event("PayoutRecorded")
    def _paid(self, tutor_id: str, payout_id: str, amount: int, currency: str, reference: str) -> None:
        self.paid[currency] = self.paid.get(currency, 0) + amount
