"""Credit expiry: lots past their validity become breakage, found by the worker's sweep.

The first test runs the real `tutorconnect worker` (dramatiq + sweeper) as a subprocess and moves the test clock
past a lot's `expires_at`: within 15 s the unused credit is posted to breakage and the student's credits show it
gone; running the sweep again (in process) changes nothing. The second covers credit that a booking held across
the expiry date and gave back afterwards: it must become breakage too (it failed before expire() and the sweep
stopped skipping lots already marked expired)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from application.money import Money
from application.settings import Settings
from domain.credits import HoldState
from tests.money.support import (
    API,
    bearer,
    count_events,
    grant,
    head,
    ok,
    redis_clock,
    wait_until,
)
from tests.support.api import register, staff_login, z
from tests.support.system import server_env, spawn, stop_process

T0 = datetime(2031, 6, 1, 8, 0, tzinfo=UTC)


class Scene:
    """A student with two lots with one tutor (A: 600 min for 38000 valid 180 days, B: 300 min for 20000 valid a
    year) and one lesson held from lot A, all bought at T0."""

    def __init__(self, client: Any, settings: Settings) -> None:
        self.client, self.settings = client, settings
        self.dsn = settings.database_url
        self.admin = staff_login(client, settings, "admin")["access_token"]
        self.finance = staff_login(client, settings, "finance")["access_token"]
        student = register(client, "student")
        self.sid, self.token = uuid.UUID(student["user"]["id"]), student["access_token"]
        self.tid = uuid.uuid4()
        self.money = Money(settings, redis_clock(settings))
        self.at(T0)
        self.lot_a, _ = grant(self.money, self.sid, self.tid, 600, 38000, T0 + timedelta(days=180))
        self.lot_b, _ = grant(self.money, self.sid, self.tid, 300, 20000, T0 + timedelta(days=365))
        self.booking = f"exp-{uuid.uuid4()}"
        self.money.hold(self.sid, self.booking, self.tid, 60, 2000)  # from lot A, which expires first: 3800

    def at(self, when: datetime) -> None:
        ok(self.client.put(f"{API}/admin/test-clock", json={"now": z(when)}, headers=bearer(self.admin)))

    def fresh(self) -> dict[str, str]:
        return {"X-Min-Position": str(head(self.dsn))}

    def balance(self, account: str) -> int:
        body = ok(
            self.client.get(
                f"{API}/finance/accounts/{account}/balance", headers={**bearer(self.finance), **self.fresh()}
            )
        )
        return int(body["balance"]["amount"])

    def credits(self) -> dict[str, Any]:
        body = ok(self.client.get(f"{API}/student/credits", headers={**bearer(self.token), **self.fresh()}))
        items = [i for i in body["items"] if i["tutor_id"] == str(self.tid)]
        return items[0] if items else {"minutes_available": 0, "minutes_held": 0, "lots": []}


@pytest.fixture
def worker_env(prepared: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """workers.actors, run in this process: the environment its Settings.from_env() reads, and `send` replaced by
    a direct call so a sweep's enqueued jobs run at once (the broker is not needed)."""
    for key, value in server_env(prepared).items():
        if key in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "TUTORCONNECT_TEST_CLOCK"):
            monkeypatch.setenv(key, value)
    from workers import actors

    monkeypatch.setattr(actors.expire_credits, "send", lambda student_id: actors.expire_credits.fn(student_id))
    yield actors


def test_worker_sweep_turns_expired_credit_into_breakage(
    client: Any, prepared: Settings, worker_env: Any, tmp_path: Path
) -> None:
    s = Scene(client, prepared)
    item = s.credits()
    assert (item["minutes_available"], item["minutes_held"]) == (840, 60)
    assert [lot["id"] for lot in item["lots"]] == [s.lot_a, s.lot_b]
    assert s.balance(f"student_credit:{s.sid}") == 58000 - 3800

    # The worker runs; nothing is due yet.
    worker = spawn(["worker", "--threads", "2"], server_env(prepared), tmp_path / "worker.log")
    try:
        # Past lot A's expiry (not B's): within 15 s the sweep finds it and expires it.
        s.at(T0 + timedelta(days=181))
        wait_until(
            lambda: count_events(s.dsn, "CreditAccount.LotExpired", s.lot_a) == 1 and s.balance("breakage") == 34200,
            timeout=15,
            what="lot A expired by the worker",
            every=0.5,
        )
    finally:
        stop_process(worker)
    item = s.credits()
    assert (item["minutes_available"], item["minutes_held"]) == (300, 60), item
    assert [lot["id"] for lot in item["lots"]] == [s.lot_b]
    assert s.balance(f"student_credit:{s.sid}") == 20000
    assert s.balance(f"booking_hold:{s.booking}") == 3800

    # The sweep again, twice, and the student's expiry job twice: nothing more happens.
    before = head(s.dsn)
    worker_env.sweep_credit_expiry.fn()
    worker_env.sweep_credit_expiry.fn()
    worker_env.expire_credits.fn(str(s.sid))
    worker_env.expire_credits.fn(str(s.sid))
    assert head(s.dsn) == before
    assert s.balance("breakage") == 34200
    assert count_events(s.dsn, "CreditAccount.LotExpired") == 1

    # A year on, lot B goes the same way (the in-process sweep this time).
    s.at(T0 + timedelta(days=366))
    wait_until(lambda: s.credits()["minutes_available"] == 0 or None, timeout=5, what="lot B past its date")
    worker_env.sweep_credit_expiry.fn()
    assert count_events(s.dsn, "CreditAccount.LotExpired", s.lot_b) == 1
    assert s.balance("breakage") == 34200 + 20000
    assert s.balance(f"student_credit:{s.sid}") == 0
    before = head(s.dsn)
    worker_env.sweep_credit_expiry.fn()
    assert head(s.dsn) == before
    result = ok(s.client.post(f"{API}/finance/reconciliation", headers={**bearer(s.finance), **s.fresh()}))
    assert result["ok"], result["checks"]


def test_credit_released_after_its_lot_expired_becomes_breakage(
    client: Any, prepared: Settings, worker_env: Any
) -> None:
    """A lesson held from lot A before A's expiry is declined (or cancelled early) after it: the hour comes back
    to lot A, which is past its date, so it can never be used; the next sweep must turn it into breakage like the
    rest of the lot instead of leaving it as deferred revenue forever."""
    s = Scene(client, prepared)
    s.at(T0 + timedelta(days=181))
    s.credits()  # the sweep reads the student_credits read model: let it catch up first
    worker_env.sweep_credit_expiry.fn()
    assert s.balance("breakage") == 34200

    s.money.resolve(s.sid, s.booking, 0, HoldState.RELEASED)  # released: 60 minutes worth 3800 back to lot A
    wait_until(lambda: s.credits()["minutes_held"] == 0 or None, timeout=5, what="hold released")
    assert s.credits()["minutes_available"] == 300  # lot A's hour is not usable: it is past its date
    worker_env.sweep_credit_expiry.fn()
    worker_env.expire_credits.fn(str(s.sid))

    assert s.balance(f"student_credit:{s.sid}") == 20000, (
        "the hour released into expired lot A is still deferred revenue after the sweep: expired credit that was"
        " held at expiry and released later is never posted to breakage"
    )
    assert s.balance("breakage") == 38000
    assert s.credits()["minutes_available"] == 300
    result = ok(s.client.post(f"{API}/finance/reconciliation", headers={**bearer(s.finance), **s.fresh()}))
    assert result["ok"], result["checks"]
