"""Public tutor search, tutor detail and slots, and the student's profile and favorites, through the real app.

Business time is pinned with the test clock to Sunday 2030-01-06 23:50Z, so "the next free slot" and the notice
period are deterministic (the clock flows on at real speed; the test has ten minutes before that matters)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from application.settings import Settings
from projections.tutors import term_of
from tests.support.api import event_position, projection_position
from tests.tutoring.support import (
    API,
    PUBLIC_TUTOR_KEYS,
    Actor,
    after,
    approved_tutor,
    create_subject,
    fill_profile,
    ok,
    problem,
    set_clock,
    signup,
    staff,
)

NOW = "2030-01-06T23:50:00Z"  # a Sunday


def parse(t: str) -> datetime:
    return datetime.fromisoformat(t.replace("Z", "+00:00"))


@dataclass
class World:
    client: Any
    admin: Actor
    subjects: dict[str, dict[str, Any]]
    tutors: dict[str, Actor]  # approved ones: alice, bruno, chen, dana
    hidden: dict[str, Actor]  # pending, suspended, draft
    head: httpx.Response  # the last command, for X-Min-Position

    def search(self, **params: Any) -> dict[str, Any]:
        return ok(self.client.get(f"{API}/tutors", params=params, headers=after(self.head)))  # type: ignore[no-any-return]

    def names(self, **params: Any) -> list[str]:
        """Approved tutors' keys in result order (asserting that no hidden tutor appears)."""
        body = self.search(**params)
        ids = {a.id: k for k, a in self.tutors.items()}
        hidden = {a.id for a in self.hidden.values()}
        for item in body["items"]:
            assert item["id"] not in hidden, f"unapproved or suspended tutor listed for {params}: {item}"
            assert set(item) >= PUBLIC_TUTOR_KEYS, item
        assert body["next_cursor"] is None, body
        return [ids[i["id"]] for i in body["items"]]

    def walk(self, limit: int, **params: Any) -> list[str]:
        """Follow next_cursor to the end; every page at most `limit` items."""
        ids = {a.id: k for k, a in self.tutors.items()}
        out: list[str] = []
        cursor = None
        for _ in range(20):
            p = dict(params, limit=limit)
            if cursor:
                p["cursor"] = cursor
            body = ok(self.client.get(f"{API}/tutors", params=p, headers=after(self.head)))
            assert len(body["items"]) <= limit
            out.extend(ids.get(i["id"], i["id"]) for i in body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                return out
            assert body["items"], "an empty page must be the last one"
        raise AssertionError("pagination did not end")


@pytest.fixture
def world(client: Any, prepared: Settings) -> World:
    c = client
    admin = staff(c, prepared, "admin")
    set_clock(c, admin, NOW)
    subjects = {
        "algebra": create_subject(c, admin, "Algebra", "Mathematics"),
        "french": create_subject(c, admin, "French", "Languages"),
        "physics": create_subject(c, admin, "Physics", "Science"),
    }
    s = {k: v["id"] for k, v in subjects.items()}
    tutors: dict[str, Actor] = {}
    tutors["alice"], _ = approved_tutor(
        c,
        admin,
        [s["algebra"]],
        "Alice Archer",
        amount=3000,
        bio="Algebra and calculus lessons made friendly",
        timezone="UTC",
        weekly=[{"weekday": 0, "start": "10:00", "end": "12:00"}],
    )
    tutors["bruno"], _ = approved_tutor(
        c,
        admin,
        [s["french"]],
        "Bruno Blanc",
        amount=5000,
        bio="Native speaker offering conversation lessons",
        timezone="Europe/Paris",
        weekly=[{"weekday": 0, "start": "17:00", "end": "19:00"}],
    )
    tutors["chen"], _ = approved_tutor(
        c,
        admin,
        [s["physics"], s["algebra"]],
        "Chen Cole",
        amount=7000,
        bio="Mechanics and waves lessons for exam preparation",
        timezone="America/New_York",
        weekly=[{"weekday": 2, "start": "09:00", "end": "12:00"}],
    )
    tutors["dana"], _ = approved_tutor(
        c,
        admin,
        [s["french"], s["physics"]],
        "Dana Dorn",
        amount=9000,
        bio="Quantum mechanics lessons in French",
        timezone="UTC",
        weekly=[{"weekday": 1, "start": "08:00", "end": "09:00"}],
    )

    hidden: dict[str, Actor] = {}
    everywhere = [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]
    hidden["pending"] = signup(c, "tutor", "Paul Pending")
    fill_profile(
        c,
        hidden["pending"],
        [s["algebra"], s["french"], s["physics"]],
        amount=100,
        bio="Algebra calculus mechanics lessons",
        weekly=everywhere,
    )
    ok(c.post(f"{API}/tutor/profile/submit", headers=hidden["pending"].auth))
    hidden["suspended"], _ = approved_tutor(
        c,
        admin,
        [s["algebra"], s["french"], s["physics"]],
        "Sam Suspended",
        amount=100,
        bio="Algebra calculus mechanics lessons",
        weekly=everywhere,
    )
    ok(c.post(f"{API}/admin/tutors/{hidden['suspended'].id}/suspend", json={"reason": "x"}, headers=admin.auth))
    hidden["rejected"] = signup(c, "tutor", "Rita Rejected")
    fill_profile(c, hidden["rejected"], [s["algebra"]], amount=100, bio="Algebra lessons", weekly=everywhere)
    ok(c.post(f"{API}/tutor/profile/submit", headers=hidden["rejected"].auth))
    ok(c.post(f"{API}/admin/tutors/{hidden['rejected'].id}/reject", json={"feedback": "no"}, headers=admin.auth))
    hidden["draft"] = signup(c, "tutor", "Dora Draft")
    head = fill_profile(c, hidden["draft"], [s["algebra"]], amount=100, bio="Algebra lessons", weekly=everywhere)
    return World(c, admin, subjects, tutors, hidden, head)


ALL = ["alice", "bruno", "chen", "dana"]


def test_filters(world: World) -> None:
    w, s = world, {k: v["id"] for k, v in world.subjects.items()}
    assert sorted(w.names()) == ALL
    assert sorted(w.names(subject=s["algebra"])) == ["alice", "chen"]
    assert sorted(w.names(subject=s["french"])) == ["bruno", "dana"]
    assert sorted(w.names(subject=s["physics"])) == ["chen", "dana"]
    assert w.names(subject=w.admin.id) == []
    assert sorted(w.names(min_price=5000)) == ["bruno", "chen", "dana"]
    assert sorted(w.names(max_price=5000)) == ["alice", "bruno"]
    assert sorted(w.names(min_price=4000, max_price=8000)) == ["bruno", "chen"]
    assert sorted(w.names(min_price=3000, max_price=3000)) == ["alice"]
    assert w.names(min_price=9001) == []
    assert sorted(w.names(subject=s["french"], max_price=6000)) == ["bruno"]
    assert sorted(w.names(min_rating=1)) == []  # nobody is rated yet

    # q is full text over bio, name, subject names and categories
    assert w.names(q="calculus") == ["alice"]
    assert sorted(w.names(q="mechanics")) == ["chen", "dana"]
    assert sorted(w.names(q="algebra")) == ["alice", "chen"]  # bio word and subject name
    assert sorted(w.names(q="Science")) == ["chen", "dana"]  # a subject's category
    assert sorted(w.names(q="languages")) == ["bruno", "dana"]
    assert w.names(q="bruno") == ["bruno"]
    assert w.names(q="astronomy") == []
    assert w.names(q="mechanics -quantum") == ["chen"]  # web-search syntax
    assert w.names(q='"exam preparation"') == ["chen"]
    assert sorted(w.names(q="lessons")) == ALL
    assert w.names(q="mechanics", subject=s["french"]) == ["dana"]


@pytest.mark.parametrize("first_page", ["sized", "one row"])
def test_availability_window(world: World, first_page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also with first pages of one row, so the candidates come from later pages (read narrow, the chosen ones
    read whole afterwards)."""
    w = world
    if first_page == "one row":
        import projections.search

        monkeypatch.setattr(projections.search, "window_first_page", lambda n, span: 1)

    # Alice: Mon 10-12 UTC; Bruno: Mon 17-19 Paris (16-18Z in January); Chen: Wed 09-12 New York (14-17Z);
    # Dana: Tue 08-09 UTC
    def win(a: str, b: str, **more: Any) -> list[str]:
        return sorted(w.names(available_from=a, available_to=b, **more))

    assert win("2030-01-07T09:00:00Z", "2030-01-07T13:00:00Z") == ["alice"]
    assert win("2030-01-07T15:00:00Z", "2030-01-07T19:00:00Z") == ["bruno"]
    assert win("2030-01-09T13:00:00Z", "2030-01-09T18:00:00Z") == ["chen"]
    assert win("2030-01-08T07:00:00Z", "2030-01-08T10:00:00Z") == ["dana"]
    assert win("2030-01-07T00:00:00Z", "2030-01-10T00:00:00Z") == ALL
    assert win("2030-01-12T00:00:00Z", "2030-01-13T00:00:00Z") == []  # Saturday: nobody
    assert win("2030-01-07T11:30:00Z", "2030-01-07T13:00:00Z") == []  # only 30 minutes of Alice left
    assert win("2030-01-07T09:00:00Z", "2030-01-07T19:00:00Z", subject=w.subjects["french"]["id"]) == ["bruno"]
    # an offset other than Z means the same instant (17:00+01:00 = 16:00Z: Bruno's first slot)
    assert win("2030-01-07T17:00:00+01:00", "2030-01-07T18:00:00+01:00") == ["bruno"]
    # in July Paris is UTC+2: 17:00-19:00 local is 15:00-17:00Z
    assert win("2030-07-01T15:00:00Z", "2030-07-01T16:00:00Z") == ["bruno"]
    assert win("2030-07-01T17:00:00Z", "2030-07-01T18:00:00Z") == []
    # the past is never available (business now is Sunday 23:50)
    assert win("2029-12-30T00:00:00Z", "2030-01-06T23:00:00Z") == []

    for bad in (
        {"available_from": "2030-01-07T09:00:00Z"},
        {"available_to": "2030-01-07T09:00:00Z"},
        {"available_from": "2030-01-07T09:00:00Z", "available_to": "2030-01-07T08:00:00Z"},
        {"available_from": "2030-01-01T00:00:00Z", "available_to": "2030-02-02T00:00:00Z"},
        {"available_from": "yesterday", "available_to": "2030-01-07T08:00:00Z"},
        {"available_from": "2030-01-07T09:00:00", "available_to": "2030-01-07T10:00:00"},
    ):
        problem(w.client.get(f"{API}/tutors", params=bad), 422)


def test_sorts_and_public_shape(world: World) -> None:
    w = world
    assert w.names(sort="price") == ["alice", "bruno", "chen", "dana"]
    assert w.names(sort="price", subject=w.subjects["physics"]["id"]) == ["chen", "dana"]
    # all unrated: a stable order, the same every time, and no failure
    first = w.names(sort="rating")
    assert sorted(first) == ALL
    assert w.names(sort="rating") == first == w.names()
    # relevance: Alice says "algebra" twice (bio and subject), Chen once (subject)
    assert w.names(q="algebra", sort="relevance") == ["alice", "chen"]
    assert w.names(q="algebra") == ["alice", "chen"]  # q alone sorts by relevance
    problem(w.client.get(f"{API}/tutors", params={"sort": "relevance"}), 422)
    problem(w.client.get(f"{API}/tutors", params={"sort": "name"}), 422)
    problem(w.client.get(f"{API}/tutors", params={"limit": 0}), 422)
    problem(w.client.get(f"{API}/tutors", params={"limit": 101}), 422)
    problem(w.client.get(f"{API}/tutors", params={"cursor": "garbage!"}), 422)

    items = {i["id"]: i for i in w.search(sort="price")["items"]}
    alice = items[w.tutors["alice"].id]
    assert alice["full_name"] == "Alice Archer"
    assert alice["bio"] == "Algebra and calculus lessons made friendly"
    assert alice["languages"] == ["en"]
    assert alice["hourly_rate"] == {"amount": 3000, "currency": "USD"}
    assert alice["subjects"] == [{"id": w.subjects["algebra"]["id"], "name": "Algebra", "category": "Mathematics"}]
    assert (alice["rating_average"], alice["rating_count"]) == (None, 0)
    # next free 60-minute slots, in UTC, from business now (Sunday 23:50Z)
    assert alice["next_slot"] == {"start": "2030-01-07T10:00:00Z", "end": "2030-01-07T11:00:00Z"}
    assert items[w.tutors["bruno"].id]["next_slot"] == {"start": "2030-01-07T16:00:00Z", "end": "2030-01-07T17:00:00Z"}
    assert items[w.tutors["chen"].id]["next_slot"]["start"] == "2030-01-09T14:00:00Z"

    detail = ok(w.client.get(f"{API}/tutors/{w.tutors['chen'].id}", headers=after(w.head)))
    assert {k: detail[k] for k in PUBLIC_TUTOR_KEYS} == items[w.tutors["chen"].id]
    assert [s["start"] for s in detail["next_slots"]][:5] == [
        "2030-01-09T14:00:00Z",
        "2030-01-09T14:30:00Z",
        "2030-01-09T15:00:00Z",
        "2030-01-09T15:30:00Z",
        "2030-01-09T16:00:00Z",
    ]
    assert len(detail["next_slots"]) == 10
    assert all(parse(s["end"]) - parse(s["start"]) == timedelta(hours=1) for s in detail["next_slots"])
    for who in w.hidden.values():
        problem(w.client.get(f"{API}/tutors/{who.id}", headers=after(w.head)), 404)
    problem(w.client.get(f"{API}/tutors/{w.admin.id}"), 404)


def assert_walks(world: World, cases: list[tuple[int, dict[str, Any]]]) -> None:
    failures = []
    for limit, params in cases:
        whole = world.names(**params)
        walked = world.walk(limit, **params)
        if walked != whole or len(walked) != len(set(walked)):
            failures.append(f"limit={limit} {params}: pages gave {walked}, one page gave {whole}")
    assert not failures, "\n".join(failures)


def test_keyset_pagination_walks_everything_once(world: World) -> None:
    """limit=n pages, followed through next_cursor, give exactly the single-page result: same order, no
    duplicates, nothing skipped, and the last page has next_cursor null."""
    assert_walks(
        world,
        [
            (2, {"sort": "price"}),
            (1, {"sort": "price"}),
            (2, {"sort": "rating"}),
            (3, {"sort": "rating"}),
            (2, {}),
            (1, {"q": "lessons", "sort": "price"}),
            (1, {"q": "lessons", "sort": "rating"}),
            (2, {"sort": "price", "available_from": "2030-01-07T00:00:00Z", "available_to": "2030-01-10T00:00:00Z"}),
        ],
    )


def test_keyset_pagination_by_relevance(world: World) -> None:
    """The same for sort=relevance. All four bios say "lessons" once, so their ranks tie and the cursor's rank
    must compare equal to the rows' own rank for the tie-break on id to work."""
    assert_walks(
        world,
        [
            (2, {"q": "lessons"}),
            (1, {"q": "lessons", "sort": "relevance"}),
            (3, {"q": "lessons"}),
            (1, {"q": "algebra"}),
        ],
    )


def test_slots(world: World) -> None:
    w = world
    c = w.client
    alice, bruno, chen = (w.tutors[k].id for k in ("alice", "bruno", "chen"))

    def slots(tutor: str, frm: str, to: str, minutes: int | None = 60) -> list[str]:
        params: dict[str, Any] = {"from": frm, "to": to}
        if minutes is not None:
            params["duration_minutes"] = minutes
        body = ok(c.get(f"{API}/tutors/{tutor}/slots", params=params, headers=after(w.head)))
        assert set(body) >= {"items"}
        for s in body["items"]:
            a, b = parse(s["start"]), parse(s["end"])
            assert s["start"].endswith("Z") and a.minute in (0, 30) and a.second == 0, s
            assert b - a == timedelta(minutes=minutes or 60)
            assert parse(frm) <= a < parse(to)
        return [s["start"][11:16] for s in body["items"]]

    monday = ("2030-01-07T00:00:00Z", "2030-01-08T00:00:00Z")
    assert slots(alice, *monday) == ["10:00", "10:30", "11:00"]
    assert slots(alice, *monday, minutes=None) == ["10:00", "10:30", "11:00"]  # 60 by default
    assert slots(alice, *monday, minutes=30) == ["10:00", "10:30", "11:00", "11:30"]
    assert slots(alice, *monday, minutes=90) == ["10:00", "10:30"]
    assert slots(alice, *monday, minutes=120) == ["10:00"]
    # [from, to): a slot starting at `to` is not included; one starting at `from` is
    assert slots(alice, "2030-01-07T10:30:00Z", "2030-01-07T11:00:00Z", 30) == ["10:30"]
    # Paris in winter and in summer
    assert slots(bruno, *monday) == ["16:00", "16:30", "17:00"]
    assert slots(bruno, "2030-07-01T00:00:00Z", "2030-07-02T00:00:00Z") == ["15:00", "15:30", "16:00"]
    # New York across its spring-forward (Sunday 10 March 2030): Wednesdays 09:00 local are 14:00Z then 13:00Z
    got = ok(
        c.get(
            f"{API}/tutors/{chen}/slots",
            params={"from": "2030-03-04T00:00:00Z", "to": "2030-03-16T00:00:00Z", "duration_minutes": 120},
            headers=after(w.head),
        )
    )["items"]
    assert [s["start"] for s in got] == [
        "2030-03-06T14:00:00Z",
        "2030-03-06T14:30:00Z",
        "2030-03-06T15:00:00Z",
        "2030-03-13T13:00:00Z",
        "2030-03-13T13:30:00Z",
        "2030-03-13T14:00:00Z",
    ]
    # the past: nothing
    assert slots(alice, "2029-12-31T00:00:00Z", "2030-01-01T00:00:00Z") == []
    # a whole 31 days is allowed: five Mondays (7, 14, 21, 28 January, 4 February), three slots each
    month = ok(
        c.get(
            f"{API}/tutors/{alice}/slots",
            params={"from": "2030-01-05T00:00:00Z", "to": "2030-02-05T00:00:00Z"},
            headers=after(w.head),
        )
    )
    assert len(month["items"]) == 5 * 3  # 7, 14, 21, 28 Jan and 4 Feb

    for bad in (
        {"from": "2030-01-05T00:00:00Z", "to": "2030-02-05T00:01:00Z"},  # 31 days and a minute
        {"from": "2030-01-07T00:00:00Z", "to": "2030-01-07T00:00:00Z"},
        {"from": "2030-01-08T00:00:00Z", "to": "2030-01-07T00:00:00Z"},
        {"from": "2030-01-07T00:00:00Z"},
        {"to": "2030-01-07T00:00:00Z"},
        {"from": "monday", "to": "tuesday"},
        {"from": "2030-01-07T00:00:00Z", "to": "2030-01-08T00:00:00Z", "duration_minutes": 45},
        {"from": "2030-01-07T00:00:00Z", "to": "2030-01-08T00:00:00Z", "duration_minutes": 0},
        {"from": "2030-01-07T00:00:00Z", "to": "2030-01-08T00:00:00Z", "duration_minutes": 240},
    ):
        problem(c.get(f"{API}/tutors/{alice}/slots", params=bad), 422)
    r = c.get(f"{API}/tutors/{alice}/slots", params={"from": monday[0], "to": monday[1], "duration_minutes": "an hour"})
    assert r.status_code in (400, 422), r.text
    problem(c.get(f"{API}/tutors/{w.admin.id}/slots", params={"from": monday[0], "to": monday[1]}), 404)
    for who in w.hidden.values():
        problem(
            c.get(f"{API}/tutors/{who.id}/slots", params={"from": monday[0], "to": monday[1]}, headers=after(w.head)),
            404,
        )


def test_slots_respect_notice_blocks_and_openings(client: Any, prepared: Settings) -> None:
    c = client
    admin = staff(c, prepared, "admin")
    set_clock(c, admin, NOW)  # Sunday 23:50Z
    subject = create_subject(c, admin, "Chess", "Games")
    tutor, head = approved_tutor(
        c,
        admin,
        [subject["id"]],
        "Nora Notice",
        timezone="UTC",
        weekly=[{"weekday": 0, "start": "00:00", "end": "04:00"}],
        min_notice_minutes=120,
        blocks=[{"start": "2030-01-07T03:00:00Z", "end": "2030-01-07T03:30:00Z"}],
        openings=[{"start": "2030-01-08T21:00:00+01:00", "end": "2030-01-08T23:00:00+01:00"}],
    )
    profile = ok(c.get(f"{API}/tutor/profile", headers=tutor.auth))
    assert profile["min_notice_minutes"] == 120
    assert profile["availability"]["openings"] == [{"start": "2030-01-08T20:00:00Z", "end": "2030-01-08T22:00:00Z"}]

    def starts(minutes: int) -> list[str]:
        body = ok(
            c.get(
                f"{API}/tutors/{tutor.id}/slots",
                params={"from": "2030-01-06T00:00:00Z", "to": "2030-01-09T00:00:00Z", "duration_minutes": minutes},
                headers=after(head),
            )
        )
        return [s["start"] for s in body["items"]]

    # earliest start is now + 120 min = 01:50Z; the block takes 03:00-03:30; the opening adds Tuesday 20-22Z
    assert starts(60) == [
        "2030-01-07T02:00:00Z",
        "2030-01-08T20:00:00Z",
        "2030-01-08T20:30:00Z",
        "2030-01-08T21:00:00Z",
    ]
    assert starts(30) == [
        "2030-01-07T02:00:00Z",
        "2030-01-07T02:30:00Z",
        "2030-01-07T03:30:00Z",
        "2030-01-08T20:00:00Z",
        "2030-01-08T20:30:00Z",
        "2030-01-08T21:00:00Z",
        "2030-01-08T21:30:00Z",
    ]
    detail = ok(c.get(f"{API}/tutors/{tutor.id}", headers=after(head)))
    assert detail["next_slot"] == {"start": "2030-01-07T02:00:00Z", "end": "2030-01-07T03:00:00Z"}

    # move business time on: now 01:20Z, earliest 03:20Z
    set_clock(c, admin, "2030-01-07T01:20:00Z")
    assert starts(30)[:2] == ["2030-01-07T03:30:00Z", "2030-01-08T20:00:00Z"]
    assert starts(60)[0] == "2030-01-08T20:00:00Z"
    # a longer notice takes effect at once
    r = c.patch(f"{API}/tutor/profile", json={"min_notice_minutes": 60 * 24 * 2}, headers=tutor.auth)
    assert ok(r)["min_notice_minutes"] == 2880
    body = ok(
        c.get(
            f"{API}/tutors/{tutor.id}/slots",
            params={"from": "2030-01-06T00:00:00Z", "to": "2030-01-09T00:00:00Z"},
            headers=after(r),
        )
    )
    assert body["items"] == []
    ok(c.delete(f"{API}/admin/test-clock", headers=admin.auth))


# --------------------------------------------------------------------------------------- student profile


def test_student_profile(client: Any, prepared: Settings) -> None:
    c = client
    student = signup(c, "student", "Stu Dent")
    p = ok(c.get(f"{API}/student/profile", headers=student.auth))
    assert set(p) == {"bio", "goals", "learning_style", "timezone", "currency", "language"}
    assert all(isinstance(v, str) for v in p.values()), p
    assert (p["bio"], p["goals"], p["learning_style"]) == ("", "", "")

    change = {
        "bio": "  Second-year engineering student ",
        "goals": "Pass the linear algebra exam",
        "learning_style": "visual",
        "timezone": "America/Sao_Paulo",
        "currency": "BRL",
        "language": "pt-BR",
    }
    r = c.patch(f"{API}/student/profile", json=change, headers=student.auth)
    got = ok(r)
    assert got == {**change, "bio": "Second-year engineering student"}
    assert ok(c.get(f"{API}/student/profile", headers=after(r, auth=student.auth))) == got
    me = ok(c.get(f"{API}/me", headers=after(r, auth=student.auth)))
    assert (me["timezone"], me["currency"], me["language"]) == ("America/Sao_Paulo", "BRL", "pt-BR")
    # a subset changes only itself
    r = c.patch(f"{API}/student/profile", json={"goals": "Pass with distinction"}, headers=student.auth)
    assert ok(r) == {**got, "goals": "Pass with distinction"}

    for bad in (
        {"timezone": "Mars/Base"},
        {"timezone": "GMT+5"},
        {"currency": "real"},
        {"language": "Portuguese"},
        {"bio": "x" * 5001},
        {"learning_style": "y" * 201},
        {"bio": 5},
        {"favourite_colour": "blue"},
    ):
        r = c.patch(f"{API}/student/profile", json=bad, headers=student.auth)
        assert r.status_code in (400, 422), (bad, r.status_code, r.text)
        if "timezone" in bad:
            problem(r, 422)
    assert ok(c.get(f"{API}/student/profile", headers=student.auth))["timezone"] == "America/Sao_Paulo"
    # atomic: a bad field refuses the whole change
    r = c.patch(f"{API}/student/profile", json={"bio": "new bio", "timezone": "Nowhere/Land"}, headers=student.auth)
    problem(r, 422)
    assert ok(c.get(f"{API}/student/profile", headers=student.auth))["bio"] == "Second-year engineering student"

    tutor = signup(c, "tutor")
    admin = staff(c, prepared, "admin")
    for who in (tutor, admin):
        problem(c.get(f"{API}/student/profile", headers=who.auth), 403)
        problem(c.patch(f"{API}/student/profile", json={"bio": "x"}, headers=who.auth), 403)
    problem(c.get(f"{API}/student/profile"), 401)


def test_favorites_add_list_and_roles(client: Any, prepared: Settings) -> None:
    c = client
    admin = staff(c, prepared, "admin")
    subject = create_subject(c, admin, "Chemistry", "Science")
    t1, _ = approved_tutor(c, admin, [subject["id"]], "Fav One", amount=1000)
    t2, _ = approved_tutor(c, admin, [subject["id"]], "Fav Two", amount=2000)
    _t3, head = approved_tutor(c, admin, [subject["id"]], "Never Favorited", amount=3000)
    pending = signup(c, "tutor", "Not Yet")
    fill_profile(c, pending, [subject["id"]])
    student = signup(c, "student")
    other = signup(c, "student")

    def favorites(r: httpx.Response | None = None, who: Actor = student) -> list[str]:
        body = ok(c.get(f"{API}/student/favorites", headers=after(r or head, auth=who.auth)))
        for item in body["items"]:
            assert set(item) >= PUBLIC_TUTOR_KEYS, item
        return [i["id"] for i in body["items"]]

    assert favorites() == []
    r = c.post(f"{API}/student/favorites/{t1.id}", headers=student.auth)
    ok(r)
    r = c.post(f"{API}/student/favorites/{t1.id}", headers=student.auth)  # again: still one
    ok(r)
    assert favorites(r) == [t1.id]
    r = c.post(f"{API}/student/favorites/{t2.id}", headers=student.auth)
    ok(r)
    assert sorted(favorites(r)) == sorted([t1.id, t2.id])
    body = ok(c.get(f"{API}/student/favorites", headers=after(r, auth=student.auth)))
    one = {i["id"]: i for i in body["items"]}[t1.id]
    assert one["full_name"] == "Fav One" and one["hourly_rate"] == {"amount": 1000, "currency": "USD"}
    assert one["subjects"] == [{"id": subject["id"], "name": "Chemistry", "category": "Science"}]
    assert favorites(r, other) == []  # each student has their own
    events = ok(
        c.get(f"{API}/admin/events", params={"actor_id": student.id, "limit": 100}, headers=after(r, auth=admin.auth))
    )["items"]
    assert [e["type"].rsplit(".", 1)[-1] for e in events].count("FavoriteAdded") == 2  # the repeat recorded nothing

    # only approved tutors can be added; unknown ids are 404
    problem(c.post(f"{API}/student/favorites/{pending.id}", headers=student.auth), 404)
    problem(c.post(f"{API}/student/favorites/{admin.id}", headers=student.auth), 404)
    # a favorite who is suspended drops out of the list (the list is public tutors)
    r = c.post(f"{API}/admin/tutors/{t2.id}/suspend", json={"reason": "x"}, headers=admin.auth)
    ok(r)
    assert favorites(r) == [t1.id]
    r = c.post(f"{API}/admin/tutors/{t2.id}/reinstate", headers=admin.auth)
    assert sorted(favorites(r)) == sorted([t1.id, t2.id])

    for who in (t1, admin):
        problem(c.post(f"{API}/student/favorites/{t2.id}", headers=who.auth), 403)
        problem(c.delete(f"{API}/student/favorites/{t2.id}", headers=who.auth), 403)
        problem(c.get(f"{API}/student/favorites", headers=who.auth), 403)
    problem(c.get(f"{API}/student/favorites"), 401)


def test_favorites_remove(client: Any, prepared: Settings) -> None:
    c = client
    admin = staff(c, prepared, "admin")
    subject = create_subject(c, admin, "Chemistry", "Science")
    t1, _ = approved_tutor(c, admin, [subject["id"]], "Fav One", amount=1000)
    t2, _ = approved_tutor(c, admin, [subject["id"]], "Fav Two", amount=2000)
    t3, _ = approved_tutor(c, admin, [subject["id"]], "Never Favorited", amount=3000)
    student = signup(c, "student")

    def favorites(r: httpx.Response) -> list[str]:
        return [i["id"] for i in ok(c.get(f"{API}/student/favorites", headers=after(r, auth=student.auth)))["items"]]

    ok(c.post(f"{API}/student/favorites/{t1.id}", headers=student.auth))
    r = c.post(f"{API}/student/favorites/{t2.id}", headers=student.auth)
    assert sorted(favorites(r)) == sorted([t1.id, t2.id])
    r = c.delete(f"{API}/student/favorites/{t1.id}", headers=student.auth)
    ok(r)
    assert favorites(r) == [t2.id]
    r = c.delete(f"{API}/student/favorites/{t1.id}", headers=student.auth)  # not a favorite any more: fine
    ok(r)
    r = c.delete(f"{API}/student/favorites/{t3.id}", headers=student.auth)  # never was: fine
    ok(r)
    assert favorites(r) == [t2.id]

    # history: one FavoriteAdded per real change, one FavoriteRemoved
    events = ok(
        c.get(f"{API}/admin/events", params={"actor_id": student.id, "limit": 100}, headers=after(r, auth=admin.auth))
    )["items"]
    types = [e["type"].rsplit(".", 1)[-1] for e in events]
    assert types.count("FavoriteAdded") == 2 and types.count("FavoriteRemoved") == 1, types

    # adding back after removing works
    r = c.post(f"{API}/student/favorites/{t1.id}", headers=student.auth)
    assert sorted(favorites(r)) == sorted([t1.id, t2.id])


def test_search_positions_with_and_without_x_min_position(world: World) -> None:
    """Search's read position: waited for with X-Min-Position, read with the page's rows without it (also when
    the page is empty), 503 when it is not reached in time, 422 when it is not an integer."""
    c, head = world.client, event_position(world.head)
    waited = c.get(f"{API}/tutors", headers=after(world.head))
    assert ok(waited)["items"] and projection_position(waited) >= head
    plain = c.get(f"{API}/tutors")  # caught up by now: the position comes with the rows
    assert ok(plain)["items"] and projection_position(plain) >= head
    empty = c.get(f"{API}/tutors", params={"q": "zzzzunmatched"})
    assert ok(empty)["items"] == [] and projection_position(empty) >= head
    for raw in ("soon", "1.5", "-"):
        problem(c.get(f"{API}/tutors", headers={"X-Min-Position": raw}), 422, "validation-failed")
    lagging = c.get(f"{API}/tutors", params={"q": "algebra"}, headers={"X-Min-Position": str(10**12)})
    problem(lagging, 503, "projection-lagging")
    assert lagging.headers.get("Retry-After")


def test_full_text_follows_renames_suspensions_and_profile_edits(world: World) -> None:
    """A plain word alone (by relevance) is read from the projection's term index, other q alone from its narrow
    table of approved tutors' vectors, q with other filters from the tutor rows: all three follow a subject's
    rename, a suspension and its reinstatement, and a bio edit, and agree with each other, in order."""
    w, c, admin = world, world.client, world.admin
    s = {k: v["id"] for k, v in w.subjects.items()}

    def both(word: str) -> list[str]:
        alone = w.names(q=word)  # one word: the term index
        assert alone == w.names(q=f"{word} -zzzz") == w.names(q=word, min_price=0), word  # vectors; tutor rows
        assert sorted(alone) == sorted(w.names(q=word, sort="rating")), word
        return sorted(alone)

    assert both("physics") == ["chen", "dana"]
    w.head = ok_r(c.patch(f"{API}/admin/subjects/{s['physics']}", json={"name": "Astrophysics"}, headers=admin.auth))
    assert both("astrophysics") == ["chen", "dana"]
    assert both("physics") == []
    w.head = ok_r(c.post(f"{API}/admin/tutors/{w.tutors['chen'].id}/suspend", json={"reason": "x"}, headers=admin.auth))
    assert both("astrophysics") == ["dana"]
    w.head = ok_r(c.post(f"{API}/admin/tutors/{w.tutors['chen'].id}/reinstate", headers=admin.auth))
    assert both("astrophysics") == ["chen", "dana"]
    personal = {"bio": "Origami lessons", "location": "Remote", "languages": ["en"]}
    w.head = ok_r(c.patch(f"{API}/tutor/profile", json={"personal": personal}, headers=w.tutors["alice"].auth))
    assert both("origami") == ["alice"]
    assert both("calculus") == []


def ok_r(r: httpx.Response) -> httpx.Response:
    ok(r)
    return r


def test_term_index_holds_the_rank_of_every_plain_word(world: World, prepared: Settings) -> None:
    """`tutors_terms` holds, for every approved tutor and every plain word of its vector, exactly the rank that
    ranking the vector for that word alone gives (as search's websearch_to_tsquery reads it), and nothing of the
    hidden tutors."""
    world.search()  # waits for the projection to reach the world's last command
    with psycopg.connect(prepared.database_url) as conn:
        stored = conn.execute("SELECT lexeme, tutor_id, rank FROM tutors_terms").fetchall()
        expected = conn.execute(
            "SELECT w.lexeme, t.tutor_id, ts_rank(t.search, websearch_to_tsquery('simple', w.lexeme))"
            " FROM tutors t, unnest(t.search) w WHERE t.listed AND w.lexeme ~ '^[a-z]+$'"
        ).fetchall()
    assert len(stored) == len(set(stored)) and sorted(stored) == sorted(expected)
    hidden = {UUID(a.id) for a in world.hidden.values()}
    assert {"calculus", "lessons"} <= {lexeme for lexeme, _, _ in stored}
    assert not hidden & {tutor for _, tutor, _ in stored}


PLAIN = st.from_regex(r"[ ]{0,2}[A-Za-z]{1,12}[ ]{0,2}", fullmatch=True)
ANY_QUERY = st.from_regex(r"[ A-Za-z0-9'\"|&!:*()<>.,\-\u0130\u0131\u212a\u00e9]{0,14}", fullmatch=True)


def test_a_plain_word_is_read_as_websearch_reads_it(database: str) -> None:
    """Where `term_of` takes a query for one plain word, PostgreSQL's websearch_to_tsquery('simple', q), which the
    other search paths rank by, is that one lexeme: the two paths ask the same question. Plain words (padded) are
    drawn as often as anything else, and every plain word is taken."""
    with psycopg.connect(database) as conn:

        @settings(max_examples=300, deadline=None)
        @given(q=PLAIN | ANY_QUERY)
        def check(q: str) -> None:
            term = term_of(q)
            parsed = conn.execute("SELECT websearch_to_tsquery('simple', %s)::text", (q,)).fetchone()
            assert parsed is not None
            if q.strip().isascii() and q.strip().isalpha():
                assert term == q.strip().lower(), q
            if term is not None:
                assert parsed[0] == f"'{term}'", (q, parsed[0])

        check()
