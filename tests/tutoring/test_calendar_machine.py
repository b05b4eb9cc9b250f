"""Calendar in memory: a tutor's week never holds two overlapping reservations, whatever the order of reservations
and releases (a hypothesis state machine against a model of half-open intervals)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from domain.booking import BookingConflict, Calendar

MONDAY = datetime(2031, 1, 6, tzinfo=UTC)


class CalendarMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.calendar = Calendar(tutor_id=uuid.uuid4(), week="2031-W02")
        self.model: dict[str, tuple[datetime, datetime]] = {}
        self.n = 0

    @rule(slot=st.integers(min_value=0, max_value=40), length=st.sampled_from([1, 2, 3, 4]))
    def reserve(self, slot: int, length: int) -> None:
        start = MONDAY + timedelta(minutes=30 * slot)
        end = start + timedelta(minutes=30 * length)
        self.n += 1
        booking = f"b{self.n}"
        clash = any(a < end and start < b for a, b in self.model.values())
        if clash:
            with pytest.raises(BookingConflict):
                self.calendar.reserve(booking, start, end)
        else:
            self.calendar.reserve(booking, start, end)
            self.model[booking] = (start, end)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        booking = data.draw(st.sampled_from(sorted(self.model)))
        self.calendar.release(booking)
        self.calendar.release(booking)  # twice is harmless
        del self.model[booking]

    @rule(slot=st.integers(min_value=0, max_value=40))
    def the_same_booking_may_move_within_its_own_time(self, slot: int) -> None:
        if not self.model:
            return
        booking, (a, b) = sorted(self.model.items())[0]
        self.calendar.reserve(booking, a, b)  # re-reserving its own interval never clashes with itself

    @invariant()
    def reservations_never_overlap_and_match_the_model(self) -> None:
        slots = {k: (datetime.fromisoformat(a), datetime.fromisoformat(b)) for k, (a, b) in self.calendar.slots.items()}
        assert slots == self.model
        items = sorted(slots.values())
        assert all(prev[1] <= nxt[0] for prev, nxt in pairwise(items))


CalendarMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_calendar = CalendarMachine.TestCase
