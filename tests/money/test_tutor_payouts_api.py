"""A tutor's payouts, GET /tutor/payouts (the real app behind TestClient, real projector threads, the test clock):
the payouts finance recorded with POST /finance/payouts, the tutor's own only, newest first by when they were
recorded, paged by cursor; only tutors may ask; bad paging parameters are 422."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from application.money import Money
from application.settings import Settings
from domain.credits import HoldState
from projections import generations
from projections.tutor_payouts import TutorPayoutHistory
from tests.money.support import (
    API,
    bearer,
    grant,
    head,
    module_database,
    ok,
    problem,
    redis_clock,
    rows,
    wait_projected,
)
from tests.support.api import BAD_PAGES, register, staff_login, z

T0 = datetime(2031, 6, 1, 9, 0, tzinfo=UTC)
URL = f"{API}/tutor/payouts"


@dataclass
class Payroll:
    client: Any
    settings: Settings
    admin: str
    finance: str
    student: str
    money: Money

    def at(self, when: datetime) -> None:
        ok(self.client.put(f"{API}/admin/test-clock", json={"now": z(when)}, headers=bearer(self.admin)))

    def tutor_who_earned(self, net_lessons: int) -> tuple[str, str]:
        """A tutor with `net_lessons` completed 60-minute lessons (3040 USD cents each after commission)."""
        body = register(self.client, "tutor")
        tid = uuid.UUID(body["user"]["id"])
        sid = uuid.uuid4()
        money = self.money
        grant(money, sid, tid, 60 * net_lessons, 3800 * net_lessons)
        for _ in range(net_lessons):
            booking = f"bk-{uuid.uuid4()}"
            money.hold(sid, booking, tid, 60, 2000)
            result, _ = money.resolve(sid, booking, 60, HoldState.CAPTURED)
            assert result["tutor_net"] == 3040
        return str(tid), body["access_token"]

    def pay(self, tutor_id: str, amount: int, reference: str, when: datetime) -> dict[str, Any]:
        self.at(when)
        body = {"tutor_id": tutor_id, "amount": {"amount": amount, "currency": "USD"}, "reference": reference}
        return ok(self.client.post(f"{API}/finance/payouts", json=body, headers=bearer(self.finance)), 201)  # type: ignore[no-any-return]

    def pages(self, token: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Every page of the caller's payouts, following next_cursor; the items in order."""
        items: list[dict[str, Any]] = []
        cursor = None
        for _ in range(50):
            params = {**({"limit": limit} if limit else {}), **({"cursor": cursor} if cursor else {})}
            headers = {**bearer(token), "X-Min-Position": str(head(self.settings.database_url))}
            r = self.client.get(URL, params=params, headers=headers)
            body = ok(r)
            assert r.headers["X-Projection-Position"].isdigit()
            assert set(body) == {"items", "next_cursor"}, body
            items.extend(body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                return items
            assert len(body["items"]) == (limit or 20), body
        raise AssertionError("the list did not end within 50 pages")


@pytest.fixture(scope="module")
def payroll(pg_admin_url: str, redis_server: str) -> Iterator[Payroll]:
    from litestar.testing import TestClient

    from api.app import create_app

    with module_database(pg_admin_url, redis_server, 14) as settings:
        with TestClient(create_app(settings), base_url="http://testserver.local", timeout=30) as client:
            admin = staff_login(client, settings, "admin")["access_token"]
            finance = staff_login(client, settings, "finance")["access_token"]
            student = register(client, "student")["access_token"]
            try:
                yield Payroll(client, settings, admin, finance, student, Money(settings, redis_clock(settings)))
            finally:
                ok(client.delete(f"{API}/admin/test-clock", headers=bearer(admin)))


def test_a_tutor_pages_their_own_payouts_newest_first(payroll: Payroll) -> None:
    tid, token = payroll.tutor_who_earned(10)
    other_id, other = payroll.tutor_who_earned(2)
    assert payroll.pages(token) == []
    # recorded out of order in business time: the list follows when each was recorded
    made = [(3, 1000), (1, 2000), (4, 1500), (0, 500), (2, 2500)]  # (days after T0, amount)
    paid = {d: payroll.pay(tid, amount, f"SEPA {d}", T0 + timedelta(days=d)) for d, amount in made}
    theirs = payroll.pay(other_id, 3000, "SEPA other", T0 + timedelta(days=5))

    items = payroll.pages(token)
    assert [i["id"] for i in items] == [paid[d]["id"] for d in sorted(paid, reverse=True)]
    for item, d in zip(items, sorted(paid, reverse=True), strict=True):
        assert set(item) == {"id", "amount", "reference", "recorded_at"}, item
        assert (item["amount"], item["reference"]) == (paid[d]["amount"], f"SEPA {d}")
        recorded = datetime.fromisoformat(item["recorded_at"].replace("Z", "+00:00"))
        assert item["recorded_at"].endswith("Z")
        assert abs(recorded - (T0 + timedelta(days=d))) < timedelta(minutes=1), item
    assert payroll.pages(token, 2) == items  # pages of 2 (2, 2, 1) give the same list
    assert payroll.pages(token, 5) == items  # a full last page still ends with a null cursor
    assert [i["id"] for i in payroll.pages(other)] == [theirs["id"]]
    # what the list shows adds up to what the earnings call paid out
    earnings = ok(payroll.client.get(f"{API}/tutor/earnings", headers=bearer(token)))
    assert earnings["paid_out"] == {"amount": sum(i["amount"]["amount"] for i in items), "currency": "USD"}


def test_a_refused_payout_is_not_listed(payroll: Payroll) -> None:
    tid, token = payroll.tutor_who_earned(1)
    body = {"tutor_id": tid, "amount": {"amount": 3041, "currency": "USD"}, "reference": "too much"}
    problem(payroll.client.post(f"{API}/finance/payouts", json=body, headers=bearer(payroll.finance)), 422)
    assert payroll.pages(token) == []
    done = payroll.pay(tid, 3040, "all of it", T0 + timedelta(days=9))
    assert [i["id"] for i in payroll.pages(token)] == [done["id"]]


def test_only_tutors_list_payouts(payroll: Payroll) -> None:
    problem(payroll.client.get(URL), 401)
    for token in (payroll.student, payroll.admin, payroll.finance):
        problem(payroll.client.get(URL, headers=bearer(token)), 403, "forbidden")


def test_bad_parameters_are_422(payroll: Payroll) -> None:
    _tid, token = payroll.tutor_who_earned(1)
    for params in (
        *BAD_PAGES,
        {"cursor": "\x00"},
    ):
        problem(payroll.client.get(URL, params=params, headers=bearer(token)), 422, "validation-failed")


def test_a_rebuild_gives_the_live_rows(payroll: Payroll) -> None:
    """Rebuilt in one batch and one event at a time, the read model holds exactly the live rows (run last)."""
    dsn = payroll.settings.database_url
    wait_projected(dsn, ("tutor_payouts",))
    live = rows(dsn, "SELECT * FROM tutor_payouts ORDER BY payout_id")
    assert len(live) >= 7, live
    for batch_size in (5000, 1):
        generations.rebuild(dsn, TutorPayoutHistory(), batch_size=batch_size)
        assert rows(dsn, "SELECT * FROM tutor_payouts ORDER BY payout_id") == live, batch_size
