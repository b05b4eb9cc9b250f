"""Packages paid through Stripe, end to end: a real `tutorconnect api` process, the real `stripe` SDK against
localstripe (which POSTs signed `payment_intent.*` webhooks to the API, as Stripe does), and webhooks signed here
for the cases Stripe produces but localstripe cannot (duplicates, reordering, refunds made in the dashboard,
forged or tampered deliveries).

One server, database and approved tutor for the module (starting a server per test would dominate the runtime);
every test uses students of its own."""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import stripe

from application.money import Money
from application.settings import Settings
from domain.credits import HoldState
from tests.money.support import (
    API,
    STRIPE_KEY,
    WEBHOOK_SECRET,
    approve_tutor,
    bearer,
    count_events,
    failed_event,
    head,
    ledger_balance,
    module_database,
    ok,
    paid_api,
    problem,
    refunded_event,
    scalar,
    signed_webhook,
    succeeded_event,
    wait_until,
)
from tests.support.api import register, staff_login

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000341"  # attaches, then the charge is declined


@dataclass
class Stack:
    root: str
    settings: Settings
    stripe_base: str
    http: httpx.Client
    admin: str
    finance: str
    tutor_id: str
    tutor_token: str

    @property
    def dsn(self) -> str:
        return self.settings.database_url

    @property
    def stripe(self) -> stripe.StripeClient:
        return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": self.stripe_base})

    def student(self) -> tuple[str, str]:
        body = register(self.http, "student")
        return body["user"]["id"], body["access_token"]

    def buy(self, token: str, lessons: int = 10, tutor_id: str | None = None) -> dict[str, Any]:
        r = self.http.post(
            f"{API}/packages/purchases",
            json={"tutor_id": tutor_id or self.tutor_id, "lessons": lessons},
            headers=bearer(token),
        )
        return ok(r, 201)  # type: ignore[no-any-return]

    def pay(self, payment_intent_id: str, card: str = GOOD_CARD) -> Any:
        """Pay like a card holder: attach a card to the PaymentIntent and confirm it."""
        sc = self.stripe
        pm = sc.payment_methods.create(
            params={"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
        )
        sc.payment_intents.update(payment_intent_id, params={"payment_method": pm.id})
        return sc.payment_intents.confirm(payment_intent_id)

    def purchase(self, token: str, purchase_id: str) -> dict[str, Any]:
        return ok(self.http.get(f"{API}/packages/purchases/{purchase_id}", headers=bearer(token)))  # type: ignore[no-any-return]

    def wait_paid(self, token: str, purchase_id: str) -> dict[str, Any]:
        return wait_until(  # type: ignore[no-any-return]
            lambda: (p := self.purchase(token, purchase_id))["status"] == "paid" and p,
            timeout=20,
            what=f"purchase {purchase_id} paid",
        )

    def credits(self, token: str, tutor_id: str | None = None) -> dict[str, Any]:
        body = ok(self.http.get(f"{API}/student/credits", headers=bearer(token)))
        assert body["next_cursor"] is None
        for item in body["items"]:
            if item["tutor_id"] == (tutor_id or self.tutor_id):
                return item  # type: ignore[no-any-return]
        return {"tutor_id": tutor_id or self.tutor_id, "minutes_available": 0, "minutes_held": 0, "lots": []}

    def wait_credits(self, token: str, minutes: int, held: int = 0) -> dict[str, Any]:
        return wait_until(  # type: ignore[no-any-return]
            lambda: (c := self.credits(token))["minutes_available"] == minutes and c["minutes_held"] == held and c,
            timeout=15,
            what=f"{minutes} minutes available, {held} held",
        )

    def deliver(self, payload: dict[str, Any] | bytes, secret: str = WEBHOOK_SECRET, **kw: Any) -> httpx.Response:
        body, headers = signed_webhook(payload, secret, **kw)
        return self.http.post(f"{API}/webhooks/stripe", content=body, headers=headers)

    def balance(self, account: str) -> int:
        """The live ledger balance of an account once the ledger has caught up with the log."""
        self.settled()
        return ledger_balance(self.dsn, account)

    def settled(self) -> int:
        """The head of the log once the projections have caught up with it (nothing in flight)."""

        def caught_up() -> int | None:
            h = head(self.dsn)
            low = scalar(self.dsn, "SELECT min(position) FROM projection_tracking WHERE state = 'active'")
            return h if low >= h else None

        return wait_until(caught_up, timeout=15, what="projections caught up")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def stack(
    pg_admin_url: str, redis_server: str, localstripe: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with module_database(
        pg_admin_url, redis_server, 7, stripe_api_key=STRIPE_KEY, stripe_api_base=localstripe
    ) as settings:
        log: Path = tmp_path_factory.mktemp("money-api") / "api.log"
        with (
            paid_api(settings, localstripe, log, "money-tests") as root,
            httpx.Client(base_url=root, timeout=30) as http,
        ):
            admin = staff_login(http, settings, "admin")["access_token"]
            finance = staff_login(http, settings, "finance")["access_token"]
            tutor = register(http, "tutor")
            approve_tutor(settings, uuid.UUID(tutor["user"]["id"]), 4000, "USD")
            yield Stack(root, settings, localstripe, http, admin, finance, tutor["user"]["id"], tutor["access_token"])


# ------------------------------------------------------------------------------------------------ buying


def test_buy_pay_and_redeliver_grants_credit_once(stack: Stack) -> None:
    sid, token = stack.student()
    bought = stack.buy(token, 10)
    # 10 lessons × 4000 less the 5 % package discount.
    assert {"id", "status", "price", "payment_intent_id", "client_secret"} <= set(bought), bought
    assert bought["status"] == "awaiting_payment"
    assert bought["price"] == {"amount": 38000, "currency": "USD"}
    assert bought["payment_intent_id"].startswith("pi_") and bought["client_secret"]
    intent = stack.stripe.payment_intents.retrieve(bought["payment_intent_id"])
    assert (intent.amount, intent.currency) == (38000, "usd")
    assert intent.metadata["purchase_id"] == bought["id"]
    view = stack.purchase(token, bought["id"])
    assert view == {
        "id": bought["id"],
        "tutor_id": stack.tutor_id,
        "lessons": 10,
        "price": {"amount": 38000, "currency": "USD"},
        "status": "awaiting_payment",
        "payment_intent_id": bought["payment_intent_id"],
    }
    assert stack.credits(token)["minutes_available"] == 0

    paid_intent = stack.pay(bought["payment_intent_id"])
    assert paid_intent.status == "succeeded"
    stack.wait_paid(token, bought["id"])
    item = stack.wait_credits(token, 600)
    assert len(item["lots"]) == 1 and item["lots"][0]["minutes_remaining"] == 600
    expires = datetime.fromisoformat(item["lots"][0]["expires_at"].replace("Z", "+00:00"))
    assert abs(expires - (datetime.now(UTC) + timedelta(days=180))) < timedelta(minutes=5)
    assert count_events(stack.dsn, "CreditAccount.CreditGranted", bought["id"]) == 1

    # Stripe delivers at least once: the same event again, three times in a row and then five at once.
    event = succeeded_event(bought["payment_intent_id"], 38000)
    before = stack.settled()
    for _ in range(3):
        r = stack.deliver(event)
        assert ok(r) == {"received": True}
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda _: stack.deliver(event), range(5)))
    assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]
    assert head(stack.dsn) == before, "a repeated payment_intent.succeeded recorded events"
    assert count_events(stack.dsn, "CreditAccount.CreditGranted", bought["id"]) == 1
    assert count_events(stack.dsn, "Purchase.Paid", aggregate_id=bought["id"]) == 1
    assert stack.credits(token)["minutes_available"] == 600
    assert stack.balance(f"student_credit:{sid}") == 38000
    assert stack.purchase(token, bought["id"])["status"] == "paid"


