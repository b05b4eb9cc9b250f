"""purchases: every package purchase with its status, for the purchase history of students and staff."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg

from domain.purchase import Purchase, PurchaseStatus
from projections.runner import Envelope, Projection, by_type, load_rows, replace_rows, topic_of

COLUMNS = (
    "purchase_id",
    "student_id",
    "tutor_id",
    "lessons",
    "amount",
    "currency",
    "status",
    "payment_intent_id",
    "created_at",
)
Rows = dict[Any, dict[str, Any]]


def _created(rows: Rows, e: Envelope) -> None:
    d = e.data
    rows[e.aggregate_id] = {
        "purchase_id": e.aggregate_id,
        "student_id": d["student_id"],
        "tutor_id": d["tutor_id"],
        "lessons": d["lessons"],
        "amount": d["amount"],
        "currency": d["currency"],
        "status": PurchaseStatus.AWAITING_PAYMENT.value,
        "payment_intent_id": d["payment_intent_id"],
        "created_at": datetime.fromisoformat(e.meta["recorded_at"]),
    }


def _becomes(status: PurchaseStatus) -> Callable[[Rows, Envelope], None]:
    def change(rows: Rows, e: Envelope) -> None:
        if (row := rows.get(e.aggregate_id)) is not None:
            row["status"] = status.value

    return change


# The events that change what the history shows: Purchase's status changes with these three alone.
ON_EVENT: dict[type, Callable[[Rows, Envelope], None]] = {
    Purchase.Created: _created,
    Purchase.Paid: _becomes(PurchaseStatus.PAID),
    Purchase.Refunded: _becomes(PurchaseStatus.REFUNDED),
}
HANDLERS = by_type(ON_EVENT)


class Purchases(Projection):
    """One row per purchase (awaiting_payment, paid, refunded), created at the business time it was recorded. A
    batch is folded in memory: one SELECT of the rows it changes, one DELETE and one COPY back."""

    name = "purchases"
    background = True  # back office: followed in the slower-paced rounds (Projection.background)
    version = 1
    tables = ("purchases",)
    topics = tuple(topic_of(c) for c in ON_EVENT)

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        table = t["purchases"]
        born = {e.aggregate_id for e in events if e.type == "Purchase.Created"}
        rows = load_rows(cur, table, COLUMNS, {e.aggregate_id for e in events} - born)
        stored = set(rows)
        for e in events:
            HANDLERS[e.type](rows, e)
        replace_rows(cur, table, COLUMNS, rows.values(), stored)
