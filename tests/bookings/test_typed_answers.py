"""Booking answers as their typed state gives them: the list's status filter offers the lifecycle's statuses (one
list, the domain's), and a pending proposal names the side that proposed it, in the command's answer, in the read
model's answers and in the OpenAPI document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from application.settings import Settings
from domain.booking import BookingStatus
from tests.bookings.support import World, make_world, ok, problem, z

NOW = datetime(2027, 6, 1, 8, 0, tzinfo=UTC)
DAY = NOW.replace(hour=0)
WEEKLY = [{"weekday": d, "start": "08:00", "end": "20:00"} for d in range(7)]


@pytest.fixture
def w(shared_client: Any, shared_settings: Settings) -> World:
    return make_world(shared_client, shared_settings, NOW, weekly=WEEKLY, min_notice_minutes=60)


def at(days: int, hour: int) -> datetime:
    return DAY + timedelta(days=days, hours=hour)


def test_the_status_filter_offers_the_lifecycle_statuses(w: World) -> None:
    s = w.student(600)
    b = ok(w.book(s, at(2, 10)), 201)
    for bad in ("bogus", "Pending", "reviewed"):
        body = problem(w.get(s, "/bookings", params={"status": bad}), 422, "validation-failed")
        assert body["errors"] == [
            {"field": "status", "message": "pending, confirmed, declined, expired, cancelled, completed, no_show"}
        ], body
    for status in BookingStatus:
        items = ok(w.get(s, "/bookings", params={"status": status.value}))["items"]
        assert [i["id"] for i in items] == ([b["id"]] if status is BookingStatus.PENDING else []), status


def test_a_pending_proposal_names_its_side_in_every_answer(w: World) -> None:
    s = w.student(600)
    b = ok(w.book(s, at(2, 10)), 201)
    ok(w.post(w.tutor, f"/bookings/{b['id']}/confirm"))
    proposal = {"start": z(at(2, 14)), "proposed_by": "tutor"}
    assert ok(w.post(w.tutor, f"/bookings/{b['id']}/reschedule", {"start": z(at(2, 14))}))["pending_reschedule"] == (
        proposal
    )
    # the queries answer from the bookings read model (JSON) what the command answered from the aggregate
    assert ok(w.get(s, f"/bookings/{b['id']}"))["pending_reschedule"] == proposal
    (listed,) = ok(w.get(s, "/bookings"))["items"]
    assert listed["pending_reschedule"] == proposal


def test_openapi_declares_proposed_by_as_the_side(w: World) -> None:
    r = w.client.get("/schema/openapi.json")
    assert r.status_code == 200, r.text
    spec = r.json()
    schemas = spec["components"]["schemas"]
    field = schemas["RescheduleOut"]["properties"]["proposed_by"]
    if "$ref" in field:
        field = schemas[field["$ref"].rsplit("/", 1)[1]]
    assert field.get("type") == "string" and sorted(field["enum"]) == ["student", "tutor"], field
    assert "format" not in field, field  # no longer a uuid
