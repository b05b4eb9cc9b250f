"""Money: platform settings, package purchases through Stripe, credits, refunds and payouts."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any
from uuid import UUID

import stripe
from eventsourcing.application import AggregateNotFoundError

from application.accounts import Account
from application.clock import Clock
from application.settings import Settings
from application.settlement import Settlement
from application.store import EventStoreApp, Loaded
from domain.credits import CreditAccount, HoldState
from domain.errors import DomainError, NotFound
from domain.payouts import TutorPayouts
from domain.platform import PACKAGE_SIZES, SETTINGS_ID, PlatformSettings
from domain.purchase import NothingToRefund, PackageOffer, Purchase, package_offer
from domain.tutor import TutorNotBookable, TutorProfile


class PaymentProviderError(DomainError):
    """The payment provider could not be reached or refused the request."""


class BadWebhook(DomainError):
    """The webhook is unsigned, wrongly signed or not JSON."""


def purchase_view(p: Purchase) -> dict[str, Any]:
    """The contract's purchase shape."""
    return {
        "id": str(p.id),
        "tutor_id": str(p.tutor_id),
        "lessons": p.lessons,
        "price": {"amount": p.amount, "currency": p.currency},
        "status": p.status,
        "payment_intent_id": p.payment_intent_id,
    }