def test_concurrent_first_deliveries_grant_once(stack: Stack) -> None:
    """The very first delivery racing its own retries (no payment through localstripe: only our events)."""
    sid, token = stack.student()
    bought = stack.buy(token, 5)
    assert bought["price"] == {"amount": 20000, "currency": "USD"}
    event = succeeded_event(bought["payment_intent_id"], 20000)
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: stack.deliver(event), range(6)))
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    assert stack.purchase(token, bought["id"])["status"] == "paid"
    assert count_events(stack.dsn, "CreditAccount.CreditGranted", bought["id"]) == 1
    assert count_events(stack.dsn, "Purchase.Paid", aggregate_id=bought["id"]) == 1
    stack.wait_credits(token, 300)
    assert stack.balance(f"student_credit:{sid}") == 20000


def test_refund_reported_before_the_payment_ends_consistent(stack: Stack) -> None:
    """Stripe does not order events: a charge.refunded may arrive before payment_intent.succeeded."""
    sid, token = stack.student()
    bought = stack.buy(token, 5)
    pi = bought["payment_intent_id"]
    ok(stack.deliver(refunded_event(pi, 20000, 20000)))
    assert stack.purchase(token, bought["id"])["status"] == "awaiting_payment"
    assert count_events(stack.dsn, "CreditAccount.CreditGranted", bought["id"]) == 0

    ok(stack.deliver(succeeded_event(pi, 20000)))
    view = stack.purchase(token, bought["id"])
    assert view["status"] == "refunded", view
    stack.settled()
    # Granted, then removed at once: no usable credit, and the student's ledger account is back to zero.
    assert stack.credits(token)["minutes_available"] == 0
    assert count_events(stack.dsn, "CreditAccount.CreditGranted", bought["id"]) == 1
    assert count_events(stack.dsn, "CreditAccount.CreditRefunded", bought["id"]) == 1
    assert stack.balance(f"student_credit:{sid}") == 0

    # Both events again, in either order: nothing more happens.
    before = head(stack.dsn)
    ok(stack.deliver(succeeded_event(pi, 20000)))
    ok(stack.deliver(refunded_event(pi, 20000, 20000)))
    assert head(stack.dsn) == before
    r = ok(stack.http.post(f"{API}/finance/reconciliation", headers=bearer(stack.finance)))
    assert r["ok"], r["checks"]


