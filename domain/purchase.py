"""Package purchases: N lessons with one tutor, paid through Stripe, granted as credit exactly once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, ValidationFailed
from domain.money import bps_of
from domain.platform import PACKAGE_SIZES


class NothingToRefund(DomainError):
    """No unused credit is left to refund."""


def package_price(lessons: int, hourly_rate: int, discount_bps: int) -> int:
    """lessons × hourly rate × (10000 − discount) / 10000, rounded half up to the minor unit."""
    if lessons not in PACKAGE_SIZES:
        raise ValidationFailed([("lessons", "1, 5, 10 or 20")])
    return bps_of(lessons * hourly_rate, 10_000 - discount_bps)


@dataclass(frozen=True, slots=True)
class PackageOffer:
    """A package as it sells at one moment: what a purchase records and charges, and what the catalog shows."""

    lessons: int
    minutes: int
    discount_bps: int
    amount: int
    currency: str


def package_offer(lessons: int, hourly_rate: int, currency: str, discounts: Mapping[str, int]) -> PackageOffer:
    """`lessons` one-hour lessons at `hourly_rate` under the settings' package discounts (by size: {"10": 500}): the
    one pricing of a package, so the catalog shows exactly what a purchase charges."""
    discount = int(discounts.get(str(lessons), 0))
    return PackageOffer(lessons, lessons * 60, discount, package_price(lessons, hourly_rate, discount), currency)


class PurchaseStatus(StrEnum):
    """awaiting_payment -> paid -> refunded (equal to the contract's strings)."""

    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    REFUNDED = "refunded"


class Purchase(Aggregate):
    """awaiting_payment -> paid -> refunded."""

    @event("Created")
    def __init__(
        self,
        purchase_id: UUID,
        student_id: UUID,
        tutor_id: UUID,
        lessons: int,
        minutes: int,
        amount: int,
        currency: str,
        discount_bps: int,
        settings_version: int,
        credit_validity_days: int,
        payment_intent_id: str,
    ) -> None:
        self.student_id = student_id
        self.tutor_id = tutor_id
        self.lessons = lessons
        self.minutes = minutes
        self.amount = amount
        self.currency = currency
        self.payment_intent_id = payment_intent_id
        self.credit_validity_days = credit_validity_days
        self.settings_version = settings_version
        self.discount_bps = discount_bps
        self.status = PurchaseStatus.AWAITING_PAYMENT
        self.refunded_amount = 0
        self.reported_refunded = 0

    @staticmethod
    def create_id(purchase_id: UUID) -> UUID:
        """The id is chosen before the payment provider is called (it goes into the PaymentIntent's metadata)."""
        return purchase_id

    def pay(self, paid_at: datetime, amount_received: int) -> bool:
        """Record payment once (a repeat delivery returns False and records nothing)."""
        if self.status is not PurchaseStatus.AWAITING_PAYMENT:
            return False
        self._paid(paid_at=paid_at, amount_received=amount_received)
        return True

    @event("Paid")
    def _paid(self, paid_at: datetime, amount_received: int) -> None:
        self.status = PurchaseStatus.PAID
        self.paid_at = paid_at

    def payment_failed(self, reason: str) -> None:
        """Record a failed payment attempt (the student may try again)."""
        if self.status is PurchaseStatus.AWAITING_PAYMENT:
            self._failed(reason=reason[:500])

    @event("PaymentFailed")
    def _failed(self, reason: str) -> None:
        pass

    def report_refunded(self, total_refunded: int) -> int:
        """Stripe says this much of the charge is refunded in all; returns the part not yet accounted for."""
        if total_refunded > self.reported_refunded:
            self._refund_reported(total_refunded=total_refunded)
        return max(0, self.reported_refunded - self.refunded_amount)

    @event("RefundReported")
    def _refund_reported(self, total_refunded: int) -> None:
        self.reported_refunded = total_refunded

    def refunded(self, amount: int, minutes: int, refund_id: str, credit_removed: int | None = None) -> None:
        """Stripe refunded `amount`; credit worth `credit_removed` (default: all of it) was removed for it."""
        self._refunded(
            amount=amount,
            minutes=minutes,
            refund_id=refund_id,
            credit_removed=amount if credit_removed is None else credit_removed,
            currency=self.currency,
        )

    @event("Refunded")
    def _refunded(
        self, amount: int, minutes: int, refund_id: str, credit_removed: int | None = None, currency: str = ""
    ) -> None:
        self.refunded_amount += amount
        self.reported_refunded = max(self.reported_refunded, self.refunded_amount)
        self.status = PurchaseStatus.REFUNDED
