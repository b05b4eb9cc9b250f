"""Audit: an aggregate's state at any version, replayed from its own stream."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.application import AggregateNotFoundError

from application.store import EventStoreApp
from domain.errors import NotFound

_HIDDEN = {"_pending_events", "_id", "_version", "_created_on", "_modified_on"}


class Audit(EventStoreApp):
    """Admin history: replays one stream up to a version."""

    def state_at(self, aggregate_id: UUID, version: int | None) -> tuple[int, dict[str, Any], str]:
        """The aggregate's version, its state as plain JSON values, and its type name."""
        try:
            agg: Any = self.repository.get(aggregate_id, version=version)
        except AggregateNotFoundError:
            raise NotFound("no such aggregate") from None
        state = {k: v for k, v in vars(agg).items() if k not in _HIDDEN and not k.startswith("__")}
        state = msgspec.to_builtins(state, enc_hook=str)
        state.update(
            id=str(agg.id),
            version=agg.version,
            created_on=agg.created_on.isoformat(),
            modified_on=agg.modified_on.isoformat(),
        )
        return agg.version, state, type(agg).__name__
