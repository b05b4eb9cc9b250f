"""Audit context: exports are recorded (an Export per export) before they stream."""

from __future__ import annotations

from collections.abc import Mapping

from application.accounts import Account
from application.store import EventStoreApp
from domain.exports import Export


class Exports(EventStoreApp):
    """Records each export of data by a staff member."""

    def record_export(self, actor: Account, dataset: str, fmt: str, filters: Mapping[str, str]) -> int:
        """Record that `actor` is exporting `dataset` as `fmt` with `filters`: the event's position."""
        export = Export(dataset=dataset, format=fmt, filters=dict(filters), by=actor.user_id, started_at=self.now())
        return self.record(export)
