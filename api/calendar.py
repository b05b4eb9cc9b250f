"""Calendar feeds: a secret URL per user (POST /me/calendar-feed) and, behind it, the iCalendar (RFC 5545) of their
lessons that calendar apps subscribe to (GET /calendar/{token}.ics: no bearer, the token is the credential), read
from the read models (bookings, subjects, users_directory)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import icalendar
from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.response import Stream

from api.deps import command, reading
from api.guards import BEARER, USER
from api.schemas.bookings import CalendarFeedOut, Viewer
from api.services import Services
from application.accounts import Account
from application.scheduling import Scheduling
from domain.errors import NotFound
from projections.waiting import POSITION_SQL

ICS = "text/calendar"  # Litestar adds "; charset=utf-8" to text types
SINCE = timedelta(days=30)  # a feed lists lessons that start from 30 days ago on
PAGE = 200  # bookings read per statement: a feed is streamed page by page, its memory does not grow with them
READ_MODELS = ("bookings", "subjects", "users_directory")
TOKEN = re.compile(r"[A-Za-z0-9_-]{20,100}")
STATUS = {
    "pending": "TENTATIVE",
    "confirmed": "CONFIRMED",
    "completed": "CONFIRMED",
    "no_show": "CONFIRMED",
    "declined": "CANCELLED",
    "expired": "CANCELLED",
    "cancelled": "CANCELLED",
}
# one page of the owner's lessons after (start, id), with the subject's name and the other party's; `horizon` is the
# bookings read model's position as of the same snapshot
PAGE_SQL = f"""
SELECT b.booking_id, b.student_id, b.tutor_id, b.start_at, b.end_at, b.status, b.meeting_secret, b.updated_position,
       s.name AS subject, u.full_name AS other, {POSITION_SQL.replace("%s", "ARRAY['bookings']")} AS horizon
FROM bookings b
LEFT JOIN subjects s ON s.subject_id = b.subject_id
LEFT JOIN users_directory u
       ON u.user_id = CASE WHEN b.student_id = %(owner)s THEN b.tutor_id ELSE b.student_id END
WHERE (b.student_id = %(owner)s OR b.tutor_id = %(owner)s) AND (b.start_at, b.booking_id) > (%(start)s, %(id)s)
ORDER BY b.start_at, b.booking_id
LIMIT %(n)s
"""
_END = b"END:VCALENDAR\r\n"


class CalendarFeedController(Controller):
    """Each user's secret calendar URL."""

    path = "/me/calendar-feed"
    guards = USER
    tags = ["calendar"]
    security = BEARER

    @post("/", status_code=201, sync_to_thread=True)
    def issue(self, request: Request[Account, Any, Any], scheduling: Scheduling) -> Response[CalendarFeedOut]:
        """A new secret calendar URL of the caller's lessons; the previous one stops working (404)."""
        token, position = scheduling.feeds.issue(request.user)
        url = str(request.url_for("calendar_feed", feed=f"{token}.ics"))
        return command(CalendarFeedOut(url), position, 201)


@get(
    "/calendar/{feed:str}",
    name="calendar_feed",
    media_type=ICS,
    sync_to_thread=True,
    tags=["calendar"],
    responses={
        200: ResponseSpec(
            str, media_type=ICS, generate_examples=False, description="The owner's lessons as iCalendar (RFC 5545)"
        )
    },
)
def calendar_feed(request: Request[Any, Any, Any], services: Services, feed: str) -> Stream:
    """The owner's lessons from 30 days ago on as iCalendar, one VEVENT per booking (`feed` is `{token}.ics`); an
    unknown or replaced token, or an owner deactivated or deleted, is 404."""
    token = feed.removesuffix(".ics")
    owner = services.scheduling.feeds.owner_of(token) if feed.endswith(".ics") and TOKEN.fullmatch(token) else None
    if owner is None:
        raise NotFound("no such calendar feed")
    now = services.clock.now()
    viewer = Viewer(owner, services.settings.meeting_url_template)
    with reading(request, READ_MODELS) as (conn, position):
        first = _page(conn, owner, (now - SINCE, UUID(int=0)))
    lines = _lines(services, viewer, now, first)
    return Stream(lines, media_type=ICS, headers={"X-Projection-Position": str(position), "Cache-Control": "no-store"})


def _page(conn: Any, owner: UUID, after: tuple[datetime, UUID]) -> list[Mapping[str, Any]]:
    rows: list[Mapping[str, Any]] = conn.execute(
        PAGE_SQL, {"owner": owner, "start": after[0], "id": after[1], "n": PAGE}
    ).fetchall()
    return rows


def _lines(services: Services, viewer: Viewer, now: datetime, first: list[Mapping[str, Any]]) -> Iterator[bytes]:
    """The calendar, a page of events at a time. A later page skips bookings changed after the first page was read
    (a lesson moved past the page being read would otherwise be listed twice; the next poll lists it)."""
    yield _head()
    rows, horizon = first, (first[0]["horizon"] if first else 0)
    while rows:
        yield b"".join(_event(r, viewer, now) for r in rows if r["updated_position"] <= horizon)
        if len(rows) < PAGE:
            break
        with services.reads.connection() as conn:
            rows = _page(conn, viewer.user_id, (rows[-1]["start_at"], rows[-1]["booking_id"]))
    yield _END


def _head() -> bytes:
    cal = icalendar.Calendar()
    cal.add("prodid", "-//TutorConnect//Lessons//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", "TutorConnect lessons")
    whole: bytes = cal.to_ical()
    assert whole.endswith(_END)
    return whole.removesuffix(_END)


def _event(r: Mapping[str, Any], viewer: Viewer, now: datetime) -> bytes:
    """One booking as a VEVENT: the subject and the other party, the time in UTC, the meeting link once confirmed."""
    tutor_side = r["tutor_id"] == viewer.user_id
    other = r["other"] or ("your student" if tutor_side else "your tutor")
    e = icalendar.Event()
    e.add("uid", f"{r['booking_id']}@tutorconnect")
    e.add("dtstamp", now.astimezone(UTC))
    e.add("dtstart", r["start_at"].astimezone(UTC))
    e.add("dtend", r["end_at"].astimezone(UTC))
    e.add("summary", f"{r['subject'] or 'Lesson'} with {other}")
    e.add("status", STATUS[r["status"]])
    e.add("sequence", r["updated_position"])  # grows with every change of the booking
    url = viewer.meeting_url(r["booking_id"], r["student_id"], r["tutor_id"], r["status"], r["meeting_secret"])
    if url is not None:
        e.add("url", url)
        e.add("description", f"Join the lesson: {url}")
    ical: bytes = e.to_ical()
    return ical
