"""Reviews page by page (the real app behind TestClient, real projector threads; the lessons behind the reviews are
booked, taught and reviewed through the application layer under a manual clock, so reviews can share an instant):
GET /tutors/{id}/reviews, every review of a listed tutor newest first in pages of 20 by default, the tutor page's
20 being its first page; GET /tutor/reviews, the tutor's own, also while not listed, with their rating."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from application.accounts import Account
from application.clock import Clock
from application.money import Money
from application.scheduling import Scheduling
from application.settings import Settings
from tests.support.api import API, BAD_PAGES, Actor, ok, problem, signup, staff
from tests.support.db import clone_database
from tests.support.system import make_settings
from tests.support.world import approve_tutor, grant

NOW = datetime(2027, 6, 1, 8, 0, tzinfo=UTC)
REVIEWED = NOW + timedelta(days=4)  # reviews are written from here on, a minute apart (some in the same minute)


class ManualClock(Clock):
    """Business time that moves only when the test moves it."""

    def __init__(self, start: datetime) -> None:
        super().__init__()
        self.t = start

    def now(self) -> datetime:
        return self.t


@dataclass
class Site:
    client: Any
    settings: Settings
    admin: Actor
    clock: ManualClock
    scheduling: Scheduling
    money: Money
    pos: int = 0

    def fresh(self, headers: dict[str, str] | None = None) -> dict[str, str]:
        return {**(headers or {}), "X-Min-Position": str(self.pos)}

    def seen(self, r: Any) -> Any:
        self.pos = max(self.pos, int(r.headers["X-Event-Position"]))
        return r


@dataclass
class Reviewed:
    """A tutor and the reviews written about them, as the API should show them."""

    tutor: Actor
    expected: list[dict[str, Any]] = field(default_factory=list)  # newest first

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.expected]


@pytest.fixture(scope="module")
def site(
    pg_admin_url: str, prepared_template: str, drop_later: Callable[[str], None], redis_server: str
) -> Iterator[Site]:
    """One database (cloned from the prepared template), app and projector threads for the module; its tests keep
    apart by using tutors of their own."""
    import redis
    from litestar.testing import TestClient

    from api.app import create_app
    from application.store import close_all
    from projections import all_projections, follower
    from workers.processes import prepare

    url = clone_database(pg_admin_url, prepared_template)
    redis_url = f"{redis_server}/15"
    redis.Redis.from_url(redis_url).flushdb()
    settings = make_settings(url, redis_url, pool_size=3)
    prepare(settings)
    stop = threading.Event()
    threads = follower.follow_all(url, all_projections(), stop)
    try:
        with TestClient(create_app(settings), base_url="http://testserver.local", timeout=30) as client:
            clock = ManualClock(NOW)
            yield Site(
                client, settings, staff(client, settings, "admin"), clock, Scheduling(settings, clock), Money(settings)
            )
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        close_all()
        drop_later(url)


def reviewed_tutor(site: Site, minutes: list[int], respond_to: tuple[int, ...] = ()) -> Reviewed:
    """An approved tutor with one completed lesson per entry of `minutes`, each reviewed by a student at REVIEWED +
    that many minutes (equal entries: the same instant), rated 1-5 in turn; the lessons in `respond_to` answered."""
    tutor = person(site, "tutor")
    student = person(site, "student")
    tid, sid = uuid.UUID(tutor.id), uuid.UUID(student.id)
    site.clock.t = NOW
    subject, pos = approve_tutor(site.settings, tid, clock=site.clock)
    site.pos = max(site.pos, pos)
    if minutes:
        _, granted = grant(site.money, sid, tid, 60 * len(minutes), 6000 * len(minutes))
        site.pos = max(site.pos, granted)
    as_student, as_tutor = Account(sid, "student"), Account(tid, "tutor")
    out = Reviewed(tutor)
    bookings = []
    for i in range(len(minutes)):
        start = NOW + timedelta(days=1, hours=i)
        b, _ = site.scheduling.request_booking(as_student, tid, uuid.UUID(subject), start, 60, "")
        site.scheduling.confirm(as_tutor, b.id)
        bookings.append(b.id)
    site.clock.t = NOW + timedelta(days=3)
    for bid in bookings:
        site.scheduling.complete(as_tutor, bid)
    for i, (bid, minute) in enumerate(zip(bookings, minutes, strict=True)):
        written = site.clock.t = REVIEWED + timedelta(minutes=minute)
        _, position = site.scheduling.review(as_student, bid, i % 5 + 1, f"review {i}")
        response = None
        if i in respond_to:
            site.clock.t += timedelta(seconds=30)
            _, position = site.scheduling.respond(as_tutor, bid, f"thanks {i}")
            response = {"text": f"thanks {i}", "created_at": z(site.clock.t)}
        site.pos = max(site.pos, position)
        review = {"id": str(bid), "rating": i % 5 + 1, "text": f"review {i}", "created_at": z(written)}
        out.expected.append({**review, "response": response})
    out.expected.sort(key=lambda r: (r["created_at"], uuid.UUID(r["id"])), reverse=True)
    return out


def person(site: Site, role: str) -> Actor:
    """A student or tutor registered through the API, or a staff account."""
    if role in ("admin", "finance"):
        return staff(site.client, site.settings, role)
    return signup(site.client, role)[0]


def z(t: datetime) -> str:
    """An instant as the API writes it (msgspec: UTC with a Z, no fraction when there is none)."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def pages(
    site: Site, url: str, limit: int | None = None, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every page of a review list, following next_cursor; each page's body."""
    out: list[dict[str, Any]] = []
    cursor = None
    for _ in range(50):
        params = {**({"limit": limit} if limit else {}), **({"cursor": cursor} if cursor else {})}
        r = site.client.get(url, params=params, headers=site.fresh(headers))
        body = ok(r)
        assert r.headers["X-Projection-Position"].isdigit()
        out.append(body)
        cursor = body["next_cursor"]
        if cursor is None:
            return out
        assert len(body["items"]) == (limit or 20), body  # a page before the last is full
    raise AssertionError("the list did not end within 50 pages")


