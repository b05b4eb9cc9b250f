"""Subject: names are trimmed and bounded; rename and retire record only real changes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import ValidationFailed
from domain.subject import Subject


def names(subject: Subject) -> list[str]:
    return [type(e).__name__ for e in subject.collect_events()]


def test_create_trims_name_and_category() -> None:
    s = Subject.create("  Algebra \n", "\tMathematics ")
    assert (s.name, s.category, s.active) == ("Algebra", "Mathematics", True)
    assert names(s) == ["Created"]


@pytest.mark.parametrize(
    ("name", "category", "field"),
    [
        ("", "Maths", "name"),
        ("   ", "Maths", "name"),
        ("Algebra", "", "category"),
        ("Algebra", "\t\n", "category"),
        ("x" * 101, "Maths", "name"),
        ("Algebra", "y" * 101, "category"),
    ],
)
def test_create_refuses_empty_or_long_values(name: str, category: str, field: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        Subject.create(name, category)
    assert [f for f, _ in info.value.errors] == [field]


def test_limits_are_counted_after_trimming() -> None:
    s = Subject.create("  " + "x" * 100 + "  ", "c" * 100)
    assert s.name == "x" * 100 and s.category == "c" * 100


def test_rename_trims_and_records_once() -> None:
    s = Subject.create("Algebra", "Maths")
    s.collect_events()
    s.rename("  Linear Algebra ")
    assert s.name == "Linear Algebra"
    s.rename("Linear Algebra")
    s.rename(" Linear Algebra\t")
    assert names(s) == ["Renamed"]


@pytest.mark.parametrize("bad", ["", "  ", "z" * 101])
def test_rename_refuses_invalid_names_and_keeps_the_old_one(bad: str) -> None:
    s = Subject.create("Algebra", "Maths")
    s.collect_events()
    with pytest.raises(ValidationFailed):
        s.rename(bad)
    assert s.name == "Algebra" and names(s) == []


def test_retire_twice_records_one_event() -> None:
    s = Subject.create("Algebra", "Maths")
    s.retire()
    s.retire()
    assert not s.active
    assert names(s) == ["Created", "Retired"]
    assert s.version == 2


def test_retired_subject_keeps_its_id_and_history() -> None:
    s = Subject.create("Algebra", "Maths")
    s.rename("Algebra I")
    s.retire()
    events = s.collect_events()
    replayed: Any = None
    for e in events:
        replayed = e.mutate(replayed)
    assert (replayed.id, replayed.name, replayed.category, replayed.active, replayed.version) == (
        s.id,
        "Algebra I",
        "Maths",
        False,
        3,
    )


commands = st.lists(
    st.one_of(st.just(("retire", None)), st.tuples(st.just("rename"), st.sampled_from(["A", " A ", "B", "b", "  B"]))),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(commands)
def test_events_record_exactly_the_changes(cmds: list[tuple[str, str | None]]) -> None:
    s = Subject.create("A", "Cat")
    s.collect_events()
    expected, name, active = [], "A", True
    for cmd, arg in cmds:
        if cmd == "retire":
            s.retire()
            if active:
                expected.append("Retired")
            active = False
        else:
            assert arg is not None
            s.rename(arg)
            if arg.strip() != name:
                expected.append("Renamed")
            name = arg.strip()
    assert names(s) == expected
    assert (s.name, s.active, s.version) == (name, active, 1 + len(expected))
