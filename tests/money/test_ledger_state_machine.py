"""A stateful property test of credits and the double-entry ledger against the real event store.

Hypothesis drives random grants (what a paid package does), holds, captures / releases / late cancels, expiries
(the business clock moves), refunds and payouts through `application.money.Money`, keeps its own model of the
minutes, and after every step catches the ledger and student_credits projections up and checks:

- `projections.reconcile.reconcile` is ok, check by check (entries balance, postings sum to zero, no student
  balance below zero, holds resolved at most once, outstanding credit = deferred revenue, payouts within payable,
  live ledger = replay);
- every lot's minutes match the model, never negative; no lot keeps value without minutes (nor, at a price of at
  least a minor unit a minute, minutes without value); each student's `student_credit` balance equals the value
  of their lots; each booking_hold is its hold's value while open and 0 once resolved; each tutor's payable is
  what they earned less what they were paid; the aggregate offers exactly the model's bookable minutes;
- after the expiry sweep (run after every step, as the worker does every few seconds) no unheld minute of a lot
  past its date is left: it became breakage, including minutes a hold gave back after the date;
- resolving a hold twice raises WrongStatus and records nothing.

At the end of every run the ledger and student_credits read models are rebuilt from the log and must be identical
(same statement digest, same rows)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from application.money import Money
from application.settings import Settings
from domain.credits import HoldState, InsufficientCredit
from domain.errors import ValidationFailed, WrongStatus
from domain.payouts import PayoutExceedsPayable
from projections import generations
from projections.ledger import Ledger, digest
from projections.reconcile import live_entries, reconcile
from projections.student_credits import StudentCredits
from tests.money.support import (
    ManualClock,
    account,
    catch_up,
    conn_for,
    grant,
    head,
    ledger_balance,
    refund_lot,
    rows,
    scalar,
)

CURRENCY = {"T1": "USD", "T2": "EUR"}


def half_up(x: Fraction) -> int:
    return int((x * 2 + 1) // 2)


@dataclass
class LotModel:
    lot_id: str
    student: str
    tutor: str
    minutes: int
    price: int
    expires_at: datetime
    remaining: int  # unheld, unexpired-or-not, unrefunded minutes


@dataclass
class HoldModel:
    booking_id: str
    student: str
    tutor: str
    parts: list[tuple[str, int]]
    commission_bps: int
    open: bool = True
    value: int = 0


@dataclass
class World:
    students: dict[str, UUID] = field(default_factory=dict)
    tutors: dict[str, UUID] = field(default_factory=dict)
    lots: dict[str, LotModel] = field(default_factory=dict)
    holds: dict[str, HoldModel] = field(default_factory=dict)
    earned: dict[str, int] = field(default_factory=dict)
    paid: dict[str, int] = field(default_factory=dict)


def lot_rows(dsn: str, lot_ids: list[str]) -> dict[str, tuple[int, int, str]]:
    found = rows(
        dsn,
        "SELECT lot_id, minutes_remaining, value_remaining, state FROM student_credit_lots WHERE lot_id = ANY(%s)",
        (lot_ids,),
    )
    return {r[0]: (int(r[1]), int(r[2]), r[3]) for r in found}


def snapshot_credits(dsn: str) -> tuple[list[Any], ...]:
    return (
        rows(dsn, "SELECT * FROM student_credit_lots ORDER BY lot_id"),
        rows(dsn, "SELECT * FROM student_credit_holds ORDER BY booking_id"),
        rows(dsn, "SELECT * FROM tutor_earning_lines ORDER BY position, tutor_id"),
    )


def ledger_digest(dsn: str) -> tuple[str, int]:
    position = int(scalar(dsn, "SELECT position FROM projection_tracking WHERE name = 'ledger' AND state = 'active'"))
    entries = live_entries(conn_for(dsn), position)
    return digest(entries), len(entries)


def make_machine(app_settings: Settings) -> type[RuleBasedStateMachine]:
    dsn = app_settings.database_url

    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.clock = ManualClock(datetime(2030, 1, 1, 9, 0, tzinfo=UTC))
            self.app = Money(app_settings, self.clock)
            self.w = World()

        @initialize()
        def people(self) -> None:
            self.w.students = {"S1": uuid.uuid4(), "S2": uuid.uuid4()}
            self.w.tutors = {"T1": uuid.uuid4(), "T2": uuid.uuid4()}

        # --------------------------------------------------------------------------------- model helpers

        def usable(self, student: str, tutor: str) -> list[LotModel]:
            now = self.clock.now()
            lots = [
                lot
                for lot in self.w.lots.values()
                if lot.student == student and lot.tutor == tutor and lot.remaining > 0 and lot.expires_at > now
            ]
            return sorted(lots, key=lambda lot: (lot.expires_at, lot.lot_id))

        # ----------------------------------------------------------------------------------------- rules

        @rule(
            student=st.sampled_from(["S1", "S2"]),
            tutor=st.sampled_from(["T1", "T2"]),
            lessons=st.sampled_from([1, 5, 10, 20]),
            price=st.one_of(st.integers(1, 50), st.integers(1000, 100_000)),
            days=st.integers(1, 30),
        )
        def purchase(self, student: str, tutor: str, lessons: int, price: int, days: int) -> None:
            expires = self.clock.now() + timedelta(days=days)
            lot_id, _ = grant(
                self.app,
                self.w.students[student],
                self.w.tutors[tutor],
                lessons * 60,
                price,
                expires,
                currency=CURRENCY[tutor],
            )
            self.w.lots[lot_id] = LotModel(lot_id, student, tutor, lessons * 60, price, expires, lessons * 60)

        @rule(
            data=st.data(),
            minutes=st.sampled_from([30, 60, 60, 90, 120, 600]),
            commission_bps=st.sampled_from([0, 1500, 2000, 3333, 10_000]),
        )
        def hold(self, data: st.DataObject, minutes: int, commission_bps: int) -> None:
            # Mostly a student and tutor with usable credit; sometimes any pair (usually refused).
            pairs = [(s, t) for s in ("S1", "S2") for t in ("T1", "T2")]
            funded = [p for p in pairs if self.usable(*p)]
            use_funded = bool(funded) and data.draw(st.integers(0, 9), label="pick") < 9
            student, tutor = data.draw(st.sampled_from(funded if use_funded else pairs), label="student, tutor")
            booking = f"b-{uuid.uuid4()}"
            usable = self.usable(student, tutor)
            enough = sum(lot.remaining for lot in usable) >= minutes
            event(
                "hold"
                if enough
                else f"hold refused funded={bool(funded)} use={use_funded} avail={sum(lot.remaining for lot in usable)} want={minutes}"
            )
            if not enough:
                before = head(dsn)
                with pytest.raises(InsufficientCredit):
                    self.app.hold(self.w.students[student], booking, self.w.tutors[tutor], minutes, commission_bps)
                assert head(dsn) == before, "a refused hold recorded something"
                return
            self.app.hold(self.w.students[student], booking, self.w.tutors[tutor], minutes, commission_bps)
            parts, left = [], minutes
            for lot in usable:  # the lots that expire first
                take = min(left, lot.remaining)
                lot.remaining -= take
                parts.append((lot.lot_id, take))
                left -= take
                if not left:
                    break
            self.w.holds[booking] = HoldModel(booking, student, tutor, parts, commission_bps)
            catch_up(dsn, Ledger())
            self.w.holds[booking].value = ledger_balance(dsn, f"booking_hold:{booking}")
            assert self.w.holds[booking].value >= 0

        @precondition(lambda self: any(h.open for h in self.w.holds.values()))
        @rule(data=st.data(), how=st.sampled_from(["release", "late_cancel", "capture"]))
        def resolve(self, data: st.DataObject, how: str) -> None:
            hold = data.draw(st.sampled_from([b for b, h in self.w.holds.items() if h.open]), label="booking")
            h = self.w.holds[hold]
            total = sum(m for _, m in h.parts)
            capture = {"capture": total, "release": 0, "late_cancel": total // 2}[how]
            outcome = {
                "capture": HoldState.CAPTURED,
                "release": HoldState.RELEASED,
                "late_cancel": HoldState.CANCELLED,
            }[how]
            result, _ = self.app.resolve(self.w.students[h.student], hold, capture, outcome)
            assert result["captured_minutes"] == capture
            assert result["released_minutes"] == total - capture
            left = capture
            for lot_id, m in h.parts:
                take = min(left, m)
                self.w.lots[lot_id].remaining += m - take
                if m - take and self.w.lots[lot_id].expires_at <= self.clock.now():
                    event("minutes released into a lot past its date")
                left -= take
            h.open = False
            self.w.earned[h.tutor] = self.w.earned.get(h.tutor, 0) + result["tutor_net"]
            catch_up(dsn, Ledger())
            # The capture splits into tutor net + commission at the hold's rate, rounded half up.
            postings = rows(
                dsn,
                "SELECT account, side, amount FROM ledger_postings WHERE position ="
                " (SELECT max(position) FROM ledger_entries WHERE description LIKE %s)",
                (f"booking {hold} %",),
            )
            released = sum(a for acc, _side, a in postings if acc.startswith("student_credit:"))
            gross = h.value - released
            commission = sum(a for acc, _side, a in postings if acc == "platform_commission")
            assert commission == half_up(Fraction(gross * h.commission_bps, 10_000)), (postings, h)
            assert result["tutor_net"] == gross - commission
            # Every hold is resolved at most once.
            before = head(dsn)
            with pytest.raises(WrongStatus):
                self.app.resolve(self.w.students[h.student], hold, capture, outcome)
            assert head(dsn) == before

        @rule(days=st.integers(1, 20))
        def expire(self, days: int) -> None:
            """Business time moves on; the sweep (below, after every step) expires what is due."""
            self.clock.advance(timedelta(days=days))
            self.sweep()
            # A second sweep at the same instant finds nothing.
            before = head(dsn)
            for student in self.w.students.values():
                self.app.expire_credits(student)
            assert head(dsn) == before, "expiring twice recorded something"

        def sweep(self) -> None:
            """What the worker's credit-expiry sweep does every few seconds: expire every student's due lots."""
            now = self.clock.now()
            for student in self.w.students.values():
                self.app.expire_credits(student)
            for lot in self.w.lots.values():
                if lot.expires_at <= now:
                    lot.remaining = 0  # unused credit past its date is breakage, whatever happened before

        @precondition(lambda self: bool(self.w.lots))
        @rule(data=st.data(), share=st.sampled_from([None, 1, 3, 50, 99]))
        def refund(self, data: st.DataObject, share: int | None) -> None:
            lot_id = data.draw(st.sampled_from(list(self.w.lots)), label="lot")
            lot = self.w.lots[lot_id]
            catch_up(dsn, StudentCredits())
            m_before, v_before, _state = lot_rows(dsn, [lot_id])[lot_id]
            amount = None if share is None else max(1, v_before * share // 100)
            minutes, value, _ = refund_lot(self.app, self.w.students[lot.student], lot_id, amount)
            if m_before <= 0 or v_before <= 0:
                assert (minutes, value) == (0, 0)
                return
            if amount is None or amount >= v_before:
                assert (minutes, value) == (m_before, v_before), "a full refund removes all unused credit"
            else:
                assert value == amount
                # No more minutes than the money refunded pays for (pro rata, rounded down).
                assert minutes * v_before <= m_before * value < (minutes + 1) * v_before
            lot.remaining -= minutes
            assert lot.remaining >= 0

        @rule(tutor=st.sampled_from(["T1", "T2"]), how=st.sampled_from(["half", "all", "over"]))
        def pay_out(self, tutor: str, how: str) -> None:
            payable = self.w.earned.get(tutor, 0) - self.w.paid.get(tutor, 0)
            amount = {"half": payable // 2, "all": payable, "over": payable + 1}[how]
            before = head(dsn)
            if amount <= 0:
                with pytest.raises(ValidationFailed):
                    self.app.pay_out(self.w.tutors[tutor], amount, CURRENCY[tutor], "ref")
            elif amount > payable:
                with pytest.raises(PayoutExceedsPayable):
                    self.app.pay_out(self.w.tutors[tutor], amount, CURRENCY[tutor], f"over {amount}")
            else:
                body, _ = self.app.pay_out(self.w.tutors[tutor], amount, CURRENCY[tutor], f"payout {how}")
                assert body["amount"] == {"amount": amount, "currency": CURRENCY[tutor]}
                self.w.paid[tutor] = self.w.paid.get(tutor, 0) + amount
                return
            assert head(dsn) == before, "a refused payout recorded something"

        # ------------------------------------------------------------------------------------- invariants

        @invariant()
        def consistent(self) -> None:
            """After every step, with both read models caught up to the log."""
            if not self.w.students:
                return
            self.sweep()
            catch_up(dsn, Ledger(), StudentCredits())
            self.books_balance()
            self.lots_match_model()
            self.accounts_match()

        def books_balance(self) -> None:
            result = reconcile(dsn)
            bad = [c for c in result["checks"] if not c["ok"]]
            assert result["ok"] and not bad, bad
            assert {c["name"] for c in result["checks"]} >= {
                "every_entry_balances",
                "postings_sum_to_zero",
                "no_negative_student_balance",
                "holds_resolved_at_most_once",
                "outstanding_credit_equals_deferred_revenue",
                "payouts_within_payable",
                "live_ledger_matches_replay",
            }

        def lots_match_model(self) -> None:
            found = lot_rows(dsn, list(self.w.lots))
            for lot_id, lot in self.w.lots.items():
                minutes, value, _state = found[lot_id]
                assert minutes >= 0 and value >= 0, (lot, found[lot_id])
                assert minutes == lot.remaining, f"lot {lot_id}: read model {minutes} min, model {lot.remaining}"
                # No value is left without minutes to use it; and, at a price of at least one minor unit a minute,
                # no minutes without value (below that, rounding may give an hour back worth nothing).
                assert minutes > 0 or value == 0, f"lot {lot_id}: {minutes} min worth {value}"
                assert value > 0 or minutes == 0 or lot.price < lot.minutes, f"lot {lot_id}: {minutes} min worth 0"
                # After the sweep no unheld minute of a lot past its date is left: it all became breakage.
                assert lot.expires_at > self.clock.now() or minutes == value == 0, (
                    f"lot {lot_id} expired at {lot.expires_at} but still holds {minutes} min worth {value}"
                    f" ({_state}) after the sweep at {self.clock.now()}"
                )
            # The aggregate agrees with the model on what can be booked now.
            now = self.clock.now()
            for s in ("S1", "S2"):
                acc = account(self.app, self.w.students[s])
                for t in ("T1", "T2"):
                    want = sum(lot.remaining for lot in self.usable(s, t))
                    assert acc.available(str(self.w.tutors[t]), now) == want

        def accounts_match(self) -> None:
            names = [f"student_credit:{sid}" for sid in self.w.students.values()]
            names += [f"tutor_payable:{tid}" for tid in self.w.tutors.values()]
            names += [f"booking_hold:{b}" for b in self.w.holds]
            balances = dict(
                rows(
                    dsn,
                    "SELECT account, sum(signed) FROM ledger_postings WHERE account = ANY(%s) GROUP BY account",
                    (names,),
                )
            )
            lots_value = dict(
                rows(
                    dsn,
                    "SELECT student_id, sum(value_remaining) FROM student_credit_lots WHERE student_id = ANY(%s)"
                    " GROUP BY student_id",
                    (list(self.w.students.values()),),
                )
            )
            for s, sid in self.w.students.items():
                bal = balances.get(f"student_credit:{sid}", 0)
                assert bal >= 0, f"{s} balance {bal}"
                assert bal == lots_value.get(sid, 0), f"{s}: student_credit {bal} != lots {lots_value.get(sid)}"
            for booking, h in self.w.holds.items():
                bal = balances.get(f"booking_hold:{booking}", 0)
                assert bal == (h.value if h.open else 0), (booking, bal, h)
            for t, tid in self.w.tutors.items():
                payable = balances.get(f"tutor_payable:{tid}", 0)
                assert payable == self.w.earned.get(t, 0) - self.w.paid.get(t, 0) >= 0, (t, payable)

        def teardown(self) -> None:
            if not self.w.students:
                return
            catch_up(dsn, Ledger(), StudentCredits())
            before, n = ledger_digest(dsn)
            generations.rebuild(dsn, Ledger())
            after, m = ledger_digest(dsn)
            assert (after, m) == (before, n), "the rebuilt ledger differs from the live one"
            assert reconcile(dsn)["digest"] == after

    return LedgerMachine


def test_ledger_state_machine(prepared: Settings) -> None:
    machine = make_machine(prepared)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=int(os.environ.get("LSM_EXAMPLES", "15")),
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            database=None,
            print_blob=True,  # a failure prints @reproduce_failure(...) to replay it exactly
            # Shrinking replays whole runs against PostgreSQL and can take many minutes: opt in with LSM_SHRINK=1.
            phases=list(Phase) if os.environ.get("LSM_SHRINK") else [Phase.explicit, Phase.generate],
        ),
    )
    # One last look at the whole run: every example's events, replayed from scratch.
    result = reconcile(prepared.database_url)
    assert result["ok"], result
    assert result["checked_events"] > 0
    dsn = prepared.database_url
    catch_up(dsn, Ledger(), StudentCredits())
    before, _ = ledger_digest(dsn)
    credits_before = snapshot_credits(dsn)
    generations.rebuild(dsn, Ledger())
    generations.rebuild(dsn, StudentCredits())
    assert ledger_digest(dsn)[0] == before == reconcile(dsn)["digest"]
    assert snapshot_credits(dsn) == credits_before, "the rebuilt student_credits differ from the live ones"
