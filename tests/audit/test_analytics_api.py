"""Admin analytics through the real app, on a small history recorded under the test clock: the overview, and every
timeseries metric (signups, bookings and bookings by status, revenue, commission, breakage) per day, week and month
as a continuous series (0 where nothing happened), and bad input (422 naming the parameter, 403 for non-admins)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from application.clock import Clock
from application.money import Money
from application.settings import Settings
from domain.credits import HoldState
from tests.support.api import API, Actor, ok, problem, signup, z
from tests.support.world import approve_tutor, grant

D1 = datetime(2031, 3, 3, 9, 0, tzinfo=UTC)  # a Monday: three people sign up, two lessons are requested
D2 = D1 + timedelta(days=1)  # a third lesson is requested and confirmed
D3 = D1 + timedelta(days=2)  # an hour of credit is captured: 3800 of which 760 commission
D4 = datetime(2031, 3, 15, 9, 0, tzinfo=UTC)  # the credit (expired on 13 March) is expired: breakage
LESSONS = [datetime(2031, 3, 15, h, 0, tzinfo=UTC) for h in (12, 13, 14)]  # every lesson starts on D4's day


@dataclass
class History:
    client: Any
    admin: Actor
    student: Actor
    tutor: Actor

    def series(self, metric: str, interval: str, frm: datetime, to: datetime, **more: str) -> list[tuple[str, int]]:
        params = {"metric": metric, "interval": interval, "from": z(frm), "to": z(to), **more}
        r = self.client.get(f"{API}/admin/analytics/timeseries", params=params, headers=self.fresh(self.admin))
        body = ok(r)
        assert body["next_cursor"] is None and body["metric"] == metric and body["interval"] == interval, body
        assert body["unit"] == ("count" if metric in ("signups", "bookings") else "minor_units"), body
        return [(p["period_start"], p["value"]) for p in body["items"]]

    def fresh(self, who: Actor) -> dict[str, str]:
        head = self.client.app.state["services"].tutoring.head()
        return {**who.auth, "X-Min-Position": str(head)}


def _at(client: Any, admin: Actor, when: datetime) -> None:
    ok(client.put(f"{API}/admin/test-clock", json={"now": z(when)}, headers=admin.auth))


@pytest.fixture
def history(client: Any, prepared: Settings, admin: Actor) -> History:
    money = Money(prepared, Clock(prepared.redis_url, True, cache_s=0.0))
    _at(client, admin, D1)
    student, _ = signup(client, "student")
    signup(client, "student")
    tutor, _ = signup(client, "tutor")
    subject_id, _ = approve_tutor(prepared, uuid.UUID(tutor.id), amount=3800)
    grant(money, uuid.UUID(student.id), uuid.UUID(tutor.id), 600, 38000, expires_at=D1 + timedelta(days=10))
    booked = []
    for i, start in enumerate(LESSONS):
        if i == 2:
            _at(client, admin, D2)
        body = {"tutor_id": tutor.id, "subject_id": subject_id, "start": z(start), "duration_minutes": 60}
        booked.append(ok(client.post(f"{API}/bookings", json=body, headers=student.auth), 201)["id"])
    ok(client.post(f"{API}/bookings/{booked[2]}/confirm", headers=tutor.auth))
    _at(client, admin, D3)
    direct = f"direct-{uuid.uuid4()}"  # a hold outside the bookings, captured whole: 3800, 20 % commission
    money.hold(uuid.UUID(student.id), direct, uuid.UUID(tutor.id), 60, 2000)
    result, _ = money.resolve(uuid.UUID(student.id), direct, 60, HoldState.CAPTURED)
    assert result["tutor_net"] == 3040, result
    _at(client, admin, D4)
    money.expire_credits(uuid.UUID(student.id))
    return History(client, admin, student, tutor)


def test_overview(history: History) -> None:
    h = history
    body = ok(h.client.get(f"{API}/admin/analytics/overview", headers=h.fresh(h.admin)))
    assert body["users_by_role"] == {"student": 2, "tutor": 1, "admin": 1, "finance": 0}
    assert (body["active_tutors"], body["bookings_today"]) == (1, 3)
    assert body["revenue"] == {"amount": 760, "currency": "USD"}
    assert body["bookings_by_status"] == {"pending": 2, "confirmed": 1}


def test_counts_per_day_week_and_month(history: History) -> None:
    h = history
    days = ("2031-03-02T00:00:00Z", "2031-03-03T00:00:00Z", "2031-03-04T00:00:00Z", "2031-03-05T00:00:00Z")
    frm, to = datetime(2031, 3, 2, 12, tzinfo=UTC), datetime(2031, 3, 6, tzinfo=UTC)
    assert h.series("signups", "day", frm, to) == list(zip(days, (0, 3, 0, 0), strict=True))
    assert h.series("bookings", "day", frm, to) == list(zip(days, (0, 2, 1, 0), strict=True))
    assert h.series("bookings", "day", frm, to, status="pending") == list(zip(days, (0, 2, 0, 0), strict=True))
    assert h.series("bookings", "day", frm, to, status="confirmed") == list(zip(days, (0, 0, 1, 0), strict=True))
    assert h.series("bookings", "day", frm, to, status="cancelled") == list(zip(days, (0, 0, 0, 0), strict=True))
    # weeks start on Monday (the first one holds `from`); `to` is exclusive
    weeks = h.series("bookings", "week", datetime(2031, 3, 1, tzinfo=UTC), datetime(2031, 3, 17, tzinfo=UTC))
    assert weeks == [("2031-02-24T00:00:00Z", 0), ("2031-03-03T00:00:00Z", 3), ("2031-03-10T00:00:00Z", 0)]
    months = h.series("signups", "month", datetime(2031, 2, 15, tzinfo=UTC), datetime(2031, 4, 10, tzinfo=UTC))
    assert months == [("2031-02-01T00:00:00Z", 0), ("2031-03-01T00:00:00Z", 3), ("2031-04-01T00:00:00Z", 0)]


def test_money_per_period(history: History) -> None:
    h = history
    days = ("2031-03-03T00:00:00Z", "2031-03-04T00:00:00Z", "2031-03-05T00:00:00Z", "2031-03-06T00:00:00Z")
    frm, to = datetime(2031, 3, 3, tzinfo=UTC), datetime(2031, 3, 7, tzinfo=UTC)
    # revenue means what it meant: the platform's commission income (as in the overview)
    assert h.series("revenue", "day", frm, to) == list(zip(days, (0, 0, 760, 0), strict=True))
    assert h.series("commission", "day", frm, to) == list(zip(days, (0, 0, 760, 0), strict=True))
    assert h.series("commission", "day", frm, to, currency="USD") == list(zip(days, (0, 0, 760, 0), strict=True))
    assert h.series("commission", "day", frm, to, currency="EUR") == list(zip(days, (0, 0, 0, 0), strict=True))
    assert h.series("revenue", "month", frm, to) == [("2031-03-01T00:00:00Z", 760)]
    # breakage: the expired credit's value, on the day it expired, equal to the ledger's breakage account
    kept = h.series("breakage", "day", datetime(2031, 3, 14, tzinfo=UTC), datetime(2031, 3, 16, tzinfo=UTC))
    balance = ok(h.client.get(f"{API}/finance/accounts/breakage/balance", headers=h.fresh(h.admin)))["balance"]
    assert kept[0] == ("2031-03-14T00:00:00Z", 0) and kept[1][0] == "2031-03-15T00:00:00Z"
    assert kept[1][1] == balance["amount"] > 0
    assert h.series("breakage", "week", datetime(2031, 3, 3, tzinfo=UTC), datetime(2031, 3, 10, tzinfo=UTC)) == [
        ("2031-03-03T00:00:00Z", 0)
    ]


def test_bad_input(client: Any, admin: Actor, student: Actor) -> None:
    url = f"{API}/admin/analytics/timeseries"
    for params, field in (
        ({"metric": "visits"}, "metric"),
        ({"metric": "bookings", "interval": "hour"}, "interval"),
        ({"metric": "bookings", "from": "2031-03-05T00:00:00Z", "to": "2031-03-01T00:00:00Z"}, "to"),
        ({"metric": "bookings", "from": "2011-01-01T00:00:00Z", "to": "2031-03-01T00:00:00Z"}, "to"),
        ({"metric": "bookings", "from": "yesterday"}, "from"),
        ({"metric": "bookings", "status": "lost"}, "status"),
        ({"metric": "signups", "status": "pending"}, "status"),
        ({"metric": "signups", "currency": "USD"}, "currency"),
        ({"metric": "revenue", "currency": "usd"}, "currency"),
    ):
        body = problem(client.get(url, params=params, headers=admin.auth), (400, 422))
        assert field in str(body.get("errors") or body), (params, body)
    problem(client.get(url, headers=admin.auth), (400, 422))  # metric is required
    problem(client.get(url, params={"metric": "signups"}, headers=student.auth), 403)
    problem(client.get(f"{API}/admin/analytics/overview", headers=student.auth), 403)
    problem(client.get(url, params={"metric": "signups"}), 401)
    # no history: every period is there, 0
    body = ok(
        client.get(
            url,
            params={
                "metric": "commission",
                "interval": "day",
                "from": "2031-01-01T00:00:00Z",
                "to": "2031-01-04T00:00:00Z",
            },
            headers=admin.auth,
        )
    )
    assert [(p["period_start"], p["value"]) for p in body["items"]] == [
        ("2031-01-01T00:00:00Z", 0),
        ("2031-01-02T00:00:00Z", 0),
        ("2031-01-03T00:00:00Z", 0),
    ]
