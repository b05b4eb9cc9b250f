"""The one CSV writer of every export and the journal: streamed in chunks, and safe to open in a spreadsheet.

Any cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is prefixed with `'` (the contract's rule,
OWASP "CSV injection"), so that `=HYPERLINK(...)` in a name is shown as text instead of run as a formula. The rule
is applied to every cell, numbers included: our exports hold no negative numbers, and a rule with exceptions is one
an export added later could slip through."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")
CHUNK = 65536


def cell(value: Any) -> Any:
    """A value as written to a CSV cell: text that a spreadsheet would evaluate is made literal."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(FORMULA_LEAD) else text


def stream(header: list[str] | None, rows: Iterable[Iterable[Any]]) -> Iterator[bytes]:
    """CSV bytes in chunks of about 64 KiB: the header row (when given), then every row, each cell `cell`-escaped.
    With no header the first row is taken as one (a dataset whose columns are known once the first row is read)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    if header is not None:
        w.writerow([cell(h) for h in header])
    for row in rows:
        w.writerow([cell(v) for v in row])
        if buf.tell() > CHUNK:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()