def test_unsigned_forged_and_tampered_webhooks_are_refused(stack: Stack) -> None:
    sid, token = stack.student()
    bought = stack.buy(token, 1)
    event = succeeded_event(bought["payment_intent_id"], bought["price"]["amount"])
    body, headers = signed_webhook(event)
    before = stack.settled()
    url = f"{API}/webhooks/stripe"

    problem(stack.http.post(url, content=body, headers={"Content-Type": "application/json"}), 400, "invalid-webhook")
    problem(stack.deliver(event, secret="whsec_not_the_right_one"), 400, "invalid-webhook")
    tampered = body.replace(b'"amount": 4000', b'"amount": 4')
    assert tampered != body
    problem(stack.http.post(url, content=tampered, headers=headers), 400, "invalid-webhook")
    problem(stack.http.post(url, content=body, headers={**headers, "Stripe-Signature": "t=1,v1=00"}), 400)
    problem(stack.http.post(url, content=body, headers={**headers, "Stripe-Signature": "garbage"}), 400)
    # A correctly signed but stale delivery (a replay from long ago) is refused too.
    problem(stack.deliver(event, timestamp=int(time.time()) - 3600), 400, "invalid-webhook")
    # A signed body that is not JSON is refused, not a 500.
    problem(stack.deliver(b"not json at all"), 400)
    assert head(stack.dsn) == before, "a refused webhook recorded events"
    assert stack.purchase(token, bought["id"])["status"] == "awaiting_payment"
    assert stack.credits(token)["minutes_available"] == 0
    assert stack.balance(f"student_credit:{sid}") == 0
    # The same event, properly signed, is accepted.
    ok(stack.deliver(event))
    assert stack.purchase(token, bought["id"])["status"] == "paid"


