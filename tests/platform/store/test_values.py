"""Frozen values of aggregate state survive the aggregate cache's copy (a pickle round trip) unchanged."""

from __future__ import annotations

import pickle
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.credits import CreditAccount, HoldState
from domain.platform import DEFAULT_POLICY, Policy

T0 = datetime(2031, 1, 1, tzinfo=UTC)


@given(
    lots=st.lists(st.tuples(st.integers(30, 600), st.integers(0, 50_000)), min_size=1, max_size=5),
    holds=st.lists(st.sampled_from((30, 60, 90)), max_size=6),
    settle=st.booleans(),
)
def test_a_copied_credit_account_equals_the_original(
    lots: list[tuple[int, int]], holds: list[int], settle: bool
) -> None:
    account = CreditAccount(student_id=uuid.uuid4())
    tutor = str(uuid.uuid4())
    for i, (minutes, amount) in enumerate(lots):
        account.grant(f"lot-{i}", "p", tutor, minutes, amount, "EUR", T0 + timedelta(days=30))
    booked = []
    for minutes in holds:
        if account.available(tutor, T0) >= minutes:
            booked.append(str(uuid.uuid4()))
            account.hold(booked[-1], tutor, minutes, T0, 2000)
    if settle and booked:
        account.resolve(booked[0], 0, HoldState.RELEASED)
    copy = pickle.loads(pickle.dumps(account, pickle.HIGHEST_PROTOCOL))
    assert copy.lots == account.lots and copy.holds == account.holds
    assert all(type(v.state) is type(account.lots[k].state) for k, v in copy.lots.items())


def test_a_copied_policy_is_the_same_value() -> None:
    custom = Policy.of({**vars_of(DEFAULT_POLICY), "commission_bps": 1234})
    for p in (DEFAULT_POLICY, custom):
        assert pickle.loads(pickle.dumps(p)) == p


def vars_of(p: Policy) -> dict[str, int]:
    return {name: getattr(p, name) for name in Policy.__slots__}
