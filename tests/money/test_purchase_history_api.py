"""Purchase history, GET /packages/purchases (the real app behind TestClient, real projector threads, purchases
through localstripe, payments by signed webhooks): a student's own purchases newest first by when they were made,
paged by cursor, each in the shape of GET /packages/purchases/{id} plus `created_at`, with its status as it moves
(awaiting payment, paid, refunded); admin and finance see everyone's or one student's; a tutor is 403."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe

from application.settings import Settings
from projections import generations
from projections.purchases import Purchases
from tests.money.support import (
    API,
    STRIPE_KEY,
    bearer,
    head,
    module_database,
    ok,
    problem,
    rows,
    signed_webhook,
    succeeded_event,
    wait_projected,
)
from tests.support.api import BAD_PAGES, register, staff_login, z
from tests.support.world import approve_tutor

T0 = datetime(2031, 5, 1, 9, 0, tzinfo=UTC)
URL = f"{API}/packages/purchases"


@dataclass
class History:
    client: Any
    settings: Settings
    stripe_base: str
    admin: str
    finance: str
    tutor_id: str
    tutor: str

    def fresh(self, token: str) -> dict[str, str]:
        """Headers for a query (by `token`) that must see everything recorded so far."""
        return {**bearer(token), "X-Min-Position": str(head(self.settings.database_url))}

    def at(self, when: datetime) -> None:
        ok(self.client.put(f"{API}/admin/test-clock", json={"now": z(when)}, headers=bearer(self.admin)))

    def student(self) -> tuple[str, str]:
        body = register(self.client, "student")
        return body["user"]["id"], body["access_token"]

    def buy(self, token: str, lessons: int, when: datetime) -> dict[str, Any]:
        self.at(when)
        r = self.client.post(URL, json={"tutor_id": self.tutor_id, "lessons": lessons}, headers=bearer(token))
        return ok(r, 201)  # type: ignore[no-any-return]

    def paid(self, bought: dict[str, Any]) -> None:
        """Pay like a card holder at localstripe, then deliver Stripe's signed webhook."""
        sc = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": self.stripe_base})
        card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
        pm = sc.payment_methods.create(params={"type": "card", "card": card})
        sc.payment_intents.update(bought["payment_intent_id"], params={"payment_method": pm.id})
        sc.payment_intents.confirm(bought["payment_intent_id"])
        body, headers = signed_webhook(succeeded_event(bought["payment_intent_id"], bought["price"]["amount"]))
        ok(self.client.post(f"{API}/webhooks/stripe", content=body, headers=headers))

    def pages(self, token: str, limit: int, **params: Any) -> list[list[dict[str, Any]]]:
        """Every page of the list for these parameters, following next_cursor."""
        out: list[list[dict[str, Any]]] = []
        cursor = None
        for _ in range(50):
            query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
            r = self.client.get(URL, params=query, headers=self.fresh(token))
            body = ok(r)
            assert r.headers["X-Projection-Position"].isdigit()
            assert set(body) == {"items", "next_cursor"}, body
            assert len(body["items"]) <= limit
            out.append(body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                return out
            assert len(body["items"]) == limit, body  # a page before the last is full
        raise AssertionError("the list did not end within 50 pages")

    def everything(self, token: str, **params: Any) -> list[dict[str, Any]]:
        return [item for page in self.pages(token, 100, **params) for item in page]


@pytest.fixture(scope="module")
def history(pg_admin_url: str, redis_server: str, localstripe: str) -> Iterator[History]:
    """One database and app for the module, payments through localstripe; business time moved by the test clock."""
    from litestar.testing import TestClient

    from api.app import create_app

    with module_database(
        pg_admin_url, redis_server, 13, stripe_api_key=STRIPE_KEY, stripe_api_base=localstripe
    ) as settings:
        with TestClient(create_app(settings), base_url="http://testserver.local", timeout=30) as client:
            admin = staff_login(client, settings, "admin")["access_token"]
            finance = staff_login(client, settings, "finance")["access_token"]
            tutor = register(client, "tutor")
            approve_tutor(settings, uuid.UUID(tutor["user"]["id"]), amount=4000, currency="USD")
            h = History(client, settings, localstripe, admin, finance, tutor["user"]["id"], tutor["access_token"])
            try:
                yield h
            finally:
                ok(client.delete(f"{API}/admin/test-clock", headers=bearer(admin)))


def test_a_student_pages_their_own_purchases_newest_first(history: History) -> None:
    sid, token = history.student()
    _other_id, other = history.student()
    # made out of order in business time: the list follows when they were made, not the order of the log
    made = [(5, 1), (1, 5), (3, 10), (0, 20), (4, 1)]  # (hours after T0, lessons)
    bought = {h: history.buy(token, lessons, T0 + timedelta(hours=h)) for h, lessons in made}
    theirs = history.buy(other, 5, T0 + timedelta(hours=2))

    newest_first = [bought[h]["id"] for h in sorted(bought, reverse=True)]
    pages = history.pages(token, 2)
    assert [len(p) for p in pages] == [2, 2, 1]
    items = [i for p in pages for i in p]
    assert [i["id"] for i in items] == newest_first
    assert theirs["id"] not in {i["id"] for i in items}

    by_id = {i["id"]: i for i in items}
    for h, p in bought.items():
        item = by_id[p["id"]]
        one = ok(history.client.get(f"{URL}/{p['id']}", headers=bearer(token)))
        assert {k: v for k, v in item.items() if k != "created_at"} == one, (item, one)
        created = datetime.fromisoformat(item["created_at"].replace("Z", "+00:00"))
        assert item["created_at"].endswith("Z")
        assert abs(created - (T0 + timedelta(hours=h))) < timedelta(minutes=1), item
        assert item["status"] == "awaiting_payment"
    # the default page holds them all; another student's id changes nothing for a student (own only)
    assert history.everything(token) == items
    assert [i["id"] for i in history.everything(token, student_id=sid)] == newest_first
    assert history.everything(token, student_id=_other_id) == []
    assert [i["id"] for i in history.everything(other)] == [theirs["id"]]


def test_the_status_follows_payment_and_refund(history: History) -> None:
    _sid, token = history.student()
    p = history.buy(token, 5, T0 + timedelta(days=1))
    history.paid(p)
    [item] = history.everything(token)
    assert (item["id"], item["status"]) == (p["id"], "paid")
    assert {k: v for k, v in item.items() if k != "created_at"} == ok(
        history.client.get(f"{URL}/{p['id']}", headers=bearer(token))
    )
    refund = ok(history.client.post(f"{API}/admin/purchases/{p['id']}/refund", headers=bearer(history.admin)))
    assert refund["purchase"]["status"] == "refunded"
    [item] = history.everything(token)
    assert (item["id"], item["status"], item["price"]) == (p["id"], "refunded", p["price"])


def test_staff_see_everyones_or_one_students_purchases(history: History) -> None:
    a_id, a = history.student()
    b_id, b = history.student()
    mine = [history.buy(a, 1, T0 + timedelta(days=2, hours=h)) for h in (1, 2)]
    theirs = [history.buy(b, 10, T0 + timedelta(days=2, hours=h)) for h in (3, 4)]
    for token in (history.admin, history.finance):
        assert [i["id"] for i in history.everything(token, student_id=a_id)] == [p["id"] for p in reversed(mine)]
        assert [i["id"] for i in history.everything(token, student_id=b_id)] == [p["id"] for p in reversed(theirs)]
        assert history.everything(token, student_id=str(uuid.uuid4())) == []
        everyone = history.everything(token)
        ids = [i["id"] for i in everyone]
        assert {p["id"] for p in mine + theirs} <= set(ids)
        assert len(ids) == len(set(ids))
        instants = [datetime.fromisoformat(i["created_at"].replace("Z", "+00:00")) for i in everyone]
        assert instants == sorted(instants, reverse=True)
        # paging everyone's, 3 at a time, gives the same list
        assert [i for page in history.pages(token, 3) for i in page] == everyone


def test_who_may_list_purchases(history: History) -> None:
    for params in ({}, {"student_id": str(uuid.uuid4())}):
        problem(history.client.get(URL, params=params), 401)
        problem(history.client.get(URL, params=params, headers=bearer(history.tutor)), 403, "forbidden")


def test_bad_parameters_are_422(history: History) -> None:
    _sid, token = history.student()
    for who in (token, history.admin):
        for params in (
            *BAD_PAGES,
            {"student_id": "not-a-uuid"},
            {"student_id": "\x00"},
        ):
            problem(history.client.get(URL, params=params, headers=bearer(who)), 422, "validation-failed")


def test_a_rebuild_gives_the_live_rows(history: History) -> None:
    """Rebuilt in one batch (a purchase created, paid and refunded in it) and one event at a time, the read model
    holds exactly the rows the live projector left (run last: the module's purchases in every status)."""
    _sid, token = history.student()
    history.paid(history.buy(token, 1, T0 + timedelta(days=3)))
    dsn = history.settings.database_url
    wait_projected(dsn, ("purchases",))
    live = rows(dsn, "SELECT * FROM purchases ORDER BY purchase_id")
    assert {r[6] for r in live} == {"awaiting_payment", "paid", "refunded"}, live
    for batch_size in (5000, 1):
        generations.rebuild(dsn, Purchases(), batch_size=batch_size)
        assert rows(dsn, "SELECT * FROM purchases ORDER BY purchase_id") == live, batch_size
