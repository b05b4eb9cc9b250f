"""tutor_payouts: every payout recorded to a tutor, for the tutor's own list."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from domain.payouts import TutorPayouts
from projections.runner import Envelope, Projection, topic_of


class TutorPayoutHistory(Projection):
    """One row per recorded payout (append-only: a payout is never changed), at the business time it was recorded."""

    name = "tutor_payouts"
    background = True  # back office: followed in the slower-paced rounds (Projection.background)
    version = 1
    tables = ("tutor_payouts",)
    topics = (topic_of(TutorPayouts.PayoutRecorded),)

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        with cur.copy(
            f"COPY {t['tutor_payouts']} (payout_id, tutor_id, amount, currency, reference, recorded_at) FROM STDIN"
        ) as copy:
            for e in events:
                d = e.data
                at = datetime.fromisoformat(e.meta["recorded_at"])
                copy.write_row((d["payout_id"], d["tutor_id"], d["amount"], d["currency"], d["reference"], at))
