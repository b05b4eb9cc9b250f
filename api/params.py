"""Query parameters read by hand where a handler's signature cannot declare them (optional instants), and keyset
paging newest first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from api.deps import decode_cursor, encode_cursor
from domain.errors import ValidationFailed

T = TypeVar("T")


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


@dataclass(frozen=True)
class NewestFirst:
    """Keyset pages of a list newest first: by the instant column `at`, ties by the id column `key` (both
    descending); a page's `next_cursor` is its last row's (at, key). Lists whose items are records in time
    (purchases, payouts, reviews) page alike."""

    at: str
    key: str

    def after(self, cursor: str | None) -> tuple[str, tuple[Any, ...]]:
        """The SQL condition (and its parameters) of the rows after `cursor` ("TRUE" for the first page); 422 for a
        cursor the API did not issue (checked before the read-model wait)."""
        last = decode_cursor(cursor, tuple[datetime, UUID])
        if last is None:
            return "TRUE", ()
        return f"({self.at}, {self.key}) < (%s::timestamptz, %s::uuid)", (last[0], last[1])

    @property
    def order(self) -> str:
        """The ORDER BY of the pages."""
        return f"{self.at} DESC, {self.key} DESC"

    def page(self, rows: Sequence[T], n: int) -> tuple[Sequence[T], str | None]:
        """The first `n` of up to `n + 1` rows read, and the cursor of the next page (None on the last)."""
        if len(rows) <= n:
            return rows, None
        last: Any = rows[n - 1]
        return rows[:n], encode_cursor([last[self.at].isoformat(), str(last[self.key])])
