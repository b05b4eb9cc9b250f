"""Audit context: each export of a dataset (the admin exports, the finance journal as CSV) is recorded before its
data leaves, as an Export of its own: who took which data out, in what format, with which filters, and when."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event


class Export(Aggregate):
    """One export, recorded as it starts (whether the client then read it to the end is not known)."""

    @event("Started")
    def __init__(
        self,
        dataset: str,
        format: str,  # noqa: A002  (the field's name in the audit log: csv or json)
        filters: dict[str, str],
        by: UUID,
        started_at: datetime,
    ) -> None:
        self.dataset = dataset
        self.format = format
        self.filters = filters
        self.by = by
        self.started_at = started_at
