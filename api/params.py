"""Query parameters read by hand where a handler's signature cannot declare them (optional instants)."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.errors import ValidationFailed


def instant(name: str, raw: str | None) -> datetime | None:
    """An RFC 3339 instant with an offset, in UTC; None when absent; 422 naming `name` otherwise."""
    if not raw:
        return None
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed([(name, "an RFC 3339 instant")]) from None
    if t.tzinfo is None:
        raise ValidationFailed([(name, "an instant with an offset")])
    return t.astimezone(UTC)
