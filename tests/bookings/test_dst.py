"""Availability across daylight-saving changes, over HTTP: a weekly 17:00-19:00 rule on Sundays (the weekday of
every 2027 change in Europe/Berlin and America/New_York) gives its 17:00 local start at different UTC instants
before, on and after each change; slots offer those instants, a booking at them starts there, and 16:30 local is
outside the rule. Business time is set (test clock) to before all of them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from application.settings import Settings
from tests.bookings.support import make_world, ok, problem, z

SUNDAY_17_19 = [{"weekday": 6, "start": "17:00", "end": "19:00"}]
# 2027 changes: Berlin 28 Mar (CET -> CEST) and 31 Oct (back); New York 14 Mar (EST -> EDT) and 7 Nov (back).
CASES = {
    "Europe/Berlin": [
        (date(2027, 3, 21), 16),  # a week before spring forward: CET, UTC+1
        (date(2027, 3, 28), 15),  # the day itself, 17:00 is after the 02:00 change: CEST, UTC+2
        (date(2027, 4, 4), 15),  # a week after
        (date(2027, 10, 24), 15),  # a week before falling back: CEST
        (date(2027, 10, 31), 16),  # the day itself: CET
        (date(2027, 11, 7), 16),  # a week after
    ],
    "America/New_York": [
        (date(2027, 3, 7), 22),  # EST, UTC-5
        (date(2027, 3, 14), 21),  # EDT, UTC-4
        (date(2027, 3, 21), 21),
        (date(2027, 10, 31), 21),  # EDT
        (date(2027, 11, 7), 22),  # EST
        (date(2027, 11, 14), 22),
    ],
}
NOW = datetime(2027, 2, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("zone", list(CASES))
def test_sunday_17_local_across_dst_changes(zone: str, shared_client: Any, shared_settings: Settings) -> None:
    w = make_world(shared_client, shared_settings, NOW, timezone=zone, weekly=SUNDAY_17_19)
    s = w.student(60 * 12)
    for day, hour in CASES[zone]:
        # The local day in UTC is within day-1 12:00Z .. day+1 12:00Z for both zones.
        frm = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=12)
        to = frm + timedelta(hours=48)
        expected = datetime(day.year, day.month, day.day, hour, 0, tzinfo=UTC)
        r = w.get(s, f"/tutors/{w.tutor.id}/slots", params={"from": z(frm), "to": z(to), "duration_minutes": 60})
        starts = [x["start"] for x in ok(r)["items"]]
        assert starts == [z(expected + timedelta(minutes=m)) for m in (0, 30, 60)], (zone, day, starts)
        problem(w.book(s, expected - timedelta(minutes=30)), 422, "outside-availability")  # 16:30 local
        problem(w.book(s, expected + timedelta(minutes=90)), 422, "outside-availability")  # 18:30-19:30 local
        b = ok(w.book(s, expected), 201)
        assert (b["start"], b["end"]) == (z(expected), z(expected + timedelta(hours=1))), (zone, day, b)
        r = w.get(s, f"/tutors/{w.tutor.id}/slots", params={"from": z(frm), "to": z(to), "duration_minutes": 60})
        assert [x["start"] for x in ok(r)["items"]] == [z(expected + timedelta(hours=1))], (zone, day)
    mine = ok(w.get(s, "/bookings", params={"limit": 20}))["items"]
    assert [x["start"] for x in mine] == [z(datetime(d.year, d.month, d.day, h, tzinfo=UTC)) for d, h in CASES[zone]]
