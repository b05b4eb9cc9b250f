"""Calendar feeds through the real app: POST /me/calendar-feed gives a secret URL whose iCalendar lists the owner's
lessons from 30 days ago on (status, UTC times, subject and other party, the meeting link once confirmed); a new URL
replaces the old (404 from then on); unknown tokens and closed accounts are 404; only the token's digest is stored."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import icalendar
import pytest

import api.calendar
from application.settings import Settings
from domain.calendar_feed import CalendarFeed
from projections.runner import EVENTS_TABLE
from tests.bookings.support import API, User, World, events_of, make_world, ok, problem, scalar

NOW = datetime(2027, 6, 1, 8, 0, tzinfo=UTC)
DAY = NOW.replace(hour=0)
WEEKLY = [{"weekday": d, "start": "08:00", "end": "20:00"} for d in range(7)]
ICS = "text/calendar; charset=utf-8"


@pytest.fixture
def w(shared_client: Any, shared_settings: Settings) -> World:
    """A tutor and students of this test's own on the module's app; business time back at NOW."""
    return make_world(shared_client, shared_settings, NOW, weekly=WEEKLY, min_notice_minutes=60)


def at(days: int, hour: int) -> datetime:
    return DAY + timedelta(days=days, hours=hour)


def named(w: World, user: User, name: str) -> User:
    ok(w.seen(w.client.patch(f"{API}/me", json={"full_name": name}, headers=user.headers)))
    return user


def issue(w: World, user: User) -> str:
    body = ok(w.post(user, "/me/calendar-feed"), 201)
    url: str = body["url"]
    assert url.startswith("http://testserver.local/api/v1/calendar/") and url.endswith(".ics"), url
    return url


def fetch(w: World, url: str) -> Any:
    """GET the feed as a calendar app would: no bearer token (waiting for what the test wrote)."""
    return w.client.get(urlsplit(url).path, headers={"X-Min-Position": str(w.pos)})


def events(w: World, url: str) -> dict[str, Any]:
    """The feed's VEVENTs by booking id, parsed back with icalendar."""
    r = fetch(w, url)
    assert r.status_code == 200 and r.headers["content-type"] == ICS, (r.status_code, r.headers, r.text[:300])
    cal = icalendar.Calendar.from_ical(r.content)
    out = {}
    for e in cal.walk("VEVENT"):
        uid = str(e["UID"])
        assert uid.endswith("@tutorconnect") and uid.removesuffix("@tutorconnect") not in out, uid
        out[uid.removesuffix("@tutorconnect")] = e
    return out


def test_the_feed_lists_the_owners_lessons_from_30_days_ago_on(w: World) -> None:
    s = named(w, w.student(), "Ada Student")
    named(w, w.tutor, "Tess Tutor")
    subject = ok(w.get(s, f"/tutors/{w.tutor.id}"))["subjects"][0]["name"]
    w.set_clock(NOW - timedelta(days=40))
    old = ok(w.book(s, NOW - timedelta(days=38) + timedelta(hours=2)), 201)  # started 38 days ago: left out
    w.set_clock(NOW - timedelta(days=22))
    recent = ok(w.book(s, NOW - timedelta(days=20) + timedelta(hours=2)), 201)  # 20 days ago: listed
    w.set_clock(NOW)
    confirmed = ok(w.book(s, at(2, 10)), 201)
    confirmed = ok(w.post(w.tutor, f"/bookings/{confirmed['id']}/confirm"))
    pending = ok(w.book(s, at(2, 12)), 201)
    cancelled = ok(w.book(s, at(2, 14)), 201)
    ok(w.post(s, f"/bookings/{cancelled['id']}/cancel", {"reason": "ill"}))
    url = issue(w, s)
    r = fetch(w, url)
    assert r.headers["content-type"] == ICS and r.headers["x-projection-position"]
    assert b"DTSTART:20270603T100000Z\r\n" in r.content  # UTC, written with Z

    mine = events(w, url)
    assert set(mine) == {recent["id"], confirmed["id"], pending["id"], cancelled["id"]}, old["id"]
    e = mine[confirmed["id"]]
    assert (e.decoded("DTSTART"), e.decoded("DTEND")) == (at(2, 10), at(2, 11))
    assert e.decoded("DTSTART").tzinfo is not None and e.decoded("DTSTART").utcoffset() == timedelta(0)
    assert str(e["STATUS"]) == "CONFIRMED" and str(e["URL"]) == confirmed["meeting_url"] is not None
    assert str(e["SUMMARY"]) == f"{subject} with Tess Tutor"
    assert "DTSTAMP" in e and int(e["SEQUENCE"]) > 0
    assert str(mine[pending["id"]]["STATUS"]) == "TENTATIVE" and "URL" not in mine[pending["id"]]
    assert str(mine[cancelled["id"]]["STATUS"]) == "CANCELLED" and "URL" not in mine[cancelled["id"]]
    # the tutor's own feed names the student
    theirs = events(w, issue(w, w.tutor))
    assert str(theirs[confirmed["id"]]["SUMMARY"]) == f"{subject} with Ada Student"
    assert str(theirs[confirmed["id"]]["URL"]) == confirmed["meeting_url"]