def test_signed_but_malformed_events_are_refused_not_500(stack: Stack) -> None:
    """Only Stripe holds the secret, but "never a 500 for bad input" holds for it too: a signed body that is not
    a Stripe event, or an event without the fields its type needs, is a 400 and records nothing."""
    before = stack.settled()
    for malformed in (
        [],
        {"id": "evt_x", "object": "event"},
        {"id": "evt_x", "object": "event", "type": "payment_intent.succeeded"},
        {"id": "evt_x", "object": "event", "type": "payment_intent.succeeded", "data": {"object": {}}},
        {"id": "evt_x", "object": "event", "type": "charge.refunded", "data": {"object": {"amount_refunded": "x"}}},
    ):
        r = stack.deliver(json.dumps(malformed).encode())
        assert r.status_code < 500, f"signed {malformed} -> {r.status_code} {r.text[:300]}"
        problem(r, 400)
    assert head(stack.dsn) == before


def test_payment_failed_keeps_awaiting_payment_then_a_retry_pays(stack: Stack) -> None:
    _sid, token = stack.student()
    bought = stack.buy(token, 1)
    pi = bought["payment_intent_id"]
    with pytest.raises(stripe.CardError):
        stack.pay(pi, DECLINED_CARD)
    # localstripe reports payment_intent.payment_failed to the API; the purchase records it and keeps waiting.
    wait_until(
        lambda: count_events(stack.dsn, "Purchase.PaymentFailed", aggregate_id=bought["id"]) >= 1,
        timeout=15,
        what="PaymentFailed recorded",
    )
    ok(stack.deliver(failed_event(pi, 4000)))
    view = stack.purchase(token, bought["id"])
    assert view["status"] == "awaiting_payment"
    assert stack.credits(token)["minutes_available"] == 0
    assert count_events(stack.dsn, "CreditAccount.CreditGranted", bought["id"]) == 0

    # The student tries again and the payment goes through (localstripe cannot confirm an intent again after a
    # declined charge, so Stripe's succeeded event for the retry is delivered here).
    ok(stack.deliver(succeeded_event(pi, 4000)))
    stack.wait_paid(token, bought["id"])
    stack.wait_credits(token, 60)
    # A late failure report for the paid intent changes nothing.
    before = head(stack.dsn)
    ok(stack.deliver(failed_event(pi, 4000)))
    assert head(stack.dsn) == before
    assert stack.purchase(token, bought["id"])["status"] == "paid"


# ------------------------------------------------------------------------------------------------ refunds


def test_dashboard_refund_then_admin_refund_of_the_rest(stack: Stack) -> None:
    sid, token = stack.student()
    bought = stack.buy(token, 10)
    pi = bought["payment_intent_id"]
    stack.pay(pi)
    stack.wait_paid(token, bought["id"])
    stack.wait_credits(token, 600)

    # Half the charge refunded in Stripe's dashboard: credit worth 19000 (300 minutes) goes, once.
    ok(stack.deliver(refunded_event(pi, 38000, 19000)))
    stack.wait_credits(token, 300)
    assert stack.balance(f"student_credit:{sid}") == 19000
    before = head(stack.dsn)
    ok(stack.deliver(refunded_event(pi, 38000, 19000)))
    assert head(stack.dsn) == before, "a repeated charge.refunded recorded events"
    assert count_events(stack.dsn, "CreditAccount.CreditRefunded", bought["id"]) == 1
    assert stack.credits(token)["minutes_available"] == 300

    url = f"{API}/admin/purchases/{bought['id']}/refund"
    problem(stack.http.post(url, headers=bearer(token)), 403)
    problem(stack.http.post(url, headers=bearer(stack.tutor_token)), 403)
    problem(stack.http.post(url), 401)
    body = ok(stack.http.post(url, headers=bearer(stack.finance)))
    assert set(body) == {"purchase", "refunded", "minutes_removed"}, body
    assert body["refunded"] == {"amount": 19000, "currency": "USD"}
    assert body["minutes_removed"] == 300
    assert body["purchase"]["id"] == bought["id"] and body["purchase"]["status"] == "refunded"
    refunds = stack.stripe.refunds.list(params={"payment_intent": pi})
    assert [(r.amount, r.status) for r in refunds.data] == [(19000, "succeeded")]
    stack.wait_credits(token, 0)
    assert stack.balance(f"student_credit:{sid}") == 0

    problem(stack.http.post(url, headers=bearer(stack.finance)), 409, "nothing-to-refund")
    problem(stack.http.post(url, headers=bearer(stack.admin)), 409, "nothing-to-refund")
    assert len(stack.stripe.refunds.list(params={"payment_intent": pi}).data) == 1
    assert stack.purchase(token, bought["id"])["status"] == "refunded"


