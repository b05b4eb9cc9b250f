"""student_credits: lots and holds per student, and tutor earnings lines (dashboards and due work)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from domain.credits import CreditAccount
from domain.money import bps_of
from domain.payouts import TutorPayouts
from projections.runner import Envelope, Projection, topic_of


class StudentCredits(Projection):
    """Lots (remaining minutes and value), open holds (with the tutor's pending net), earnings and payouts."""

    name = "student_credits"
    version = 3  # 2: expiry_warned (the expiry warning sweep's due work); 3: lots updated in place (HOT)
    tables = ("student_credit_lots", "student_credit_holds", "tutor_earning_lines")
    topics = tuple(
        topic_of(c)
        for c in (
            CreditAccount.CreditGranted,
            CreditAccount.CreditHeld,
            CreditAccount.HoldResolved,
            CreditAccount.LotExpired,
            CreditAccount.CreditRefunded,
            CreditAccount.ExpiryWarned,
            TutorPayouts.PayoutRecorded,
        )
    )

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        batch = _Batch()
        for e in events:
            d = e.data
            if e.type == "CreditAccount.CreditGranted":
                batch.new_lots[d["lot_id"]] = [
                    d["lot_id"], d["student_id"], d["tutor_id"], d["minutes"], d["minutes"], d["amount"],
                    d["currency"], d["expires_at"], "open", False,
                ]  # fmt: skip
            elif e.type == "CreditAccount.CreditHeld":
                for p in d["parts"]:
                    batch.lot(p["lot_id"], -p["minutes"], -p["amount"])
                amount = sum(p["amount"] for p in d["parts"])
                batch.new_holds[d["booking_id"]] = [
                    d["booking_id"], d["student_id"], d["tutor_id"], sum(p["minutes"] for p in d["parts"]), amount,
                    amount - bps_of(amount, d["commission_bps"]), d["currency"], "open",
                ]  # fmt: skip
            elif e.type == "CreditAccount.HoldResolved":
                for r in d["released"]:
                    batch.lot(r["lot_id"], r["minutes"], r["amount"])
                batch.hold_state(d["booking_id"], d["outcome"])
                gross = sum(c["amount"] for c in d["captured"])
                if gross:
                    batch.lines.append(
                        (e.position, d["tutor_id"], "earned", gross - d["commission"], d["currency"], _month(e))
                    )
            elif e.type == "CreditAccount.LotExpired":
                batch.lot(d["lot_id"], -d["minutes"], -d["amount"], state="expired")
            elif e.type == "CreditAccount.CreditRefunded":
                batch.lot(d["lot_id"], -d["minutes"], -d["amount"])
            elif e.type == "CreditAccount.ExpiryWarned":
                batch.warned(d["lot_id"])
            elif e.type == "TutorPayouts.PayoutRecorded":
                batch.lines.append((e.position, d["tutor_id"], "paid_out", d["amount"], d["currency"], _month(e)))
        batch.write(cur, t["student_credit_lots"], t["student_credit_holds"], t["tutor_earning_lines"])


class _Batch:
    """What one batch of credit events does to the three tables, gathered in memory and written set-wise.

    Why: folding live, a batch holds a few bookings' events, and one statement per event (an UPDATE of the lot, an
    INSERT of the hold) was most of this projection's cost per booking (bench/booking.py): the batch now ends in at
    most five statements whatever its size. Lot changes are sums and state changes the last one wins, so they
    commute within a batch; a lot or hold created in the batch takes its later changes before it is inserted."""

    def __init__(self) -> None:
        self.new_lots: dict[str, list[Any]] = {}  # lot_id -> the INSERT's row (minutes/value remaining updated)
        self.lot_changes: dict[str, list[Any]] = {}  # lot_id -> [minutes delta, value delta, state or None]
        self.new_holds: dict[str, list[Any]] = {}  # booking_id -> the INSERT's row (state updated)
        self.hold_states: dict[str, str] = {}  # booking_id -> its new state
        self.warned_lots: set[str] = set()  # lots whose expiry warning was recorded
        self.lines: list[tuple[Any, ...]] = []

    def lot(self, lot_id: str, minutes: int, amount: int, state: str | None = None) -> None:
        row = self.new_lots.get(lot_id)
        if row is not None:
            row[4] += minutes
            row[5] += amount
            row[8] = state or row[8]
            return
        change = self.lot_changes.setdefault(lot_id, [0, 0, None])
        change[0] += minutes
        change[1] += amount
        change[2] = state or change[2]

    def warned(self, lot_id: str) -> None:
        if (row := self.new_lots.get(lot_id)) is not None:
            row[9] = True
        else:
            self.warned_lots.add(lot_id)

    def hold_state(self, booking_id: str, state: str) -> None:
        row = self.new_holds.get(booking_id)
        if row is not None:
            row[7] = state
        else:
            self.hold_states[booking_id] = state

    def write(self, cur: psycopg.Cursor[Any], lots: str, holds: str, lines: str) -> None:
        if self.new_lots:
            with cur.copy(
                f"COPY {lots} (lot_id, student_id, tutor_id, minutes, minutes_remaining, value_remaining, currency,"
                " expires_at, state, expiry_warned) FROM STDIN"
            ) as copy:
                for row in self.new_lots.values():
                    copy.write_row(row)
        if self.lot_changes:
            ids, minutes, values, states = zip(*((k, *v) for k, v in self.lot_changes.items()), strict=True)
            cur.execute(
                f"UPDATE {lots} l SET minutes_remaining = l.minutes_remaining + c.minutes,"
                " value_remaining = l.value_remaining + c.amount, state = coalesce(c.state, l.state)"
                " FROM unnest(%s::text[], %s::int4[], %s::int8[], %s::text[]) AS c(lot_id, minutes, amount, state)"
                " WHERE l.lot_id = c.lot_id",
                (list(ids), list(minutes), list(values), list(states)),
            )
        if self.warned_lots:
            cur.execute(f"UPDATE {lots} SET expiry_warned = true WHERE lot_id = ANY(%s)", (list(self.warned_lots),))
        if self.new_holds:
            with cur.copy(
                f"COPY {holds} (booking_id, student_id, tutor_id, minutes, amount, net, currency, state) FROM STDIN"
            ) as copy:
                for row in self.new_holds.values():
                    copy.write_row(row)
        if self.hold_states:
            cur.execute(
                f"UPDATE {holds} h SET state = c.state FROM unnest(%s::text[], %s::text[]) AS c(booking_id, state)"
                " WHERE h.booking_id = c.booking_id",
                (list(self.hold_states), list(self.hold_states.values())),
            )
        if self.lines:
            with cur.copy(f"COPY {lines} (position, tutor_id, kind, amount, currency, month) FROM STDIN") as copy:
                for line in self.lines:
                    copy.write_row(line)


def _month(e: Envelope) -> str:
    return datetime.fromisoformat(e.meta["recorded_at"]).strftime("%Y-%m")
