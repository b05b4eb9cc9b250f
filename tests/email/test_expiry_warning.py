"""The warning of credit about to expire: a fact the CreditAccount records once per lot, within a week of the lot's
expiry, while some of it is unused (hypothesis over random histories, in memory); and the worker's sweep, run twice,
records it once and the student's inbox shows it once (`credit.expiring`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from application.settings import Settings
from domain.credits import EXPIRY_WARNING, CreditAccount, InsufficientCredit, LotState
from tests.email.support import World, caught_up, head
from tests.support.system import server_env
from tests.support.world import grant

T0 = datetime(2031, 1, 1, tzinfo=UTC)
TUTOR = str(uuid4())

operations = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.integers(1, 20), st.sampled_from((30, 60, 120))),
        st.tuples(st.just("hold"), st.sampled_from((30, 60))),
        st.tuples(st.just("release")),
        st.tuples(st.just("wait"), st.integers(1, 72)),  # hours
        st.tuples(st.just("warn")),
        st.tuples(st.just("expire")),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_each_lot_is_warned_of_once_within_a_week_of_its_expiry_while_some_is_unused(ops: list[Any]) -> None:
    account = CreditAccount(student_id=uuid4())
    now, held = T0, []
    warned: Counter[str] = Counter()
    for op in ops:
        if op[0] == "grant":
            lot = f"lot-{len(account.lots)}"
            account.grant(lot, lot, TUTOR, op[2], op[2] * 100, "USD", now + timedelta(days=op[1]))
        elif op[0] == "hold":
            booking = str(uuid4())
            try:
                account.hold(booking, TUTOR, op[1], now, 2000)
                held.append(booking)
            except InsufficientCredit:
                pass
        elif op[0] == "release" and held:
            from domain.credits import HoldState

            account.resolve(held.pop(), 0, HoldState.RELEASED)
        elif op[0] == "wait":
            now += timedelta(hours=op[1])
        elif op[0] == "expire":
            account.expire(now)
        else:
            before = dict(account.lots)
            n = account.warn_expiring(now)
            new = [e for e in account.collect_events() if type(e).__name__ == "ExpiryWarned"]
            assert n == len(new)
            for e in new:
                lot = before[e.lot_id]
                assert lot.state is LotState.OPEN and lot.minutes_remaining > 0 and not lot.expiry_warned
                assert now < lot.expires_at <= now + EXPIRY_WARNING
                assert (e.minutes, e.tutor_id, e.expires_at) == (
                    lot.minutes_remaining,
                    TUTOR,
                    lot.expires_at.isoformat(),
                )
                warned[e.lot_id] += 1
            for lot in account.lots.values():  # nothing due is left out
                due = (
                    lot.state is LotState.OPEN
                    and lot.minutes_remaining > 0
                    and now < lot.expires_at <= now + EXPIRY_WARNING
                )
                assert not due or lot.expiry_warned
            assert account.warn_expiring(now) == 0  # at once again: nothing more
        account.collect_events()
    assert set(warned.values()) <= {1}


@pytest.fixture
def actors(prepared: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in server_env(prepared).items():
        if key in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "TUTORCONNECT_TEST_CLOCK"):
            monkeypatch.setenv(key, value)
    from workers import actors

    monkeypatch.setattr(actors.warn_expiring_credits, "send", actors.warn_expiring_credits.fn)
    yield actors


def test_the_sweep_records_the_warning_once_per_lot_and_the_inbox_shows_it(
    client: Any, prepared: Settings, actors: Any
) -> None:
    w = World(client, prepared)
    student, tutor = UUID(w.student.id), UUID(w.tutor.id)
    soon, _ = grant(w.money, student, tutor, 120, 12000, w.clock.now() + timedelta(days=9))
    later, _ = grant(w.money, student, tutor, 60, 6000, w.clock.now() + timedelta(days=30))
    w.clock.set(w.clock.now() + timedelta(days=3))
    caught_up(w.dsn, ("student_credits",))
    for _ in range(2):
        actors.sweep_expiring_credit.fn()
        caught_up(w.dsn, ("student_credits", "notifications"))
    actors.warn_expiring_credits.fn(str(student))
    with psycopg.connect(w.dsn) as c:
        facts = c.execute(
            "SELECT convert_from(state, 'UTF8')::jsonb->>'lot_id' FROM tutorconnect_events WHERE topic LIKE %s",
            ("%CreditAccount.ExpiryWarned",),
        ).fetchall()
        inbox = c.execute(
            "SELECT data->>'lot_id', (data->>'minutes')::int FROM notifications WHERE user_id = %s"
            " AND type = 'credit.expiring'",
            (student,),
        ).fetchall()
        warned = c.execute("SELECT lot_id FROM student_credit_lots WHERE expiry_warned").fetchall()
    assert facts == [(soon,)] and inbox == [(soon, 120)] and warned == [(soon,)]
    assert later != soon
    before = head(w.dsn)
    actors.sweep_expiring_credit.fn()
    assert head(w.dsn) == before
