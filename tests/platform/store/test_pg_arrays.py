"""application/pg_arrays.py: arrays built in PostgreSQL's binary format read back as psycopg's own adaptation of the
same list does, for any elements (hypothesis, through a real PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from application.pg_arrays import ByteaArray, Int4Array, TextArray, UuidArray
from tests.support.db import PG_URL

CASES = [
    (UuidArray, "uuid", st.uuids()),
    (Int4Array, "int4", st.integers(-(2**31), 2**31 - 1)),
    (TextArray, "text", st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))),
    (ByteaArray, "bytea", st.binary()),
]


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(PG_URL, autocommit=True) as c:
        yield c


@pytest.mark.parametrize(("kind", "sql_type", "elements"), CASES, ids=[c[1] for c in CASES])
def test_a_binary_array_reads_back_as_psycopgs_own(
    conn: psycopg.Connection[tuple[object, ...]],
    kind: type[list[object]],
    sql_type: str,
    elements: st.SearchStrategy[object],
) -> None:
    @settings(max_examples=60, deadline=None)
    @given(st.lists(elements, max_size=12))
    def check(values: list[object]) -> None:
        sql = f"SELECT %s::{sql_type}[], array_lower(%s::{sql_type}[], 1), array_ndims(%s::{sql_type}[])"
        ours = conn.execute(sql, (kind(values), kind(values), kind(values))).fetchone()
        theirs = conn.execute(sql, (list(values), list(values), list(values))).fetchone()
        assert ours is not None and theirs is not None
        assert ours == theirs
        assert ours[0] == (values if values else [])

    check()


def test_the_wrapped_list_is_what_is_sent(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    rows = conn.execute(
        "SELECT q.id, q.v, q.t FROM unnest(%s::uuid[], %s::int4[], %s::text[]) WITH ORDINALITY AS q(id, v, t, n)"
        " ORDER BY q.n",
        (UuidArray(ids), Int4Array([7, -1, 2**31 - 1]), TextArray(["a", "é", ""])),
    ).fetchall()
    assert rows == [(ids[0], 7, "a"), (ids[1], -1, "é"), (ids[2], 2**31 - 1, "")]
