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
    version = 1
    tables = ("student_credit_lots", "student_credit_holds", "tutor_earning_lines")
    topics = tuple(
        topic_of(c)
        for c in (
            CreditAccount.CreditGranted,
            CreditAccount.CreditHeld,
            CreditAccount.HoldResolved,
            CreditAccount.LotExpired,
            CreditAccount.CreditRefunded,
            TutorPayouts.PayoutRecorded,
        )
    )

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        lots, holds, lines = t["student_credit_lots"], t["student_credit_holds"], t["tutor_earning_lines"]
        for e in events:
            d = e.data
            if e.type == "CreditAccount.CreditGranted":
                cur.execute(
                    f"INSERT INTO {lots} (lot_id, student_id, tutor_id, minutes, minutes_remaining, value_remaining,"
                    " currency, expires_at, state) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'open')",
                    (
                        d["lot_id"],
                        d["student_id"],
                        d["tutor_id"],
                        d["minutes"],
                        d["minutes"],
                        d["amount"],
                        d["currency"],
                        d["expires_at"],
                    ),
                )
            elif e.type == "CreditAccount.CreditHeld":
                for p in d["parts"]:
                    self._lot(cur, lots, p["lot_id"], -p["minutes"], -p["amount"])
                amount = sum(p["amount"] for p in d["parts"])
                net = amount - bps_of(amount, d["commission_bps"])
                cur.execute(
                    f"INSERT INTO {holds} (booking_id, student_id, tutor_id, minutes, amount, net, currency, state)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, 'open')",
                    (
                        d["booking_id"],
                        d["student_id"],
                        d["tutor_id"],
                        sum(p["minutes"] for p in d["parts"]),
                        amount,
                        net,
                        d["currency"],
                    ),
                )
            elif e.type == "CreditAccount.HoldResolved":
                for r in d["released"]:
                    self._lot(cur, lots, r["lot_id"], r["minutes"], r["amount"])
                cur.execute(f"UPDATE {holds} SET state = %s WHERE booking_id = %s", (d["outcome"], d["booking_id"]))
                gross = sum(c["amount"] for c in d["captured"])
                if gross:
                    cur.execute(
                        f"INSERT INTO {lines} (position, tutor_id, kind, amount, currency, month)"
                        " VALUES (%s, %s, 'earned', %s, %s, %s)",
                        (e.position, d["tutor_id"], gross - d["commission"], d["currency"], _month(e)),
                    )
            elif e.type == "CreditAccount.LotExpired":
                self._lot(cur, lots, d["lot_id"], -d["minutes"], -d["amount"], state="expired")
            elif e.type == "CreditAccount.CreditRefunded":
                self._lot(cur, lots, d["lot_id"], -d["minutes"], -d["amount"])
            elif e.type == "TutorPayouts.PayoutRecorded":
                cur.execute(
                    f"INSERT INTO {lines} (position, tutor_id, kind, amount, currency, month)"
                    " VALUES (%s, %s, 'paid_out', %s, %s, %s)",
                    (e.position, d["tutor_id"], d["amount"], d["currency"], _month(e)),
                )

    @staticmethod
    def _lot(
        cur: psycopg.Cursor[Any], lots: str, lot_id: str, minutes: int, amount: int, state: str | None = None
    ) -> None:
        cur.execute(
            f"UPDATE {lots} SET minutes_remaining = minutes_remaining + %s, value_remaining = value_remaining + %s,"
            " state = coalesce(%s, state) WHERE lot_id = %s",
            (minutes, amount, state, lot_id),
        )


def _month(e: Envelope) -> str:
    return datetime.fromisoformat(e.meta["recorded_at"]).strftime("%Y-%m")
