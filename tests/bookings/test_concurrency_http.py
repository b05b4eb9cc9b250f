"""Races through the HTTP API of a real granian process (a module-wide `live_server`): many students for one
slot, and one student's credit spent by many simultaneous requests. Users register over HTTP; credit is granted through the
application (what a paid package's webhook does)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg

from application.money import Money
from application.settings import Settings
from projections.reconcile import reconcile
from tests.bookings.support import API, PROBLEMS, head, ok, wait_until, z
from tests.support.api import bearer, register
from tests.support.world import approve_tutor, grant


def _slot(days: int, hour: int) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days, hours=hour)


def _race(http: httpx.Client, requests: list[tuple[dict[str, str], dict[str, Any]]]) -> list[httpx.Response]:
    """Send every request at once (threads released together by a barrier)."""
    barrier = threading.Barrier(len(requests))

    def go(item: tuple[dict[str, str], dict[str, Any]]) -> httpx.Response:
        headers, body = item
        barrier.wait()
        return http.post(API + "/bookings", json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(go, requests))


def _ledger_caught_up(dsn: str) -> bool:
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "SELECT position FROM projection_tracking WHERE name = 'ledger' AND state = 'active'"
        ).fetchone()
    return bool(row) and int(row[0]) >= head(dsn)


def _world(settings: Settings, http: httpx.Client) -> tuple[UUID, str]:
    body = register(http, "tutor")
    tutor = UUID(body["user"]["id"])
    subject, _ = approve_tutor(settings, tutor)  # available around the clock in UTC
    return tutor, subject


def test_fifty_students_race_for_one_slot(shared_live_server: str, shared_settings: Settings) -> None:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with httpx.Client(base_url=shared_live_server, timeout=60, limits=limits) as http:
        tutor, subject = _world(shared_settings, http)
        money = Money(shared_settings)
        students = []
        for _ in range(50):
            body = register(http, "student")
            grant(money, UUID(body["user"]["id"]), tutor, 120, 12000)
            students.append(bearer(body))
        start = _slot(3, 10)
        request = {"tutor_id": str(tutor), "subject_id": subject, "start": z(start), "duration_minutes": 60}
        responses = _race(http, [(h, request) for h in students])
    codes = Counter(r.status_code for r in responses)
    assert codes == {201: 1, 409: 49}, {**codes, "sample": [r.text for r in responses][:3]}
    for r in responses:
        if r.status_code == 409:
            assert r.json()["type"] == PROBLEMS + "booking-conflict", r.text
    winner = next(r for r in responses if r.status_code == 201).json()
    assert winner["start"] == z(start)
    # exactly one booking and one hold were recorded
    with psycopg.connect(shared_settings.database_url) as c:
        counts = [
            c.execute(
                "SELECT count(*) FROM tutorconnect_events WHERE topic LIKE %s AND convert_from(state, 'UTF8') LIKE %s",
                (topic, f"%{tutor}%"),
            ).fetchone()
            for topic in ("%:CreditAccount.CreditHeld", "%:Booking.Requested")
        ]
    assert [n[0] for n in counts if n] == [1, 1], counts
    wait_until(lambda: _ledger_caught_up(shared_settings.database_url), 15, "the ledger projection to catch up")
    result = reconcile(shared_settings.database_url)
    assert result["ok"], result["checks"]


def test_one_students_credit_under_ten_simultaneous_requests(
    shared_live_server: str, shared_settings: Settings
) -> None:
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    with httpx.Client(base_url=shared_live_server, timeout=60, limits=limits) as http:
        tutor, subject = _world(shared_settings, http)
        body = register(http, "student")
        student, headers = UUID(body["user"]["id"]), bearer(body)
        _, granted_at = grant(Money(shared_settings), student, tutor, 120, 12000)  # exactly two 60-minute lessons
        requests = [
            (headers, {"tutor_id": str(tutor), "subject_id": subject, "start": z(_slot(2 + i // 5, 9 + 2 * (i % 5))),
                       "duration_minutes": 60})
            for i in range(10)
        ]  # fmt: skip
        responses = _race(http, requests)
        codes = Counter(r.status_code for r in responses)
        assert codes[201] == 2, {**codes, "bodies": [r.text for r in responses]}
        for r in responses:
            if r.status_code != 201:
                assert (r.status_code, r.json()["type"]) in (
                    (422, PROBLEMS + "insufficient-credit"),
                    (409, PROBLEMS + "booking-conflict"),
                ), r.text
        last = max(int(r.headers["X-Event-Position"]) for r in responses if r.status_code == 201)
        credit = ok(http.get(API + "/student/credits", headers={**headers, "X-Min-Position": str(last)}))["items"]
        assert len(credit) == 1 and credit[0]["tutor_id"] == str(tutor)
        assert (credit[0]["minutes_available"], credit[0]["minutes_held"]) == (0, 120), credit
        mine = ok(http.get(API + "/bookings", headers={**headers, "X-Min-Position": str(last)}))["items"]
        assert len(mine) == 2 and {b["status"] for b in mine} == {"pending"}
        assert granted_at < last
    account = Money(shared_settings).settlement.account(student)
    assert account.available(str(tutor), datetime.now(UTC)) == 0
    assert all(lot.minutes_remaining >= 0 and lot.value_remaining >= 0 for lot in account.lots.values())
    assert sorted(sum(p.minutes for p in h.parts) for h in account.holds.values()) == [60, 60]
    wait_until(lambda: _ledger_caught_up(shared_settings.database_url), 15, "the ledger projection to catch up")
    result = reconcile(shared_settings.database_url)
    assert result["ok"], result["checks"]
    assert {c["name"]: c["ok"] for c in result["checks"]}["no_negative_student_balance"]
