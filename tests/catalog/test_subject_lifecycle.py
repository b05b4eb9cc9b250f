"""Subject in memory: recategorising records only a real change (trimmed, bounded); a retired subject can be
restored, an active one not; the stream replays to the same state."""

from __future__ import annotations

import pytest

from domain.errors import ValidationFailed, WrongStatus
from domain.subject import Subject


def names(subject: Subject) -> list[str]:
    return [type(e).__name__ for e in subject.collect_events()]


def test_recategorise_records_real_changes_only() -> None:
    s = Subject.create("Algebra", "Mathematics")
    s.collect_events()
    s.recategorise(" Mathematics ")
    assert names(s) == []
    s.recategorise("  Science ")
    assert s.category == "Science" and s.name == "Algebra"
    assert names(s) == ["Recategorised"]
    for bad in ("", "   ", "x" * 101):
        with pytest.raises(ValidationFailed) as info:
            s.recategorise(bad)
        assert info.value.errors[0][0] == "category"
    assert s.category == "Science"


def test_restore_brings_back_a_retired_subject_only() -> None:
    s = Subject.create("Piano", "Music")
    with pytest.raises(WrongStatus):
        s.restore()
    s.retire()
    s.restore()
    assert s.active
    with pytest.raises(WrongStatus):
        s.restore()
    assert names(s) == ["Created", "Retired", "Restored"]


def test_the_stream_replays() -> None:
    s = Subject.create("Piano", "Music")
    s.recategorise("Arts")
    s.retire()
    s.restore()
    s.retire()
    copy = None
    for e in s.collect_events():
        copy = e.mutate(copy)
    assert copy is not None
    assert (copy.name, copy.category, copy.active) == ("Piano", "Arts", False)