def test_a_new_feed_url_replaces_the_old_one(w: World) -> None:
    s = w.student()
    b = ok(w.book(s, at(2, 10)), 201)
    first = issue(w, s)
    assert set(events(w, first)) == {b["id"]}
    second = issue(w, s)
    assert second != first
    problem(fetch(w, first), 404, "not-found")
    assert set(events(w, second)) == {b["id"]}
    assert events_of(w.settings.database_url, CalendarFeed.create_id(s.id)) == [
        "CalendarFeed.Opened", "CalendarFeed.Issued", "CalendarFeed.Issued"
    ]  # fmt: skip


def test_unknown_tokens_and_closed_accounts_are_404(w: World) -> None:
    s = w.student()
    url = issue(w, s)
    path = urlsplit(url).path
    for wrong in (path[:-6] + ("A" if path[-5] != "A" else "B") + ".ics", path.removesuffix(".ics"),
                  path[:-4] + ".ical", f"{API}/calendar/x.ics", f"{API}/calendar/{'a' * 43}.ics"):  # fmt: skip
        problem(w.client.get(wrong), 404, "not-found")
    assert fetch(w, url).status_code == 200
    admin_says = w.client.patch(f"{API}/admin/users/{s.id}", json={"is_active": False}, headers=w.admin.headers)
    ok(admin_says)
    problem(fetch(w, url), 404, "not-found")
    ok(w.client.patch(f"{API}/admin/users/{s.id}", json={"is_active": True}, headers=w.admin.headers))
    assert fetch(w, url).status_code == 200
    ok(w.client.delete(f"{API}/admin/users/{s.id}", headers=w.admin.headers), 200)
    problem(fetch(w, url), 404, "not-found")


def test_only_the_tokens_digest_is_stored(w: World) -> None:
    s = w.student()
    token = urlsplit(issue(w, s)).path.rsplit("/", 1)[1].removesuffix(".ics")
    dsn = w.settings.database_url
    stored = scalar(dsn, "SELECT token_digest FROM calendar_feeds WHERE owner_id = %s", (s.id,))
    assert bytes(stored) == hashlib.sha256(token.encode()).digest()
    assert scalar(dsn, "SELECT count(*) FROM calendar_feeds WHERE position(%s::bytea in token_digest) > 0",
                  (token.encode(),)) == 0  # fmt: skip
    assert scalar(dsn, f"SELECT count(*) FROM {EVENTS_TABLE} WHERE position(%s::bytea in state) > 0",
                  (token.encode(),)) == 0  # fmt: skip


def test_a_long_feed_is_read_page_by_page_each_lesson_once(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    s = w.student()
    ids = {ok(w.book(s, at(2, h)), 201)["id"] for h in range(8, 15)}
    monkeypatch.setattr(api.calendar, "PAGE", 2)
    assert set(events(w, issue(w, s))) == ids


def test_a_feed_url_is_never_replayed_from_the_idempotency_store(w: World) -> None:
    """A token-issuing route: replaying would mean keeping the token; the same key issues a new URL each time."""
    s = w.student()
    headers = {**s.headers, "Idempotency-Key": f"feed-{s.id}"}
    answers = [w.seen(w.client.post(f"{API}/me/calendar-feed", json={}, headers=headers)) for _ in range(2)]
    assert [r.status_code for r in answers] == [201, 201] and "idempotent-replayed" not in answers[1].headers
    first, second = (r.json()["url"] for r in answers)
    assert first != second
    problem(fetch(w, first), 404, "not-found")
    assert fetch(w, second).status_code == 200