def test_admin_refund_leaves_held_minutes(stack: Stack) -> None:
    sid, token = stack.student()
    bought = stack.buy(token, 5)
    stack.pay(bought["payment_intent_id"])
    stack.wait_paid(token, bought["id"])
    stack.wait_credits(token, 300)
    # A booking holds one lesson (what POST /bookings does to the credit).
    money = Money(stack.settings)
    money.hold(uuid.UUID(sid), f"bk-{sid}", uuid.UUID(stack.tutor_id), 60, 2000)
    stack.wait_credits(token, 240, held=60)

    body = ok(stack.http.post(f"{API}/admin/purchases/{bought['id']}/refund", headers=bearer(stack.admin)))
    assert body["refunded"] == {"amount": 16000, "currency": "USD"}
    assert body["minutes_removed"] == 240
    stack.wait_credits(token, 0, held=60)
    assert stack.balance(f"student_credit:{sid}") == 0
    assert stack.balance(f"booking_hold:bk-{sid}") == 4000
    problem(stack.http.post(f"{API}/admin/purchases/{bought['id']}/refund", headers=bearer(stack.admin)), 409)


def test_concurrent_admin_refunds_refund_the_unused_credit_once(stack: Stack) -> None:
    """Two finance clerks press "refund" at the same moment: Stripe must be asked to refund the unused part once,
    not once per click (a second refund through Stripe would pay the student back twice)."""
    sid, token = stack.student()
    bought = stack.buy(token, 10)
    pi = bought["payment_intent_id"]
    stack.pay(pi)
    stack.wait_paid(token, bought["id"])
    # Half of it refunded already (from the dashboard), so Stripe itself would accept a second refund of the rest.
    ok(stack.deliver(refunded_event(pi, 38000, 19000)))
    stack.wait_credits(token, 300)
    url = f"{API}/admin/purchases/{bought['id']}/refund"
    barrier = threading.Barrier(8)

    def click(token: str) -> httpx.Response:
        barrier.wait(10)
        return stack.http.post(url, headers=bearer(token))

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(click, [stack.finance, stack.admin] * 4))
    codes = sorted(r.status_code for r in responses)
    refunds = stack.stripe.refunds.list(params={"payment_intent": pi}).data
    assert sum(r.amount for r in refunds) == 19000, (
        f"Stripe refunded {[r.amount for r in refunds]} for 19000 of unused credit; responses {codes}: "
        + "; ".join(r.text[:200] for r in responses)
    )
    assert codes.count(200) == 1 and all(c == 409 for c in codes if c != 200), codes
    stack.wait_credits(token, 0)
    assert stack.balance(f"student_credit:{sid}") == 0


