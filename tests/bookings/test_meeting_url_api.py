"""Meeting links through the real app: a booking's `meeting_url` is null until it is confirmed, then the same link for
its student and its tutor (in command answers, GET /bookings/{id}, the lists and the tutor's calendar), kept across a
reschedule and after the lesson; null for anyone else (an admin) and once cancelled, declined or expired; built from
MEETING_URL_TEMPLATE."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.deps import services
from application.settings import DEFAULT_MEETING_URL_TEMPLATE, Settings
from tests.bookings.support import API, User, World, make_world, ok, z

NOW = datetime(2027, 6, 1, 8, 0, tzinfo=UTC)
DAY = NOW.replace(hour=0)
WEEKLY = [{"weekday": d, "start": "08:00", "end": "20:00"} for d in range(7)]
LINK = re.compile(r"https://meet\.jit\.si/tutorconnect-(?P<id>[0-9a-f-]{36})-(?P<secret>[A-Za-z0-9_-]{22,})")


@pytest.fixture
def w(shared_client: Any, shared_settings: Settings) -> World:
    """A tutor and students of this test's own on the module's app; business time back at NOW."""
    return make_world(shared_client, shared_settings, NOW, weekly=WEEKLY, min_notice_minutes=60)


def at(days: int, hour: int) -> datetime:
    return DAY + timedelta(days=days, hours=hour)


def link(w: World, user: User, booking_id: str) -> str | None:
    """The booking's meeting_url as `user` reads it."""
    url: str | None = ok(w.get(user, f"/bookings/{booking_id}"))["meeting_url"]
    return url


def listed(w: World, user: User, booking_id: str) -> str | None:
    """The booking's meeting_url in `user`'s list."""
    items = ok(w.get(user, "/bookings", params={"limit": 100}))["items"]
    return next(b["meeting_url"] for b in items if b["id"] == booking_id)


def confirmed(w: World, student: User, start: datetime) -> dict[str, Any]:
    b = ok(w.book(student, start), 201)
    return ok(w.post(w.tutor, f"/bookings/{b['id']}/confirm"))  # type: ignore[no-any-return]


def test_a_pending_booking_has_no_meeting_link(w: World) -> None:
    s = w.student()
    b = ok(w.book(s, at(2, 10)), 201)
    assert b["status"] == "pending" and b["meeting_url"] is None
    assert link(w, s, b["id"]) is None and link(w, w.tutor, b["id"]) is None
    assert listed(w, s, b["id"]) is None and listed(w, w.tutor, b["id"]) is None


def test_once_confirmed_both_parties_see_the_same_link_and_a_reschedule_keeps_it(w: World) -> None:
    s = w.student()
    b = confirmed(w, s, at(2, 10))
    url = b["meeting_url"]
    m = LINK.fullmatch(url or "")
    assert m is not None and m["id"] == b["id"], url
    assert link(w, s, b["id"]) == link(w, w.tutor, b["id"]) == url
    assert listed(w, s, b["id"]) == listed(w, w.tutor, b["id"]) == url
    week = ok(w.get(w.tutor, "/tutor/calendar", params={"from": z(at(2, 0)), "to": z(at(3, 0))}))["items"]
    assert [x["meeting_url"] for x in week if x["id"] == b["id"]] == [url]
    # an admin may read the booking, but the room is the parties'
    assert ok(w.get(w.admin, f"/bookings/{b['id']}"))["meeting_url"] is None
    # moved: the same room
    assert ok(w.post(s, f"/bookings/{b['id']}/reschedule", {"start": z(at(3, 12))}))["meeting_url"] == url
    moved = ok(w.post(w.tutor, f"/bookings/{b['id']}/reschedule/accept"))
    assert (moved["start"], moved["meeting_url"]) == (z(at(3, 12)), url)
    assert link(w, s, b["id"]) == link(w, w.tutor, b["id"]) == url
    # after the lesson the link stays (the lesson happened in it)
    w.set_clock(at(3, 13) + timedelta(minutes=5))
    done = ok(w.post(w.tutor, f"/bookings/{b['id']}/complete"))
    assert (done["status"], done["meeting_url"]) == ("completed", url)
    # every lesson its own secret
    other = confirmed(w, s, at(4, 10))["meeting_url"]
    assert other != url and LINK.fullmatch(other)["secret"] != m["secret"]  # type: ignore[index]


def test_an_auto_confirmed_request_answers_with_its_link(shared_client: Any, shared_settings: Settings) -> None:
    w = make_world(shared_client, shared_settings, NOW, auto_confirm=True)
    s = w.student()
    b = ok(w.book(s, NOW + timedelta(hours=26)), 201)
    assert b["status"] == "confirmed" and LINK.fullmatch(b["meeting_url"] or "")
    assert link(w, w.tutor, b["id"]) == b["meeting_url"]


def test_cancelled_declined_and_expired_bookings_show_no_link(w: World, shared_client: Any) -> None:
    s = w.student()
    a = confirmed(w, s, at(2, 10))
    assert a["meeting_url"] is not None
    cancelled = ok(w.post(s, f"/bookings/{a['id']}/cancel", {"reason": "ill"}))["booking"]
    assert (cancelled["status"], cancelled["meeting_url"]) == ("cancelled", None)
    assert link(w, s, a["id"]) is None and link(w, w.tutor, a["id"]) is None
    d = ok(w.book(s, at(2, 12)), 201)
    declined = ok(w.post(w.tutor, f"/bookings/{d['id']}/decline"))
    assert (declined["status"], declined["meeting_url"]) == ("declined", None)
    assert link(w, s, d["id"]) is None
    e = ok(w.book(s, at(2, 14)), 201)
    w.set_clock(NOW + timedelta(hours=25))  # past its pending expiry
    expired, position = services(shared_client.app.state).scheduling.expire(UUID(e["id"]))
    w.pos = max(w.pos, position)
    assert expired.status == "expired"
    assert link(w, s, e["id"]) is None and link(w, w.tutor, e["id"]) is None


def test_the_link_follows_meeting_url_template(w: World, shared_settings: Settings) -> None:
    s = w.student()
    b = confirmed(w, s, at(2, 10))
    secret = LINK.fullmatch(b["meeting_url"])["secret"]  # type: ignore[index]
    template = "https://rooms.example.test/{secret}?lesson={booking_id}&x={x}"
    other = msgspec.structs.replace(shared_settings, meeting_url_template=template)
    with TestClient(create_app(other), base_url="http://testserver.local", timeout=30) as c:
        r = c.get(f"{API}/bookings/{b['id']}", headers=w.after(w.tutor.headers))
        assert ok(r)["meeting_url"] == f"https://rooms.example.test/{secret}?lesson={b['id']}&x={{x}}"
    env = {"DATABASE_URL": "postgresql:///x", "REDIS_URL": "redis://x", "JWT_SECRET": "s" * 40}
    assert Settings.from_env(env).meeting_url_template == DEFAULT_MEETING_URL_TEMPLATE
    assert Settings.from_env({**env, "MEETING_URL_TEMPLATE": template}).meeting_url_template == template
    with pytest.raises(SystemExit, match="secret"):  # a link without the secret could be guessed from the id
        Settings.from_env({**env, "MEETING_URL_TEMPLATE": "https://rooms.example.test/{booking_id}"})
