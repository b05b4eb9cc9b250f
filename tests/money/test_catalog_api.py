"""The package catalog, GET /packages?tutor_id= (the real app behind TestClient, real projector threads, purchases
through localstripe): every size priced exactly as a purchase then charges, also after an admin changes the
package discounts and after the tutor changes the rate; unknown, unlisted and suspended tutors are 404; bad input
is 422, never a 500."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from application.settings import Settings
from domain.purchase import package_offer
from tests.money.support import API, STRIPE_KEY, bearer, conn_for, head, module_database, ok, problem
from tests.support.api import register, staff_login
from tests.support.world import approve_tutor

SIZES = [1, 5, 10, 20]


@dataclass
class Shop:
    client: Any
    settings: Settings
    stripe_base: str
    admin: str
    tutor_id: str
    tutor: str
    student: str

    def fresh(self, **headers: str) -> dict[str, str]:
        """Headers for a query that must see everything recorded so far."""
        return {**headers, "X-Min-Position": str(head(self.settings.database_url))}

    def catalog(self, tutor_id: str | None = None) -> dict[int, dict[str, Any]]:
        r = self.client.get(f"{API}/packages", params={"tutor_id": tutor_id or self.tutor_id}, headers=self.fresh())
        body = ok(r)
        assert r.headers["X-Projection-Position"].isdigit()
        assert set(body) == {"items", "next_cursor"} and body["next_cursor"] is None, body
        assert [i["lessons"] for i in body["items"]] == SIZES, body
        for i in body["items"]:
            assert set(i) == {"lessons", "minutes", "discount_bps", "price"}, i
        return {i["lessons"]: i for i in body["items"]}

    def buy(self, lessons: int, tutor_id: str | None = None) -> dict[str, Any]:
        body = {"tutor_id": tutor_id or self.tutor_id, "lessons": lessons}
        return ok(self.client.post(f"{API}/packages/purchases", json=body, headers=bearer(self.student)), 201)  # type: ignore[no-any-return]

    def recorded(self, purchase_id: str) -> dict[str, Any]:
        """The Purchase.Created event of a purchase, as stored."""
        row = (
            conn_for(self.settings.database_url)
            .execute(
                "SELECT convert_from(state, 'UTF8') FROM tutorconnect_events WHERE originator_id = %s"
                " AND originator_version = 1",
                (uuid.UUID(purchase_id),),
            )
            .fetchone()
        )
        assert row is not None, purchase_id
        return json.loads(row[0])  # type: ignore[no-any-return]

    def charged_as_listed(self, listed: dict[int, dict[str, Any]], tutor_id: str | None = None) -> None:
        """Buy every size and check that the purchase, its recorded terms and its PaymentIntent match the catalog."""
        sc = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": self.stripe_base})
        for lessons in SIZES:
            item = listed[lessons]
            bought = self.buy(lessons, tutor_id)
            assert bought["price"] == item["price"], (lessons, item, bought)
            event = self.recorded(bought["id"])
            assert (event["amount"], event["currency"]) == (item["price"]["amount"], item["price"]["currency"])
            assert (event["minutes"], event["discount_bps"]) == (item["minutes"], item["discount_bps"]), event
            intent = sc.payment_intents.retrieve(bought["payment_intent_id"])
            assert (intent.amount, intent.currency) == (item["price"]["amount"], item["price"]["currency"].lower())


@pytest.fixture(scope="module")
def shop(pg_admin_url: str, redis_server: str, localstripe: str) -> Iterator[Shop]:
    """One database and app for the module, payments through localstripe; a tutor at 33.33 EUR an hour."""
    from litestar.testing import TestClient

    from api.app import create_app

    with module_database(
        pg_admin_url, redis_server, 12, stripe_api_key=STRIPE_KEY, stripe_api_base=localstripe
    ) as settings:
        with TestClient(create_app(settings), base_url="http://testserver.local", timeout=30) as client:
            admin = staff_login(client, settings, "admin")["access_token"]
            tutor = register(client, "tutor")
            approve_tutor(settings, uuid.UUID(tutor["user"]["id"]), amount=3333, currency="EUR")
            student = register(client, "student")["access_token"]
            yield Shop(client, settings, localstripe, admin, tutor["user"]["id"], tutor["access_token"], student)


def test_the_catalog_charges_what_a_purchase_charges_before_and_after_the_discounts_change(shop: Shop) -> None:
    listed = shop.catalog()
    # the default discounts (0, 0, 5 %, 10 %), rounded half up: 10 × 3333 × 0.95 = 31663.5 → 31664
    assert listed == {
        1: {"lessons": 1, "minutes": 60, "discount_bps": 0, "price": {"amount": 3333, "currency": "EUR"}},
        5: {"lessons": 5, "minutes": 300, "discount_bps": 0, "price": {"amount": 16665, "currency": "EUR"}},
        10: {"lessons": 10, "minutes": 600, "discount_bps": 500, "price": {"amount": 31664, "currency": "EUR"}},
        20: {"lessons": 20, "minutes": 1200, "discount_bps": 1000, "price": {"amount": 59994, "currency": "EUR"}},
    }
    shop.charged_as_listed(listed)

    url = f"{API}/admin/settings"
    changed = {"1": 100, "5": 333, "10": 250, "20": 1500}
    ok(shop.client.patch(url, json={"package_discount_bps": changed}, headers=bearer(shop.admin)))
    try:
        relisted = shop.catalog()
        assert {n: i["discount_bps"] for n, i in relisted.items()} == {int(k): v for k, v in changed.items()}
        # 3333 × 0.99 = 3299.67 → 3300; 16665 × 0.9667 = 16110.06 → 16110; 33330 × 0.975 = 32496.75 → 32497;
        # 66660 × 0.85 = 56661
        assert {n: i["price"]["amount"] for n, i in relisted.items()} == {1: 3300, 5: 16110, 10: 32497, 20: 56661}
        shop.charged_as_listed(relisted)
    finally:
        back = {"1": 0, "5": 0, "10": 500, "20": 1000}
        ok(shop.client.patch(url, json={"package_discount_bps": back}, headers=bearer(shop.admin)))
    assert shop.catalog() == listed


def test_the_catalog_follows_the_tutors_rate(shop: Shop) -> None:
    tutor = register(shop.client, "tutor")
    tid = tutor["user"]["id"]
    approve_tutor(shop.settings, uuid.UUID(tid), amount=4999, currency="USD")
    assert shop.catalog(tid)[10]["price"] == {"amount": 47491, "currency": "USD"}  # 49990 × 0.95 = 47490.5
    r = shop.client.patch(
        f"{API}/tutor/profile",
        json={"hourly_rate": {"amount": 2501, "currency": "USD"}},
        headers=bearer(tutor["access_token"]),
    )
    ok(r)
    listed = shop.catalog(tid)
    assert listed[20]["price"] == {"amount": 45018, "currency": "USD"}  # 50020 × 0.9 = 45018
    shop.charged_as_listed(listed, tid)


def test_anyone_may_read_the_catalog(shop: Shop) -> None:
    anonymous = ok(shop.client.get(f"{API}/packages", params={"tutor_id": shop.tutor_id}))
    for token in (shop.student, shop.tutor, shop.admin):
        r = shop.client.get(f"{API}/packages", params={"tutor_id": shop.tutor_id}, headers=bearer(token))
        assert ok(r) == anonymous


def test_unknown_unlisted_and_suspended_tutors_are_404(shop: Shop) -> None:
    def missing(tutor_id: str) -> None:
        r = shop.client.get(f"{API}/packages", params={"tutor_id": tutor_id}, headers=shop.fresh())
        problem(r, 404, "not-found")

    missing(str(uuid.uuid4()))
    draft = register(shop.client, "tutor")["user"]["id"]  # registered, never approved
    missing(draft)
    student = register(shop.client, "student")["user"]["id"]
    missing(student)

    tutor = register(shop.client, "tutor")
    tid = tutor["user"]["id"]
    approve_tutor(shop.settings, uuid.UUID(tid))
    assert shop.catalog(tid)[1]["price"] == {"amount": 6000, "currency": "USD"}
    r = shop.client.post(f"{API}/admin/tutors/{tid}/suspend", json={"reason": "checks"}, headers=bearer(shop.admin))
    ok(r)
    missing(tid)
    body = {"tutor_id": tid, "lessons": 5}  # and, as the catalog says, nothing is sold
    problem(shop.client.post(f"{API}/packages/purchases", json=body, headers=bearer(shop.student)), 422)
    ok(shop.client.post(f"{API}/admin/tutors/{tid}/reinstate", headers=bearer(shop.admin)))
    assert shop.catalog(tid)[1]["price"] == {"amount": 6000, "currency": "USD"}


def test_a_missing_or_malformed_tutor_id_is_422(shop: Shop) -> None:
    url = f"{API}/packages"
    problem(shop.client.get(url), 422, "validation-failed")
    for bad in ("not-a-uuid", "", "123", "%00", "\x00"):
        problem(shop.client.get(url, params={"tutor_id": bad}), 422, "validation-failed")
    problem(shop.client.get(url, params={"tutor_id": shop.tutor_id}, headers={"X-Min-Position": "soon"}), 422)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.integers(1, 10**6),
    discounts=st.dictionaries(st.sampled_from(["1", "5", "10", "20"]), st.integers(0, 10_000)),
)
def test_package_offer_prices_each_size_half_up_and_a_missing_discount_is_none(
    rate: int, discounts: dict[str, int]
) -> None:
    """The one pricing (in memory): lessons × rate × (10000 − discount) / 10000, half up; sizes without a discount
    in the settings are sold at full price."""
    for lessons in SIZES:
        offer = package_offer(lessons, rate, "EUR", discounts)
        discount = discounts.get(str(lessons), 0)
        exact = Fraction(lessons * rate * (10_000 - discount), 10_000)
        assert offer.amount == int(exact + Fraction(1, 2)), (offer, exact)
        assert (offer.lessons, offer.minutes, offer.discount_bps, offer.currency) == (
            lessons,
            60 * lessons,
            discount,
            "EUR",
        )