# 25 reviews; four written in the same minute sit across the boundary of the first page of 20 (newest first: the
# 18 of minutes 7-24, then the four of minute 5, then minutes 2, 1, 0)
MINUTES = [0, 1, 2, 5, 5, 5, 5, *range(7, 25)]


def test_every_review_of_a_listed_tutor_newest_first_in_pages(site: Site) -> None:
    t = reviewed_tutor(site, MINUTES, respond_to=(4, 20))
    url = f"{API}/tutors/{t.tutor.id}/reviews"
    default = pages(site, url)
    assert [len(p["items"]) for p in default] == [20, 5]
    for body in default:
        assert set(body) == {"items", "next_cursor"}, body
    items = [i for p in default for i in p["items"]]
    assert items == t.expected
    assert len(set(t.ids)) == 25
    # the tutor page shows the first page, item for item
    detail = ok(site.client.get(f"{API}/tutors/{t.tutor.id}", headers=site.fresh()))
    assert detail["reviews"] == default[0]["items"]
    assert (detail["rating_count"], detail["rating_average"]) == (25, round(sum(r["rating"] for r in items) / 25, 2))
    # any page size walks the same list; the largest holds it all
    for limit in (1, 3, 7, 20, 24, 25, 100):
        walked = pages(site, url, limit)
        assert [i for p in walked for i in p["items"]] == t.expected, limit
        assert len(walked) == -(-25 // limit), limit
    # anyone may read it
    for who in (person(site, "student"), site.admin, t.tutor):
        assert [i for p in pages(site, url, headers=who.auth) for i in p["items"]] == t.expected


def test_the_tutors_own_reviews_with_their_rating_also_while_not_listed(site: Site) -> None:
    t = reviewed_tutor(site, [3, 1, 1, 2, 0, 4, 4], respond_to=(0,))
    own = f"{API}/tutor/reviews"
    public = f"{API}/tutors/{t.tutor.id}/reviews"
    ratings = [r["rating"] for r in t.expected]
    average = round(sum(ratings) / len(ratings), 2)

    def check_own() -> None:
        bodies = pages(site, own, 3, t.tutor.auth)
        assert [len(b["items"]) for b in bodies] == [3, 3, 1]
        for b in bodies:
            assert set(b) == {"items", "next_cursor", "rating_average", "rating_count"}, b
            assert (b["rating_average"], b["rating_count"]) == (average, 7)
        assert [i for b in bodies for i in b["items"]] == t.expected

    check_own()
    assert [i for p in pages(site, public) for i in p["items"]] == t.expected
    detail = ok(site.client.get(f"{API}/tutors/{t.tutor.id}", headers=site.fresh()))
    assert (detail["rating_average"], detail["rating_count"]) == (average, 7)

    site.seen(
        site.client.post(f"{API}/admin/tutors/{t.tutor.id}/suspend", json={"reason": "x"}, headers=site.admin.auth)
    )
    problem(site.client.get(public, headers=site.fresh()), 404, "not-found")
    problem(site.client.get(f"{API}/tutors/{t.tutor.id}", headers=site.fresh()), 404, "not-found")
    check_own()
    site.seen(site.client.post(f"{API}/admin/tutors/{t.tutor.id}/reinstate", headers=site.admin.auth))
    assert [i for p in pages(site, public) for i in p["items"]] == t.expected


def test_a_tutor_without_reviews(site: Site) -> None:
    draft = person(site, "tutor")  # never approved: not listed, no profile row to speak of
    body = ok(site.client.get(f"{API}/tutor/reviews", headers=site.fresh(draft.auth)))
    assert body == {"items": [], "next_cursor": None, "rating_average": None, "rating_count": 0}
    problem(site.client.get(f"{API}/tutors/{draft.id}/reviews", headers=site.fresh()), 404, "not-found")
    listed = reviewed_tutor(site, [])
    body = ok(site.client.get(f"{API}/tutors/{listed.tutor.id}/reviews", headers=site.fresh()))
    assert body == {"items": [], "next_cursor": None}


def test_unknown_tutors_roles_and_bad_input(site: Site) -> None:
    t = reviewed_tutor(site, [0, 1])
    public = f"{API}/tutors/{t.tutor.id}/reviews"
    problem(site.client.get(f"{API}/tutors/{uuid.uuid4()}/reviews"), 404, "not-found")
    problem(site.client.get(f"{API}/tutors/{person(site, 'student').id}/reviews"), 404, "not-found")
    problem(site.client.get(f"{API}/tutors/not-a-uuid/reviews"), 404, "not-found")
    problem(site.client.get(f"{API}/tutor/reviews"), 401)
    for role in ("student", "admin", "finance"):
        problem(site.client.get(f"{API}/tutor/reviews", headers=person(site, role).auth), 403, "forbidden")
    for params in (
        *BAD_PAGES,
        {"cursor": "\x00"},
    ):
        problem(site.client.get(public, params=params), 422, "validation-failed")
        problem(site.client.get(f"{API}/tutor/reviews", params=params, headers=t.tutor.auth), 422, "validation-failed")