def test_dashboard_refund_larger_than_the_unused_credit_still_leaves_payment_clearing(stack: Stack) -> None:
    """A full refund from Stripe's dashboard after the student used half the package: Stripe paid back all 38000,
    so payment_clearing (the money at Stripe) must go down by 38000, whatever absorbs the used half."""
    sid, token = stack.student()
    bought = stack.buy(token, 10)
    pi = bought["payment_intent_id"]
    stack.pay(pi)
    stack.wait_paid(token, bought["id"])
    stack.wait_credits(token, 600)
    money = Money(stack.settings)
    for i in range(5):  # five lessons taken and completed: 19000 of the credit used
        money.hold(uuid.UUID(sid), f"used{i}-{sid}", uuid.UUID(stack.tutor_id), 60, 2000)
        money.resolve(uuid.UUID(sid), f"used{i}-{sid}", 60, HoldState.CAPTURED)
    stack.wait_credits(token, 300)
    clearing = stack.balance("payment_clearing")

    ok(stack.deliver(refunded_event(pi, 38000, 38000)))
    stack.wait_credits(token, 0)
    assert stack.balance(f"student_credit:{sid}") == 0
    r = ok(stack.http.post(f"{API}/finance/reconciliation", headers=bearer(stack.finance)))
    assert r["ok"], r["checks"]
    assert stack.balance("payment_clearing") == clearing - 38000, (
        "Stripe refunded 38000 but the ledger's payment_clearing only went down by the 19000 of credit removed: "
        "the part of a refund that exceeds the unused credit is not posted anywhere"
    )


def test_refund_of_an_unpaid_purchase_is_nothing_to_refund(stack: Stack) -> None:
    _sid, token = stack.student()
    bought = stack.buy(token, 1)
    problem(
        stack.http.post(f"{API}/admin/purchases/{bought['id']}/refund", headers=bearer(stack.finance)),
        409,
        "nothing-to-refund",
    )
    problem(stack.http.post(f"{API}/admin/purchases/{uuid.uuid4()}/refund", headers=bearer(stack.finance)), 404)


# ----------------------------------------------------------------------------------------- rules and prices


def test_purchase_rules(stack: Stack) -> None:
    _sid, token = stack.student()
    url = f"{API}/packages/purchases"
    unapproved = register(stack.http, "tutor")["user"]["id"]
    problem(
        stack.http.post(url, json={"tutor_id": unapproved, "lessons": 5}, headers=bearer(token)),
        422,
        "tutor-not-bookable",
    )
    problem(
        stack.http.post(url, json={"tutor_id": str(uuid.uuid4()), "lessons": 5}, headers=bearer(token)),
        422,
        "tutor-not-bookable",
    )
    for lessons in (3, 0, -5, 2.5, 100, None, [10]):
        problem(
            stack.http.post(url, json={"tutor_id": stack.tutor_id, "lessons": lessons}, headers=bearer(token)),
            (400, 422),
        )
    problem(stack.http.post(url, json={"tutor_id": "not-a-uuid", "lessons": 5}, headers=bearer(token)), (400, 422))
    problem(stack.http.post(url, json={"lessons": 5}, headers=bearer(token)), (400, 422))
    problem(
        stack.http.post(url, json={"tutor_id": stack.tutor_id, "lessons": 5}, headers=bearer(stack.tutor_token)), 403
    )
    problem(stack.http.post(url, json={"tutor_id": stack.tutor_id, "lessons": 5}, headers=bearer(stack.finance)), 403)
    problem(stack.http.post(url, json={"tutor_id": stack.tutor_id, "lessons": 5}), 401)

    # Another student's purchase is not yours to see; staff may read it.
    bought = stack.buy(token, 1)
    # a tutor is refused before any lookup: the same 403 for a real purchase id and an unknown one
    for pid in (bought["id"], str(uuid.uuid4())):
        problem(stack.http.get(f"{API}/packages/purchases/{pid}", headers=bearer(stack.tutor_token)), 403, "forbidden")
    _other, other_token = stack.student()
    problem(stack.http.get(f"{url}/{bought['id']}", headers=bearer(other_token)), 404)
    problem(stack.http.get(f"{url}/{uuid.uuid4()}", headers=bearer(token)), 404)
    assert ok(stack.http.get(f"{url}/{bought['id']}", headers=bearer(stack.finance)))["id"] == bought["id"]
    assert ok(stack.http.get(f"{url}/{bought['id']}", headers=bearer(stack.admin)))["id"] == bought["id"]
    problem(stack.http.get(f"{url}/{bought['id']}", headers=bearer(stack.tutor_token)), (403, 404))

    # A payment for a PaymentIntent that is not ours is acknowledged and ignored.
    before = stack.settled()
    ok(stack.deliver(succeeded_event("pi_" + secrets.token_hex(12), 5000)))
    assert head(stack.dsn) == before


