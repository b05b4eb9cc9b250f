"""Money's answers: purchases, credits, earnings, refunds, the webhook's receipt, and finance (balances, the journal,
reconciliation, payouts, platform settings).

Some are built from the ready dict bodies that application/money.py, domain/platform.py and projections/reconcile.py
return (`purchase_out`, `new_purchase_out`, `purchase_refund_out`, `payout_out`, `platform_settings_out`,
`reconciliation_out`): each in this one place, from the dict's values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from api.schemas.common import MoneyOut
from domain.purchase import PackageOffer

PurchaseStatus = Literal["awaiting_payment", "paid", "refunded"]
Lessons = Literal[1, 5, 10, 20]


def _money(m: Mapping[str, Any]) -> MoneyOut:
    return MoneyOut(m["amount"], m["currency"])


class PurchaseOut(msgspec.Struct):
    """A package purchase and its payment status."""

    id: UUID
    tutor_id: UUID
    lessons: Lessons
    price: MoneyOut
    status: PurchaseStatus
    payment_intent_id: str


class NewPurchaseOut(PurchaseOut):
    """A purchase just opened: the Stripe PaymentIntent's client secret lets the client confirm the payment."""

    client_secret: str | None


def _purchase_values(v: Mapping[str, Any]) -> tuple[UUID, UUID, Lessons, MoneyOut, PurchaseStatus, str]:
    return UUID(v["id"]), UUID(v["tutor_id"]), v["lessons"], _money(v["price"]), v["status"], v["payment_intent_id"]


def purchase_out(v: Mapping[str, Any]) -> PurchaseOut:
    """A purchase from application/money.py's purchase view."""
    return PurchaseOut(*_purchase_values(v))


class PurchaseItemOut(PurchaseOut):
    """A purchase in a purchase history: the purchase and when it was made."""

    created_at: datetime


class PurchasePage(msgspec.Struct):
    """A page of purchases, newest first."""

    items: list[PurchaseItemOut]
    next_cursor: str | None


def purchase_item_out(row: Mapping[str, Any]) -> PurchaseItemOut:
    """A `purchases` read-model row (projections/purchases.py) in the purchase shape, plus `created_at`."""
    view = {
        "id": str(row["purchase_id"]),
        "tutor_id": str(row["tutor_id"]),
        "lessons": row["lessons"],
        "price": {"amount": row["amount"], "currency": row["currency"]},
        "status": row["status"],
        "payment_intent_id": row["payment_intent_id"],
    }
    return PurchaseItemOut(*_purchase_values(view), created_at=row["created_at"].astimezone(UTC))


def new_purchase_out(v: Mapping[str, Any]) -> NewPurchaseOut:
    """The answer of POST /packages/purchases, from application/money.py's `buy` body."""
    return NewPurchaseOut(*_purchase_values(v), client_secret=v["client_secret"])


class PackageOut(msgspec.Struct):
    """A package a student can buy from a tutor: lessons of 60 minutes, the discount in force and the price."""

    lessons: Lessons
    minutes: int
    discount_bps: int
    price: MoneyOut


class PackageCatalogOut(msgspec.Struct):
    """Every package size of one tutor, priced as a purchase would be now (one page: `next_cursor` is null)."""

    items: list[PackageOut]
    next_cursor: str | None


def package_catalog_out(offers: Iterable[PackageOffer]) -> PackageCatalogOut:
    """From Money.package_offers (domain/purchase.py package_offer, the pricing a purchase uses)."""
    items = [PackageOut(o.lessons, o.minutes, o.discount_bps, MoneyOut(o.amount, o.currency)) for o in offers]
    return PackageCatalogOut(items, None)


class PurchaseRefundOut(msgspec.Struct):
    """A refund of a package's unused credit: the purchase after it, what Stripe refunded and the credit removed."""

    purchase: PurchaseOut
    refunded: MoneyOut
    minutes_removed: int


def purchase_refund_out(v: Mapping[str, Any]) -> PurchaseRefundOut:
    """The answer of a refund, from application/money.py's `refund_unused` body."""
    return PurchaseRefundOut(purchase_out(v["purchase"]), _money(v["refunded"]), v["minutes_removed"])


class WebhookReceivedOut(msgspec.Struct):
    """Stripe's event was verified and applied (repeats change nothing)."""

    received: bool


class CreditLotOut(msgspec.Struct):
    """Paid credit that has not expired: what is left of it and until when."""

    id: str
    minutes_remaining: int
    expires_at: datetime


class StudentCreditOut(msgspec.Struct):
    """A student's credit with one tutor: available and held minutes, and the unexpired lots."""

    tutor_id: UUID
    minutes_available: int
    minutes_held: int
    lots: list[CreditLotOut]


class StudentCreditPage(msgspec.Struct):
    """The caller's credit, one item per tutor (one page: `next_cursor` is null)."""

    items: list[StudentCreditOut]
    next_cursor: str | None


def student_credit_page(lots: Iterable[Mapping[str, Any]], holds: Iterable[Mapping[str, Any]]) -> StudentCreditPage:
    """Per tutor, from student_credit_lots rows (open, unexpired) and sums of open student_credit_holds."""
    per: dict[UUID, StudentCreditOut] = {}

    def item(tutor_id: UUID) -> StudentCreditOut:
        return per.setdefault(tutor_id, StudentCreditOut(tutor_id, 0, 0, []))

    for r in lots:
        credit = item(r["tutor_id"])
        credit.minutes_available += r["minutes_remaining"]
        credit.lots.append(CreditLotOut(r["lot_id"], r["minutes_remaining"], r["expires_at"]))
    for h in holds:
        item(h["tutor_id"]).minutes_held += int(h["minutes"])
    return StudentCreditPage(list(per.values()), None)


