"""Concurrency against real PostgreSQL: racing holds on one CreditAccount, racing resolutions of the same holds
and racing payouts to one tutor. Optimistic concurrency (a version clash is retried or refused) never lets a
student spend credit they do not have, resolves a hold twice or pays a tutor more than payable."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from application.money import Money
from application.settings import Settings
from domain.credits import HoldState, InsufficientCredit
from domain.errors import ConcurrencyConflict, WrongStatus
from domain.payouts import PayoutExceedsPayable
from projections.ledger import Ledger
from projections.reconcile import reconcile
from tests.money.support import (
    API,
    account,
    bearer,
    catch_up,
    count_events,
    grant,
    head,
    ledger_balance,
    ok,
    wait_projected,
)
from tests.support.api import register

N = 7  # lessons of credit
THREADS = 50


def credits_item(client: Any, token: str, tutor_id: uuid.UUID, after: int) -> dict[str, Any]:
    body = ok(client.get(f"{API}/student/credits", headers={**bearer(token), "X-Min-Position": str(after)}))
    items = [i for i in body["items"] if i["tutor_id"] == str(tutor_id)]
    assert len(items) == 1, body
    return items[0]  # type: ignore[no-any-return]


def race(fn: Any, args: list[Any]) -> list[str]:
    """Run fn(arg) for every arg at once (a barrier releases all threads together); return their outcomes."""
    barrier = threading.Barrier(len(args))

    def one(arg: Any) -> str:
        barrier.wait(30)
        return str(fn(arg))

    with ThreadPoolExecutor(len(args)) as pool:
        return list(pool.map(one, args))


def test_fifty_concurrent_holds_never_overspend(client: Any, prepared: Settings) -> None:
    dsn = prepared.database_url
    student = register(client, "student")
    sid = uuid.UUID(student["user"]["id"])
    tutor = uuid.uuid4()
    money = Money(prepared)
    # N × 60 minutes in three lots expiring at different times (holds take the earliest first), worth 4000/hour.
    now = money.now()
    for minutes, days in ((60, 30), (120, 60), ((N - 3) * 60, 90)):
        grant(money, sid, tutor, minutes, minutes // 60 * 4000, now + timedelta(days=days))
    assert account(money, sid).available(str(tutor), now) == N * 60

    def hold(i: int) -> str:
        try:
            money.hold(sid, f"b{i}-{sid}", tutor, 60, 2000)
            return "held"
        except InsufficientCredit:
            return "insufficient"
        except ConcurrencyConflict:
            return "conflict"

    outcomes = Counter(race(hold, list(range(THREADS))))
    assert outcomes["held"] == N, outcomes
    assert outcomes["insufficient"] + outcomes["conflict"] == THREADS - N, outcomes
    print(f"\n{THREADS} concurrent holds: {dict(outcomes)}")

    # The account, the event log, the ledger and the read model all agree: N holds, nothing left.
    acc = account(money, sid)
    assert acc.available(str(tutor), money.now()) == 0
    assert len(acc.holds) == N
    assert all(sum(p.minutes for p in h.parts) == 60 for h in acc.holds.values())
    assert count_events(dsn, "CreditAccount.CreditHeld", str(sid)) == N
    assert all(lot.minutes_remaining == 0 and lot.value_remaining == 0 for lot in acc.lots.values())
    wait_projected(dsn)
    assert ledger_balance(dsn, f"student_credit:{sid}") == 0
    held = sum(ledger_balance(dsn, f"booking_hold:{b}") for b in acc.holds)
    assert held == N * 4000
    result = reconcile(dsn)
    assert result["ok"], result["checks"]

    item = credits_item(client, student["access_token"], tutor, head(dsn))
    assert item["minutes_available"] == 0, item
    assert item["minutes_held"] == N * 60, item
    assert item["lots"] == [], item


def test_concurrent_resolves_settle_each_hold_once(client: Any, prepared: Settings) -> None:
    """Two racing resolutions per booking (say, a decline and an auto-expiry): exactly one wins for each."""
    dsn = prepared.database_url
    student = register(client, "student")
    sid = uuid.UUID(student["user"]["id"])
    tutor = uuid.uuid4()
    money = Money(prepared)
    grant(money, sid, tutor, N * 60, N * 4000)
    bookings = [f"r{i}-{sid}" for i in range(N)]
    for b in bookings:
        money.hold(sid, b, tutor, 60, 2000)

    def resolve(arg: tuple[str, int]) -> str:
        booking, capture = arg
        try:
            money.resolve(sid, booking, capture, HoldState.CAPTURED if capture else HoldState.RELEASED)
            return f"resolved:{capture}"
        except WrongStatus:
            return "already"
        except ConcurrencyConflict:
            return "conflict"

    outcomes = race(resolve, [(b, c) for b in bookings for c in (0, 60)])
    counted = Counter(o.split(":")[0] for o in outcomes)
    assert counted["resolved"] == N, outcomes
    assert count_events(dsn, "CreditAccount.HoldResolved", str(sid)) == N
    acc = account(money, sid)
    assert all(h.state != HoldState.OPEN for h in acc.holds.values())

    captured = sum(1 for b in bookings if acc.holds[b].state == HoldState.CAPTURED)
    wait_projected(dsn)
    result = reconcile(dsn)
    assert result["ok"], result["checks"]
    assert all(ledger_balance(dsn, f"booking_hold:{b}") == 0 for b in bookings)
    assert ledger_balance(dsn, f"student_credit:{sid}") == (N - captured) * 4000
    # 20 % commission of 4000 per captured lesson; the tutor's payable is the rest.
    assert ledger_balance(dsn, f"tutor_payable:{tutor}") == captured * 3200
    item = credits_item(client, student["access_token"], tutor, head(dsn))
    assert (item["minutes_available"], item["minutes_held"]) == ((N - captured) * 60, 0), item


def test_concurrent_payouts_never_exceed_payable(prepared: Settings) -> None:
    """Ten clerks record a 1000 payout at once against 3040 payable: three are recorded, the rest refused."""
    dsn = prepared.database_url
    money = Money(prepared)
    sid, tutor = uuid.uuid4(), uuid.uuid4()
    grant(money, sid, tutor, 60, 3800)
    money.hold(sid, f"p-{sid}", tutor, 60, 2000)
    assert money.resolve(sid, f"p-{sid}", 60, HoldState.CAPTURED)[0]["tutor_net"] == 3040

    def pay(i: int) -> str:
        try:
            money.pay_out(tutor, 1000, "USD", f"wire {i}")
            return "paid"
        except PayoutExceedsPayable:
            return "refused"
        except ConcurrencyConflict:
            return "conflict"

    outcomes = Counter(race(pay, list(range(10))))
    assert outcomes["paid"] == 3, outcomes
    assert count_events(dsn, "TutorPayouts.PayoutRecorded", str(tutor)) == 3
    catch_up(dsn, Ledger())
    assert ledger_balance(dsn, f"tutor_payable:{tutor}") == 40
    result = reconcile(dsn)
    assert result["ok"], result["checks"]
