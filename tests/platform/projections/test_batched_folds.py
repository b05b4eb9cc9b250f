"""A projection that gathers a batch's changes in memory and writes them set-wise must leave exactly the rows that
applying the same events one at a time leaves. Checked for student_credits (lots, holds and earning lines, where a
lot or hold created in a batch may change again in it) over random credit histories made by the real aggregate and
stored in the real log, and for notifications (a booking's parties recorded and looked up in the same batch,
read receipts of notifications the batch itself writes) over random booking and inbox events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid5

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.settings import Settings
from application.store import EventStoreApp
from domain.credits import CreditAccount
from domain.errors import DomainError
from domain.ids import NAMESPACE
from projections.notifications import Notifications
from projections.runner import Envelope, read_batch
from projections.student_credits import StudentCredits
from tests.platform.projections.support import assert_batches_agree, snapshot

pytestmark = pytest.mark.small_pool

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
            conn.execute(projection.ddl(names))
        with conn.cursor() as cur:
            projection.apply(cur, events, together)
            for e in events:
                projection.apply(cur, [e], alone)
        conn.commit()
    for table in projection.tables:
        assert snapshot(prepared.database_url, together[table]) == snapshot(prepared.database_url, alone[table])


BOOKINGS = [uuid.uuid4() for _ in range(3)]
PEOPLE = [str(uuid.uuid4()) for _ in range(3)]  # students, and whoever reads an inbox
TUTOR = str(uuid.uuid4())
LATER = (
    "Booking.Confirmed", "Booking.Declined", "Booking.Expired", "Booking.Cancelled", "Booking.RescheduleProposed",
    "Booking.Rescheduled", "Booking.Completed", "Booking.Reviewed", "Booking.ReviewResponded",
)  # fmt: skip
booking_events = st.lists(
    st.one_of(
        st.tuples(st.just("Booking.Requested"), st.sampled_from(BOOKINGS), st.sampled_from(PEOPLE)),
        st.tuples(st.sampled_from(LATER), st.sampled_from(BOOKINGS), st.sampled_from(("student", "tutor"))),
        st.tuples(st.just("Inbox.Reminded"), st.sampled_from(BOOKINGS), st.sampled_from(PEOPLE)),
        st.tuples(st.just("Inbox.Read"), st.integers(0, 30), st.sampled_from(PEOPLE)),
    ),
    min_size=1,
    max_size=30,
)


def _envelopes(steps: list[tuple[Any, ...]]) -> list[Envelope]:
    """Booking and inbox events as the notifications projection reads them (each booking requested at most once,
    as the log has it; a read receipt names notifications written before it, some of them by this batch)."""
    out: list[Envelope] = []
    requested: set[Any] = set()
    meta = {"recorded_at": T0.isoformat()}
    for i, (kind, subject, who) in enumerate(steps, start=1):
        if kind == "Booking.Requested":
            if subject in requested:
                continue
            requested.add(subject)
            data = {"student_id": who, "tutor_id": TUTOR, "start": T0.isoformat()}
        elif kind == "Inbox.Reminded":
            data = {"user_id": who, "booking_id": str(subject), "start": T0.isoformat()}
        elif kind == "Inbox.Read":
            earlier = [uuid5(NAMESPACE, f"notification:{p}:{u}") for p in range(1, i) for u in (*PEOPLE, TUTOR)]
            data = {"notification_ids": earlier[: subject + 1], "user_id": who}
            subject = uuid.uuid4()
        else:
            data = {"by": who, "proposed_by": who, "start": T0.isoformat(), "rating": 5}
        out.append(Envelope(i, subject, 1, f"domain.x:{kind}", kind, data, meta))
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=booking_events, cut=st.integers(1, 5))
def test_notifications_in_one_batch_equal_one_event_at_a_time(
    prepared: Settings, steps: list[tuple[Any, ...]], cut: int
) -> None:
    assert_batches_agree(prepared.database_url, Notifications(), _envelopes(steps), cut, "nt")
