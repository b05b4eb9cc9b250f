"""A projection that gathers a batch's changes in memory and writes them set-wise must leave exactly the rows that
applying the same events one at a time leaves. Checked for student_credits (lots, holds and earning lines, where a
lot or hold created in a batch may change again in it) over random credit histories made by the real aggregate and
stored in the real log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.settings import Settings
from application.store import EventStoreApp
from domain.credits import CreditAccount
from domain.errors import DomainError
from projections.runner import read_batch
from projections.student_credits import StudentCredits
from tests.projections.support import snapshot

T0 = datetime(2031, 1, 1, tzinfo=UTC)
TUTORS = (str(uuid.uuid4()), str(uuid.uuid4()))

steps = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.sampled_from(TUTORS), st.sampled_from((60, 120, 300)), st.integers(1, 40)),
        st.tuples(st.just("hold"), st.sampled_from(TUTORS), st.sampled_from((30, 60, 90))),
        st.tuples(st.just("resolve"), st.integers(0, 20), st.integers(0, 2), st.sampled_from(("captured", "released"))),
        st.tuples(st.just("expire"), st.integers(1, 40)),
        st.tuples(st.just("refund"), st.integers(0, 20)),
    ),
    min_size=1,
    max_size=25,
)


def _history(ops: list[tuple[Any, ...]]) -> CreditAccount:
    """A CreditAccount granted a first lot, then taken through `ops` (steps the aggregate refuses are left out, as the API would refuse them)."""
    account = CreditAccount(student_id=uuid.uuid4())
    now, lots, bookings = T0, [], []
    for op in [("grant", TUTORS[0], 120, 30), *ops]:
        try:
            if op[0] == "grant":
                lot = f"lot-{len(lots)}"
                account.grant(lot, "p1", op[1], op[2], op[2] * 50, "EUR", T0 + timedelta(days=op[3]))
                lots.append(lot)
            elif op[0] == "hold":
                booking = str(uuid.uuid4())
                account.hold(booking, op[1], op[2], now, 2000)
                bookings.append((booking, op[2]))
            elif op[0] == "resolve" and bookings:
                booking, minutes = bookings[op[1] % len(bookings)]
                account.resolve(booking, minutes * op[2] // 2 if op[3] == "captured" else 0, op[3])
            elif op[0] == "expire":
                now += timedelta(days=op[1])
                account.expire(now)
            elif op[0] == "refund" and lots:
                account.refund(lots[op[1] % len(lots)])
        except DomainError:
            pass
    return account


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=steps)
def test_student_credits_in_one_batch_equal_one_event_at_a_time(prepared: Settings, ops: list[tuple[Any, ...]]) -> None:
    app = EventStoreApp(prepared)
    start = app.head()
    app.record(_history(ops))
    projection = StudentCredits()
    run = uuid.uuid4().hex[:8]
    together = {t: f"sc_{run}_together_{t}" for t in projection.tables}
    alone = {t: f"sc_{run}_alone_{t}" for t in projection.tables}
    with psycopg.connect(prepared.database_url) as conn:
        events, _ = read_batch(conn, start, app.head(), projection.topics, 10_000)
        assert events, "the history recorded credit events"
        for names in (together, alone):
            conn.execute(projection.ddl(names))  # type: ignore[call-overload]
        with conn.cursor() as cur:
            projection.apply(cur, events, together)
            for e in events:
                projection.apply(cur, [e], alone)
        conn.commit()
    for table in projection.tables:
        assert snapshot(prepared.database_url, together[table]) == snapshot(prepared.database_url, alone[table])