class Money(EventStoreApp):
    """Settings, purchases, credit accounts and payouts.

    Every command reads: load (`command`, application/store.py) -> the aggregates' own methods -> `record`; the
    Stripe calls happen before it (a rerun on a version clash must not pay or refund twice)."""

    _stripe: stripe.StripeClient | None = None

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        super().__init__(settings, clock)
        self.settlement = Settlement(self)

    @property
    def stripe(self) -> stripe.StripeClient:
        """The Stripe SDK client (a local Stripe-compatible server when STRIPE_API_BASE is set)."""
        if self._stripe is None:
            if not self.settings.stripe_api_key:
                raise PaymentProviderError("payments are not configured (STRIPE_API_KEY)")
            base: Any = {"api": self.settings.stripe_api_base} if self.settings.stripe_api_base else None
            self._stripe = stripe.StripeClient(self.settings.stripe_api_key, base_addresses=base, max_network_retries=2)
        return self._stripe

    # ------------------------------------------------------------------------------------------ settings

    def platform(self) -> PlatformSettings:
        """Current platform settings (the defaults as version 1 until changed)."""
        try:
            s: Any = self.repository.get(SETTINGS_ID)
        except AggregateNotFoundError:
            return PlatformSettings.defaults()
        return s if isinstance(s, PlatformSettings) else PlatformSettings.defaults()

    def change_settings(self, changes: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Record a new settings version."""

        def change(got: Loaded) -> tuple[dict[str, Any], int]:
            s = got.get(PlatformSettings, SETTINGS_ID) or PlatformSettings.defaults()
            s.change(changes)
            return s.view(), self.record(s)

        return self.command(change, changes=[SETTINGS_ID])

    # ---------------------------------------------------------------------------------------- purchases

    def _tutor(self, tutor_id: UUID) -> TutorProfile:
        try:
            t: Any = self.repository.get(TutorProfile.create_id(tutor_id))
        except AggregateNotFoundError:
            raise TutorNotBookable("this tutor cannot be booked") from None
        if not isinstance(t, TutorProfile):
            raise TutorNotBookable("this tutor cannot be booked")
        t.check_bookable()
        return t

    def buy(self, actor: Account, tutor_id: UUID, lessons: int) -> tuple[dict[str, Any], int]:
        """Price a package, open a Stripe PaymentIntent for it and record the purchase awaiting payment."""
        tutor = self._tutor(tutor_id)
        settings = self.platform()
        if tutor.hourly_rate is None:
            raise TutorNotBookable("this tutor has no rate")
        offer = package_offer(
            lessons,
            int(tutor.hourly_rate["amount"]),
            str(tutor.hourly_rate["currency"]),
            settings.values["package_discount_bps"],
        )
        purchase_id = uuid.uuid4()
        try:
            intent = self.stripe.payment_intents.create(
                params={
                    "amount": offer.amount,
                    "currency": offer.currency.lower(),
                    "metadata": {
                        "purchase_id": str(purchase_id),
                        "student_id": str(actor.user_id),
                        "tutor_id": str(tutor_id),
                        "lessons": str(lessons),
                    },
                }
            )
        except stripe.StripeError as e:
            raise PaymentProviderError(f"could not create the payment: {e.user_message or type(e).__name__}") from e
        purchase = Purchase(
            purchase_id=purchase_id,
            student_id=actor.user_id,
            tutor_id=tutor_id,
            lessons=lessons,
            minutes=offer.minutes,
            amount=offer.amount,
            currency=offer.currency,
            discount_bps=offer.discount_bps,
            settings_version=settings.settings_version,
            credit_validity_days=int(settings.values["credit_validity_days"]),
            payment_intent_id=intent.id,
        )
        position = self.record(
            purchase,
            side_writes=[
                (
                    "INSERT INTO payment_intents (payment_intent_id, purchase_id) VALUES (%s, %s)",
                    (intent.id, purchase_id),
                )
            ],
        )
        return {**purchase_view(purchase), "client_secret": intent.client_secret}, position

    def package_offers(self, hourly_rate: int, currency: str) -> list[PackageOffer]:
        """Every package size of a tutor at `hourly_rate`, priced as `buy` would price it now (the settings in force)."""
        discounts = self.platform().values["package_discount_bps"]
        return [package_offer(lessons, hourly_rate, currency, discounts) for lessons in PACKAGE_SIZES]

    def purchase(self, actor: Account, purchase_id: UUID) -> dict[str, Any]:
        """One purchase: its student, or staff (the route lets no other role this far, so that nobody learns whether
        an id exists from a 403)."""
        p = self._purchase(purchase_id)
        if actor.role == "student" and p.student_id != actor.user_id:
            raise NotFound("no such purchase")
        return purchase_view(p)

    def _purchase(self, purchase_id: UUID) -> Purchase:
        try:
            p: Any = self.repository.get(purchase_id)
        except AggregateNotFoundError:
            raise NotFound("no such purchase") from None
        if not isinstance(p, Purchase):
            raise NotFound("no such purchase")
        return p

    def _purchase_for_intent(self, payment_intent_id: str) -> UUID | None:
        with self.connection() as conn:
            row = conn.execute(
                "SELECT purchase_id FROM payment_intents WHERE payment_intent_id = %s", (payment_intent_id,)
            ).fetchone()
        return row["purchase_id"] if row else None

    # ----------------------------------------------------------------------------------------- webhooks

    def webhook(self, payload: bytes, signature: str) -> int:
        """Verify a Stripe webhook and apply it; repeats and reordering change nothing twice."""
        secret = self.settings.stripe_webhook_secret
        if not secret:
            raise BadWebhook("webhooks are not configured (STRIPE_WEBHOOK_SECRET)")
        try:
            stripe.Webhook.construct_event(payload, signature, secret)  # verifies the signature and its age
            raw = json.loads(payload)
            if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
                raise ValueError("not a Stripe event")
            obj = (raw.get("data") or {}).get("object") or {}
            kind = raw["type"]
            if kind == "payment_intent.succeeded":
                args: tuple[Any, ...] = (str(obj["id"]), int(obj.get("amount_received") or obj.get("amount") or 0))
            elif kind == "payment_intent.payment_failed":
                args = (str(obj["id"]), str((obj.get("last_payment_error") or {}).get("message", "failed")))
            elif kind == "charge.refunded":
                args = (str(obj.get("payment_intent")), int(obj.get("amount_refunded") or 0), str(obj.get("id")))
            else:
                return self.head()
        except stripe.SignatureVerificationError:
            raise BadWebhook("invalid webhook: SignatureVerificationError") from None
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise BadWebhook(f"invalid webhook: {type(e).__name__}") from None
        if kind == "payment_intent.succeeded":
            return self._paid(*args)
        if kind == "payment_intent.payment_failed":
            return self._failed(*args)
        return self._refund_reported(*args)

    def _paid(self, payment_intent_id: str, amount_received: int) -> int:
        purchase_id = self._purchase_for_intent(payment_intent_id)
        if purchase_id is None:
            return self.head()  # not ours (another integration on the same Stripe account)

        def pay(got: Loaded) -> int:
            p = got.need(Purchase, purchase_id, "no such purchase")
            if not p.pay(self.now(), amount_received):
                return self.head()
            account = self.settlement.account(p.student_id)
            expires = self.now() + timedelta(days=p.credit_validity_days)
            account.grant(str(p.id), str(p.id), str(p.tutor_id), p.minutes, p.amount, p.currency, expires)
            self._apply_reported_refund(p, account, "reported-before-payment")
            return self.record(p, account)

        return self.command(pay, changes=[purchase_id])

    def _failed(self, payment_intent_id: str, reason: str) -> int:
        purchase_id = self._purchase_for_intent(payment_intent_id)
        if purchase_id is None:
            return self.head()

        def fail(got: Loaded) -> int:
            p = got.need(Purchase, purchase_id, "no such purchase")
            p.payment_failed(reason)
            return self.record(p)

        return self.command(fail, changes=[purchase_id])

    def _refund_reported(self, payment_intent_id: str, total_refunded: int, charge_id: str) -> int:
        purchase_id = self._purchase_for_intent(payment_intent_id)
        if purchase_id is None:
            return self.head()

        def report(got: Loaded) -> int:
            p = got.need(Purchase, purchase_id, "no such purchase")
            p.report_refunded(total_refunded)
            account = self.settlement.account(p.student_id)
            if p.status in ("paid", "refunded"):
                self._apply_reported_refund(p, account, charge_id)
            return self.record(p, account)

        return self.command(report, changes=[purchase_id])

    @staticmethod
    def _apply_reported_refund(p: Purchase, account: CreditAccount, ref: str) -> None:
        owed = p.reported_refunded - p.refunded_amount
        if owed > 0 and str(p.id) in account.lots:
            minutes, removed = account.refund(str(p.id), owed)
            # What could not be removed (already used or held) is still refunded by Stripe: the ledger writes it off.
            p.refunded(owed, minutes, ref, removed)

    # ------------------------------------------------------------------------------------------ refunds

    def refund_unused(self, purchase_id: UUID) -> tuple[dict[str, Any], int]:
        """Refund through Stripe the unused (not used, not held) credit of a paid package, and remove it.

        One refund of a purchase at a time (a session advisory lock held across the Stripe call): two clicks
        must not both ask Stripe for the same unused credit."""
        with self.connection() as lock:
            lock.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (f"refund:{purchase_id}",))
            try:
                return self._refund_unused(purchase_id)
            finally:
                lock.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (f"refund:{purchase_id}",))

    def _refund_unused(self, purchase_id: UUID) -> tuple[dict[str, Any], int]:
        p = self._purchase(purchase_id)
        account = self.settlement.account(p.student_id)
        lot = account.lots.get(str(p.id))
        if lot is None or lot.value_remaining <= 0 or lot.minutes_remaining <= 0:
            raise NothingToRefund("nothing left to refund")
        value = lot.value_remaining
        try:
            refund = self.stripe.refunds.create(params={"payment_intent": p.payment_intent_id, "amount": value})
        except stripe.StripeError as e:
            raise PaymentProviderError(f"could not refund: {e.user_message or type(e).__name__}") from e

        account_id = CreditAccount.create_id(p.student_id)

        def remove(got: Loaded) -> tuple[dict[str, Any], int]:
            purchase = got.need(Purchase, purchase_id, "no such purchase")
            acc = got.get(CreditAccount, account_id) or CreditAccount(student_id=purchase.student_id)
            minutes, amount = acc.refund(str(purchase.id), value)
            purchase.refunded(amount, minutes, str(refund.id))
            body = {
                "purchase": purchase_view(purchase),
                "refunded": {"amount": amount, "currency": purchase.currency},
                "minutes_removed": minutes,
            }
            return body, self.record(purchase, acc)

        return self.command(remove, changes=[purchase_id, account_id])

    # ------------------------------------------------------------------------------------------ payouts

    def pay_out(self, tutor_id: UUID, amount: int, currency: str, reference: str) -> tuple[dict[str, Any], int]:
        """Record a payout to a tutor (never more than payable)."""

        payouts_id = TutorPayouts.create_id(tutor_id)

        def pay(got: Loaded) -> tuple[dict[str, Any], int]:
            t = got.get(TutorPayouts, payouts_id) or TutorPayouts(tutor_id=tutor_id)
            body = t.pay_out(str(uuid.uuid4()), amount, currency, reference)
            return body, self.record(t)

        return self.command(pay, changes=[payouts_id])

    # ---------------------------------------------------------------------------------- holds (bookings)

    def hold(
        self, student_id: UUID, booking_id: str, tutor_id: UUID, minutes: int, commission_bps: int
    ) -> tuple[CreditAccount, int]:
        """Hold a student's credit for a booking on its own (bookings save the hold with the booking instead)."""

        account_id = CreditAccount.create_id(student_id)

        def hold(got: Loaded) -> tuple[CreditAccount, int]:
            account = got.get(CreditAccount, account_id) or CreditAccount(student_id=student_id)
            account.hold(booking_id, str(tutor_id), minutes, self.now(), commission_bps)
            return account, self.record(account)

        return self.command(hold, changes=[account_id], attempts=20)

    def resolve(
        self, student_id: UUID, booking_id: str, capture_minutes: int, outcome: HoldState
    ) -> tuple[dict[str, Any], int]:
        """Capture part of a hold (tutor net + commission) and release the rest, exactly once."""

        account_id = CreditAccount.create_id(student_id)

        def settle(got: Loaded) -> tuple[dict[str, Any], int]:
            account = got.get(CreditAccount, account_id) or CreditAccount(student_id=student_id)
            result, payouts = self.settlement.settle(account, booking_id, capture_minutes, outcome)
            return result, self.record(account, payouts)

        return self.command(settle, changes=[account_id], attempts=20)

    def expire_credits(self, student_id: UUID) -> int:
        """Expire the student's lots that are past their date (idempotent)."""

        account_id = CreditAccount.create_id(student_id)

        def expire(got: Loaded) -> int:
            account = got.get(CreditAccount, account_id) or CreditAccount(student_id=student_id)
            if not account.expire(self.now()):
                return self.head()
            return self.record(account)

        return self.command(expire, changes=[account_id])

    def warn_expiring_credits(self, student_id: UUID) -> int:
        """Record the warning of the student's credit that expires within a week (once per lot)."""

        account_id = CreditAccount.create_id(student_id)

        def warn(got: Loaded) -> int:
            account = got.get(CreditAccount, account_id) or CreditAccount(student_id=student_id)
            if not account.warn_expiring(self.now()):
                return self.head()
            return self.record(account)

        return self.command(warn, changes=[account_id])