def test_prices_round_half_up_and_follow_the_settings(stack: Stack) -> None:
    odd = register(stack.http, "tutor")
    approve_tutor(stack.settings, uuid.UUID(odd["user"]["id"]), 3333, "EUR")
    _sid, token = stack.student()
    want = {1: 3333, 5: 16665, 10: 31664, 20: 59994}  # 10 × 3333 × 0.95 = 31663.5 → 31664
    for lessons, amount in want.items():
        bought = stack.buy(token, lessons, tutor_id=odd["user"]["id"])
        assert bought["price"] == {"amount": amount, "currency": "EUR"}, (lessons, bought)
        intent = stack.stripe.payment_intents.retrieve(bought["payment_intent_id"])
        assert (intent.amount, intent.currency) == (amount, "eur")

    settings_url = f"{API}/admin/settings"
    changed = ok(
        stack.http.patch(settings_url, json={"package_discount_bps": {"10": 250}}, headers=bearer(stack.admin))
    )
    try:
        assert changed["package_discount_bps"] == {"1": 0, "5": 0, "10": 250, "20": 1000}
        # 10 × 3333 × 0.975 = 32496.75 → 32497
        assert stack.buy(token, 10, tutor_id=odd["user"]["id"])["price"]["amount"] == 32497
        assert stack.buy(token, 20, tutor_id=odd["user"]["id"])["price"]["amount"] == 59994
    finally:
        ok(stack.http.patch(settings_url, json={"package_discount_bps": {"10": 500}}, headers=bearer(stack.admin)))
    assert stack.buy(token, 10, tutor_id=odd["user"]["id"])["price"]["amount"] == 31664


def test_books_reconcile_after_the_module(stack: Stack) -> None:
    """Everything the tests above did through Stripe leaves a ledger that replays to the same digest."""
    stack.settled()
    r = ok(stack.http.post(f"{API}/finance/reconciliation", headers=bearer(stack.finance)))
    assert r["ok"], [c for c in r["checks"] if not c["ok"]]
    assert r["checked_events"] > 0
    assert all(c["ok"] for c in r["checks"])


def test_a_purchase_replay_keeps_its_client_secret_out_of_storage(stack: Stack) -> None:
    _sid, token = stack.student()
    key = str(uuid.uuid4())
    h = {**bearer(token), "Idempotency-Key": key}
    body = {"tutor_id": stack.tutor_id, "lessons": 5}
    first = stack.http.post(f"{API}/packages/purchases", json=body, headers=h)
    secret = ok(first, 201)["client_secret"]
    assert secret

    def stored() -> list[bytes]:  # the response is kept just after it is sent
        with psycopg.connect(stack.dsn) as conn:
            rows = conn.execute("SELECT body FROM idempotency_keys WHERE key = %s AND body IS NOT NULL", (key,))
            return [bytes(r[0]) for r in rows]

    kept = wait_until(stored, what="the response kept for replay")
    assert not any(secret.encode() in b for b in kept)
    again = stack.http.post(f"{API}/packages/purchases", json=body, headers=h)
    assert again.headers.get("idempotent-replayed") == "true"
    assert ok(again, 201) == first.json()  # the client still gets its secret back
