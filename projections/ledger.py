"""ledger: the journal (entries and postings) derived from money events by domain.ledger.postings_for."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg

from domain.credits import CreditAccount
from domain.ledger import normal_sign, postings_for
from domain.payouts import TutorPayouts
from domain.purchase import Purchase
from projections.runner import Envelope, Projection, topic_of

MONEY_TOPICS = tuple(
    topic_of(c)
    for c in (
        CreditAccount.CreditGranted,
        CreditAccount.CreditHeld,
        CreditAccount.HoldResolved,
        CreditAccount.LotExpired,
        CreditAccount.CreditRefunded,
        TutorPayouts.PayoutRecorded,
        Purchase.Refunded,
    )
)


def signed(account: str, side: str, amount: int) -> int:
    """The posting's effect on the account's balance in its normal direction."""
    return amount * normal_sign(account) * (1 if side == "debit" else -1)


def entry_rows(e: Envelope) -> tuple[str, list[tuple[str, str, int, str]]]:
    """(description, postings) of one event."""
    return postings_for(e.type, e.data)


class Ledger(Projection):
    """Entries, postings (with their signed effect) and daily deltas per account (see ledger.sql)."""

    name = "ledger"
    background = True  # back office: followed in the slower-paced rounds (Projection.background)
    version = 3
    tables = ("ledger_entries", "ledger_postings", "ledger_daily")
    topics = MONEY_TOPICS

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        entries, postings, daily = [], [], {}
        for e in events:
            description, rows = entry_rows(e)
            if not rows:
                continue
            at = datetime.fromisoformat(e.meta["recorded_at"])
            entries.append((e.position, at, description, e.type, e.aggregate_id))
            for seq, (account, side, amount, currency) in enumerate(rows):
                s = signed(account, side, amount)
                postings.append((e.position, seq, account, side, amount, currency, s, at))
                k = (account, at.date(), currency)
                daily[k] = daily.get(k, 0) + s
        if not entries:
            return
        # Binary COPY: no text formatting on our side, no parsing on the server's.
        with cur.copy(
            f"COPY {t['ledger_entries']} (position, recorded_at, description, event_type, aggregate_id)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "timestamptz", "text", "text", "uuid"])
            for row in entries:
                copy.write_row(row)
        with cur.copy(
            f"COPY {t['ledger_postings']} (position, seq, account, side, amount, currency, signed,"
            " recorded_at) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int2", "text", "text", "int8", "text", "int8", "timestamptz"])
            for row in postings:
                copy.write_row(row)
        # The batch's sums per (account, day, currency) are appended, not upserted: a statement per key would be
        # a round trip each (every booking has accounts of its own), and readers sum the rows of a key anyway.
        with cur.copy(f"COPY {t['ledger_daily']} (account, day, currency, delta) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "date", "text", "int8"])
            for (account, day, currency), delta in daily.items():
                copy.write_row((account, day, currency, delta))


def digest(entries: Iterable[tuple[int, str, list[tuple[str, str, int, str]]]]) -> str:
    """SHA-256 over the ordered entries (position, description, postings): equal ledgers, equal digests."""
    h = hashlib.sha256()
    for position, description, rows in entries:
        h.update(f"{position}|{description}".encode())
        for account, side, amount, currency in rows:
            h.update(f"|{account}:{side}:{amount}:{currency}".encode())
        h.update(b"\n")
    return h.hexdigest()