class EarningsMonthOut(msgspec.Struct):
    """What a tutor earned in one month ("2026-11")."""

    month: str
    earned: MoneyOut


class TutorEarningsOut(msgspec.Struct):
    """A tutor's pending (held for open bookings), earned and paid-out money, and earnings by month."""

    pending: MoneyOut
    earned: MoneyOut
    paid_out: MoneyOut
    by_month: list[EarningsMonthOut]


def tutor_earnings_out(
    currency: str, pending: int, earned: int, paid_out: int, by_month: Mapping[str, int]
) -> TutorEarningsOut:
    """Earnings in the tutor's currency; months in order."""
    return TutorEarningsOut(
        MoneyOut(pending, currency),
        MoneyOut(earned, currency),
        MoneyOut(paid_out, currency),
        [EarningsMonthOut(m, MoneyOut(v, currency)) for m, v in sorted(by_month.items())],
    )


class AccountBalanceOut(msgspec.Struct):
    """A ledger account's balance at an instant, positive in its normal direction; `balances` (every currency) only
    when the account holds more than one."""

    account: str
    as_of: datetime
    balance: MoneyOut
    balances: list[MoneyOut] | msgspec.UnsetType = msgspec.UNSET


def account_balance_out(account: str, as_of: datetime, found: list[tuple[str, int]]) -> AccountBalanceOut:
    """From (currency, balance) pairs in currency order: the first is `balance` (0 USD when there are none)."""
    currency, amount = found[0] if found else ("USD", 0)
    every = [MoneyOut(a, c) for c, a in found] if len(found) > 1 else msgspec.UNSET
    return AccountBalanceOut(account, as_of, MoneyOut(amount, currency), every)


class JournalPostingOut(msgspec.Struct):
    """One side of a journal entry."""

    account: str
    side: Literal["debit", "credit"]
    amount: MoneyOut


class JournalEntryOut(msgspec.Struct):
    """A journal entry: its postings' debits equal their credits."""

    entry_id: str
    position: int
    recorded_at: datetime
    description: str
    postings: list[JournalPostingOut]


class JournalPage(msgspec.Struct):
    """Every journal entry of the window in position order (one page: `next_cursor` is null)."""

    items: list[JournalEntryOut]
    next_cursor: str | None


class ReconciliationCheckOut(msgspec.Struct):
    """One invariant of the replayed ledger."""

    name: str
    ok: bool
    detail: str


class ReconciliationOut(msgspec.Struct):
    """The ledger replayed from the event store up to `position`, and each invariant's result."""

    ok: bool
    checked_events: int
    position: int
    digest: str
    checks: list[ReconciliationCheckOut]


def reconciliation_out(v: Mapping[str, Any]) -> ReconciliationOut:
    """From projections/reconcile.py's result."""
    checks = [ReconciliationCheckOut(c["name"], c["ok"], c["detail"]) for c in v["checks"]]
    return ReconciliationOut(v["ok"], v["checked_events"], v["position"], v["digest"], checks)


class PayoutOut(msgspec.Struct):
    """A payout recorded to a tutor."""

    id: UUID
    tutor_id: UUID
    amount: MoneyOut
    reference: str


def payout_out(v: Mapping[str, Any]) -> PayoutOut:
    """From the body TutorPayouts.pay_out returns (through application/money.py's `pay_out`)."""
    return PayoutOut(UUID(v["id"]), UUID(v["tutor_id"]), _money(v["amount"]), v["reference"])


class TutorPayoutOut(msgspec.Struct):
    """A payout recorded to the calling tutor."""

    id: UUID
    amount: MoneyOut
    reference: str
    recorded_at: datetime


class TutorPayoutPage(msgspec.Struct):
    """A page of the tutor's payouts, newest first."""

    items: list[TutorPayoutOut]
    next_cursor: str | None


def tutor_payout_out(row: Mapping[str, Any]) -> TutorPayoutOut:
    """A `tutor_payouts` read-model row (projections/tutor_payouts.py)."""
    return TutorPayoutOut(
        row["payout_id"], MoneyOut(row["amount"], row["currency"]), row["reference"], row["recorded_at"].astimezone(UTC)
    )


class PlatformSettingsOut(msgspec.Struct):
    """The platform settings in force and their version; rates in integer basis points."""

    version: int
    commission_bps: int
    cancellation_window_hours: int
    late_cancel_refund_bps: int
    no_show_refund_bps: int
    package_discount_bps: dict[str, int]
    credit_validity_days: int
    pending_expiry_hours: int
    auto_complete_hours: int


def platform_settings_out(v: Mapping[str, Any]) -> PlatformSettingsOut:
    """From PlatformSettings.view()."""
    return PlatformSettingsOut(
        version=v["version"],
        commission_bps=v["commission_bps"],
        cancellation_window_hours=v["cancellation_window_hours"],
        late_cancel_refund_bps=v["late_cancel_refund_bps"],
        no_show_refund_bps=v["no_show_refund_bps"],
        package_discount_bps=v["package_discount_bps"],
        credit_validity_days=v["credit_validity_days"],
        pending_expiry_hours=v["pending_expiry_hours"],
        auto_complete_hours=v["auto_complete_hours"],
    )
