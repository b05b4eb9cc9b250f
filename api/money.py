"""Packages and payments: the package catalog, purchases and their history, the Stripe webhook, student credits,
tutor earnings and payouts, refunds."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post

from api.deps import command, limit_of, query, reading
from api.guards import BEARER, BUYERS_AND_MONEY_STAFF, MONEY_STAFF, STUDENT, TUTOR
from api.params import NewestFirst
from api.schemas.money import (
    NewPurchaseOut,
    PackageCatalogOut,
    PurchaseOut,
    PurchasePage,
    PurchaseRefundOut,
    StudentCreditPage,
    TutorEarningsOut,
    TutorPayoutPage,
    WebhookReceivedOut,
    new_purchase_out,
    package_catalog_out,
    purchase_item_out,
    purchase_out,
    purchase_refund_out,
    student_credit_page,
    tutor_earnings_out,
    tutor_payout_out,
)
from api.text import RAW_BODY
from application.accounts import Account
from application.clock import Clock
from application.money import Money
from domain.errors import NotFound

PURCHASES = NewestFirst("created_at", "purchase_id")
PAYOUTS = NewestFirst("recorded_at", "payout_id")


class PurchaseIn(msgspec.Struct):
    """POST /packages/purchases."""

    tutor_id: UUID
    lessons: Literal[1, 5, 10, 20]


class MoneyController(Controller):
    """Students buy packages; Stripe tells us when they are paid."""

    path = "/"
    tags = ["money"]

    @get("/packages", sync_to_thread=True)
    def packages(self, request: Request[Any, Any, Any], money: Money, tutor_id: UUID) -> Response[PackageCatalogOut]:
        """The packages of a listed tutor (1, 5, 10, 20 lessons), priced as a purchase would be now."""
        with reading(request, ("tutors",)) as (conn, pos):
            row = conn.execute(
                "SELECT hourly_amount, currency FROM tutors WHERE tutor_id = %s AND listed", (tutor_id,)
            ).fetchone()
        if row is None or row["hourly_amount"] is None:
            raise NotFound("no such tutor")
        return query(package_catalog_out(money.package_offers(row["hourly_amount"], row["currency"])), pos)

    @get("/packages/purchases", sync_to_thread=True, security=BEARER, guards=BUYERS_AND_MONEY_STAFF)
    def purchases(
        self,
        request: Request[Account, Any, Any],
        student_id: UUID | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Response[PurchasePage]:
        """Purchases newest first: a student's own; staff see everyone's, or one student's with `student_id`."""
        actor = request.user
        n = limit_of(limit)
        after, after_params = PURCHASES.after(cursor)
        where, params = [after], list(after_params)
        if actor.role == "student":  # their own only (another student_id then finds nothing)
            where.append("student_id = %s")
            params.append(actor.user_id)
        if student_id is not None:
            where.append("student_id = %s")
            params.append(student_id)
        with reading(request, ("purchases",), actor) as (conn, pos):
            rows = conn.execute(
                "SELECT purchase_id, tutor_id, lessons, amount, currency, status, payment_intent_id, created_at"
                f" FROM purchases WHERE {' AND '.join(where)} ORDER BY {PURCHASES.order} LIMIT %s",
                (*params, n + 1),
            ).fetchall()
        page, next_cursor = PURCHASES.page(rows, n)
        return query(PurchasePage([purchase_item_out(r) for r in page], next_cursor), pos)

    @post("/packages/purchases", status_code=201, sync_to_thread=True, security=BEARER, guards=STUDENT)
    def buy(self, request: Request[Account, Any, Any], money: Money, data: PurchaseIn) -> Response[NewPurchaseOut]:
        """Price a package and open its Stripe PaymentIntent; the credit comes with the payment webhook."""
        actor = request.user
        body, position = money.buy(actor, data.tutor_id, data.lessons)
        return command(new_purchase_out(body), position, 201)

    @get("/packages/purchases/{purchase_id:uuid}", sync_to_thread=True, security=BEARER, guards=BUYERS_AND_MONEY_STAFF)
    def purchase(self, request: Request[Account, Any, Any], money: Money, purchase_id: UUID) -> PurchaseOut:
        """A purchase and its payment status (its student, admin or finance)."""
        actor = request.user
        return purchase_out(money.purchase(actor, purchase_id))

    @post("/webhooks/stripe", status_code=200, sync_to_thread=True, opt={RAW_BODY: True})
    def stripe_webhook(
        self, request: Request[Any, Any, Any], money: Money, body: bytes
    ) -> Response[WebhookReceivedOut]:
        """Stripe events, verified by signature; each payment grants its credit exactly once."""
        signature = request.headers.get("stripe-signature", "")
        position = money.webhook(body, signature)
        return Response(WebhookReceivedOut(received=True), headers={"X-Event-Position": str(position)})

    @get("/student/credits", sync_to_thread=True, security=BEARER, guards=STUDENT)
    def credits(self, request: Request[Account, Any, Any], clock: Clock) -> Response[StudentCreditPage]:
        """The caller's credit per tutor: available and held minutes, and the unexpired lots."""
        actor = request.user
        now = clock.now()
        with reading(request, ("student_credits",), actor) as (conn, pos):
            lots = conn.execute(
                "SELECT lot_id, tutor_id, minutes_remaining, expires_at FROM student_credit_lots WHERE student_id = %s"
                " AND state = 'open' AND minutes_remaining > 0 AND expires_at > %s ORDER BY expires_at, lot_id",
                (actor.user_id, now),
            ).fetchall()
            holds = conn.execute(
                "SELECT tutor_id, sum(minutes) AS minutes FROM student_credit_holds WHERE student_id = %s"
                " AND state = 'open' GROUP BY tutor_id",
                (actor.user_id,),
            ).fetchall()
        return query(student_credit_page(lots, holds), pos)

    @get("/tutor/earnings", sync_to_thread=True, security=BEARER, guards=TUTOR)
    def earnings(self, request: Request[Account, Any, Any]) -> Response[TutorEarningsOut]:
        """The caller's pending (held), earned and paid-out money, and earnings by month."""
        actor = request.user
        with reading(request, ("student_credits", "tutors"), actor) as (conn, pos):
            pending = conn.execute(
                "SELECT currency, sum(net) AS amount FROM student_credit_holds WHERE tutor_id = %s AND state = 'open'"
                " GROUP BY currency",
                (actor.user_id,),
            ).fetchall()
            lines = conn.execute(
                "SELECT kind, month, currency, sum(amount) AS amount FROM tutor_earning_lines WHERE tutor_id = %s"
                " GROUP BY kind, month, currency ORDER BY month",
                (actor.user_id,),
            ).fetchall()
            rate = conn.execute("SELECT currency FROM tutors WHERE tutor_id = %s", (actor.user_id,)).fetchone()
        currency = (rate and rate["currency"]) or next((r["currency"] for r in [*pending, *lines]), None) or "USD"
        totals: dict[str, int] = defaultdict(int)
        months: dict[str, int] = defaultdict(int)
        for r in lines:
            if r["currency"] == currency:
                totals[r["kind"]] += int(r["amount"])
                if r["kind"] == "earned":
                    months[r["month"]] += int(r["amount"])
        held = sum(int(r["amount"]) for r in pending if r["currency"] == currency)
        return query(tutor_earnings_out(currency, held, totals["earned"], totals["paid_out"], months), pos)

    @get("/tutor/payouts", sync_to_thread=True, security=BEARER, guards=TUTOR)
    def payouts(
        self, request: Request[Account, Any, Any], limit: int | None = None, cursor: str | None = None
    ) -> Response[TutorPayoutPage]:
        """The payouts recorded to the caller, newest first."""
        actor = request.user
        n = limit_of(limit)
        after, params = PAYOUTS.after(cursor)
        with reading(request, ("tutor_payouts",), actor) as (conn, pos):
            rows = conn.execute(
                "SELECT payout_id, amount, currency, reference, recorded_at FROM tutor_payouts"
                f" WHERE tutor_id = %s AND {after} ORDER BY {PAYOUTS.order} LIMIT %s",
                (actor.user_id, *params, n + 1),
            ).fetchall()
        page, next_cursor = PAYOUTS.page(rows, n)
        return query(TutorPayoutPage([tutor_payout_out(r) for r in page], next_cursor), pos)

    @post(
        "/admin/purchases/{purchase_id:uuid}/refund",
        status_code=200,
        sync_to_thread=True,
        security=BEARER,
        guards=MONEY_STAFF,
    )
    def refund(self, request: Request[Any, Any, Any], money: Money, purchase_id: UUID) -> Response[PurchaseRefundOut]:
        """Refund the unused part of a paid package through Stripe and remove that credit."""
        body, position = money.refund_unused(purchase_id)
        return command(purchase_refund_out(body), position)
