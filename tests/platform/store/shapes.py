"""Events as the store writes them and streams as an older version of the code stored them, for the recorded-shape
tests (test_recorded_shapes.py, test_recorded_value_shapes.py). No database: the project's MetaMapper turns events
into stored events and back, as the store does."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import StoredEvent

from application.clock import Clock
from application.store import MetaMapper, MsgspecTranscoder

MAPPER = MetaMapper(MsgspecTranscoder(), Clock())


def parse(lines: str) -> list[tuple[str, str]]:
    """`Name {json}` lines as (event name, stored JSON)."""
    return [(name, json) for name, json in (line.split(" ", 1) for line in lines.strip().splitlines())]


def recorded(events: list[Any]) -> list[tuple[str, str]]:
    """(event name, stored JSON without the event's timestamp and _meta) as the store would write them."""
    out = []
    for e in events:
        state = msgspec.json.decode(MAPPER.to_stored_event(e).state)
        del state["timestamp"], state["_meta"]
        out.append((type(e).__name__, msgspec.json.encode(state).decode()))
    return out


def stored(cls: type, aggregate_id: UUID, shapes: list[tuple[str, str]]) -> list[StoredEvent]:
    """A stream as an older version of the code stored it."""
    return [
        StoredEvent(
            originator_id=aggregate_id,
            originator_version=v,
            topic=f"{cls.__module__}:{cls.__qualname__}.{name}",
            state=msgspec.json.encode({**msgspec.json.decode(json), "timestamp": "2031-03-01T09:00:00Z"}),
        )
        for v, (name, json) in enumerate(shapes, start=1)
    ]


def replay(cls: type, shapes: list[tuple[str, str]]) -> Any:
    """An aggregate from a stream as an older version of the code stored it."""
    aggregate: Any = None
    for s in stored(cls, UUID(int=99), shapes):
        aggregate = MAPPER.to_domain_event(s).mutate(aggregate)
    assert isinstance(aggregate, cls)
    return aggregate
