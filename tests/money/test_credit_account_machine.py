"""CreditAccount in memory (no database): a hypothesis state machine over grants, holds, settlements, expiry and
refunds, against a model that counts minutes and money per lot.

Invariants after every step: no lot's remaining minutes or value is negative or above what was granted; each lot's
minutes and value are conserved (remaining + held + captured + expired + refunded = granted); what `available`
says is the unexpired, unheld minutes of the model; a hold is settled at most once; the events the aggregate
records replay to the same state."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from domain.credits import CreditAccount, HoldState, InsufficientCredit
from domain.errors import WrongStatus

T0 = datetime(2031, 1, 1, tzinfo=UTC)
TUTORS = ("t1", "t2")
FIELDS = ("held", "captured", "expired", "refunded")


class CreditMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.account = CreditAccount(student_id=uuid.uuid4())
        self.events: list[Any] = list(self.account.collect_events())
        self.now = T0
        # the model: per lot, its grant and where its minutes and money went
        self.lots: dict[str, dict[str, Any]] = {}
        self.holds: dict[str, dict[str, Any]] = {}  # booking -> {parts: [(lot, minutes, amount)], settled}

    def _collect(self) -> None:
        self.events += self.account.collect_events()

    @rule(
        tutor=st.sampled_from(TUTORS),
        minutes=st.sampled_from([30, 60, 300, 600]),
        price=st.integers(min_value=0, max_value=50_000),
        days=st.integers(min_value=1, max_value=60),
    )
    def grant(self, tutor: str, minutes: int, price: int, days: int) -> None:
        lot = f"lot-{len(self.lots)}"
        assert self.account.grant(lot, lot, tutor, minutes, price, "USD", self.now + timedelta(days=days))
        assert not self.account.grant(lot, lot, tutor, minutes, price, "USD", self.now)  # a redelivery adds nothing
        self.lots[lot] = {
            "tutor": tutor,
            "minutes": minutes,
            "price": price,
            "expires": self.now + timedelta(days=days),
        }
        self.lots[lot] |= {f"{f}_{k}": 0 for f in FIELDS for k in ("minutes", "amount")}
        self._collect()

    @rule(tutor=st.sampled_from(TUTORS), minutes=st.sampled_from([30, 60, 90]))
    def hold(self, tutor: str, minutes: int) -> None:
        booking = f"b-{len(self.holds)}"
        free = self.account.available(tutor, self.now)
        if free < minutes:
            with pytest.raises(InsufficientCredit):
                self.account.hold(booking, tutor, minutes, self.now, 2000)
            return
        self.account.hold(booking, tutor, minutes, self.now, 2000)
        parts = [(p.lot_id, p.minutes, p.amount) for p in self.account.holds[booking].parts]
        assert sum(m for _, m, _ in parts) == minutes
        for lot, m, a in parts:
            self.lots[lot]["held_minutes"] += m
            self.lots[lot]["held_amount"] += a
        self.holds[booking] = {"parts": parts, "settled": False}
        with pytest.raises(WrongStatus):  # one hold per booking
            self.account.hold(booking, tutor, minutes, self.now, 2000)
        self._collect()

    @precondition(lambda self: any(not h["settled"] for h in self.holds.values()))
    @rule(data=st.data(), capture=st.sampled_from([0, 15, 30, 60, 1000]))
    def settle(self, data: st.DataObject, capture: int) -> None:
        booking = data.draw(st.sampled_from(sorted(b for b, h in self.holds.items() if not h["settled"])))
        result = self.account.resolve(booking, capture, HoldState.CAPTURED if capture else HoldState.RELEASED)
        total = sum(m for _, m, _ in self.holds[booking]["parts"])
        assert result["captured_minutes"] == min(capture, total)
        assert result["captured_minutes"] + result["released_minutes"] == total
        event = self.account.collect_events()[-1]
        for c in event.captured:
            self.lots[c.lot_id]["captured_minutes"] += c.minutes
            self.lots[c.lot_id]["captured_amount"] += c.amount
        for lot, m, a in self.holds[booking]["parts"]:
            self.lots[lot]["held_minutes"] -= m
            self.lots[lot]["held_amount"] -= a
        self.events.append(event)
        self.holds[booking]["settled"] = True
        with pytest.raises(WrongStatus):  # settled once
            self.account.resolve(booking, capture, HoldState.CAPTURED)

    @rule(days=st.integers(min_value=1, max_value=40))
    def time_passes_and_lots_expire(self, days: int) -> None:
        self.now += timedelta(days=days)
        before = {k: (v.minutes_remaining, v.value_remaining) for k, v in self.account.lots.items()}
        self.account.expire(self.now)
        for lot, (m, a) in before.items():
            gone_m = m - self.account.lots[lot].minutes_remaining
            gone_a = a - self.account.lots[lot].value_remaining
            if gone_m or gone_a:
                assert self.lots[lot]["expires"] <= self.now
                assert self.account.lots[lot].minutes_remaining == 0
            self.lots[lot]["expired_minutes"] += gone_m
            self.lots[lot]["expired_amount"] += gone_a
        self._collect()

    @precondition(lambda self: bool(self.lots))
    @rule(data=st.data(), part=st.one_of(st.none(), st.integers(min_value=1, max_value=20_000)))
    def refund(self, data: st.DataObject, part: int | None) -> None:
        lot = data.draw(st.sampled_from(sorted(self.lots)))
        minutes, amount = self.account.refund(lot, part)
        assert minutes >= 0 and amount >= 0 and (part is None or amount <= part)
        self.lots[lot]["refunded_minutes"] += minutes
        self.lots[lot]["refunded_amount"] += amount
        self._collect()

    @invariant()
    def minutes_and_money_are_conserved_per_lot(self) -> None:
        for lot, m in self.lots.items():
            state = self.account.lots[lot]
            assert 0 <= state.minutes_remaining <= m["minutes"]
            assert 0 <= state.value_remaining <= m["price"]
            assert state.minutes_remaining + sum(m[f"{f}_minutes"] for f in FIELDS) == m["minutes"], (lot, m)
            assert state.value_remaining + sum(m[f"{f}_amount"] for f in FIELDS) == m["price"], (lot, m)

    @invariant()
    def available_is_the_unexpired_unheld_minutes(self) -> None:
        for tutor in TUTORS:
            expected = sum(
                self.account.lots[lot].minutes_remaining
                for lot, m in self.lots.items()
                if m["tutor"] == tutor and m["expires"] > self.now
            )
            assert self.account.available(tutor, self.now) == expected

    @invariant()
    def the_events_replay_to_the_same_state(self) -> None:
        replayed: Any = None
        for e in self.events:
            replayed = e.mutate(replayed)
        assert replayed.lots == self.account.lots
        assert replayed.holds == self.account.holds


CreditMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_credit_account = CreditMachine.TestCase
