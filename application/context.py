"""Who and why: the metadata stamped on every event, set once per request (api) or job (workers)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Context:
    """The actor and the correlation of the work in progress."""

    actor_id: str | None = None
    actor_role: str | None = None
    correlation_id: str = ""
    causation_id: str | None = None


_EMPTY = Context()
_current: ContextVar[Context] = ContextVar("tutorconnect_context", default=_EMPTY)


def current() -> Context:
    """The context of the running request or job."""
    ctx = _current.get()
    if not ctx.correlation_id:
        ctx = replace(ctx, correlation_id=str(uuid.uuid4()))
        _current.set(ctx)
    return ctx


@contextlib.contextmanager
def acting(**changes: Any) -> Iterator[Context]:
    """Run a block with some context fields set (actor, correlation, causation)."""
    token = _current.set(replace(_current.get(), **changes))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def set_actor(actor_id: str | None, actor_role: str | None) -> None:
    """Record the authenticated actor for the rest of this request."""
    _current.set(replace(_current.get(), actor_id=actor_id, actor_role=actor_role))


def begin(correlation_id: str, causation_id: str | None = None) -> Any:
    """Start a fresh context (for middleware); returns a token for `end`."""
    return _current.set(Context(correlation_id=correlation_id, causation_id=causation_id))


def end(token: Any) -> None:
    """Leave the context begun with `begin`."""
    _current.reset(token)
