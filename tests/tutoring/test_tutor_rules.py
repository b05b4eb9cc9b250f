"""TutorProfile's booking rules in memory: when a request is confirmed on the tutor's behalf."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.tutor import TutorProfile

NOW = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)


def _tutor(auto_confirm: bool) -> TutorProfile:
    t = TutorProfile(tutor_id=uuid.uuid4())
    t.set_preferences(auto_confirm=auto_confirm, min_notice_minutes=0)
    return t


def test_auto_confirm_answers_requests_more_than_24_hours_ahead_only() -> None:
    on, off = _tutor(True), _tutor(False)
    assert on.confirms_by_itself(NOW + timedelta(hours=24, seconds=1), NOW)
    assert not on.confirms_by_itself(NOW + timedelta(hours=24), NOW)  # exactly 24 h: the tutor confirms
    assert not on.confirms_by_itself(NOW + timedelta(hours=2), NOW)
    assert not off.confirms_by_itself(NOW + timedelta(days=10), NOW)


@given(ahead=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=60)), auto=st.booleans())
def test_auto_confirm_depends_only_on_the_setting_and_the_lead_time(ahead: timedelta, auto: bool) -> None:
    t = _tutor(auto)
    assert t.confirms_by_itself(NOW + ahead, NOW) == (auto and ahead > timedelta(hours=24))
    # the same lead time from another moment gives the same answer
    later = NOW + timedelta(days=3, minutes=17)
    assert t.confirms_by_itself(later + ahead, later) == t.confirms_by_itself(NOW + ahead, NOW)
