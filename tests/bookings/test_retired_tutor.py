"""A tutor whose account is deactivated or deleted (an identity event) leaves the tutoring side at once: not
listed, 404 on their page and slots, 422 `tutor-not-bookable` for packages and bookings; their lessons that have
not started are cancelled by the platform with every minute refunded; reactivation lists them again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from application.settings import Settings
from tests.bookings.support import API, World, head, make_world, ok, problem, z
from tests.support.system import server_env

NOW = datetime(2027, 7, 6, 8, 0, tzinfo=UTC)
WEEKLY = [{"weekday": d, "start": "08:00", "end": "20:00"} for d in range(7)]


@pytest.fixture
def w(shared_client: Any, shared_settings: Settings) -> World:
    return make_world(shared_client, shared_settings, NOW, weekly=WEEKLY)


def _listed(w: World, who: Any) -> bool:
    ids = {t["id"] for t in ok(w.get(who, "/tutors", params={"limit": 100}))["items"]}
    page = w.get(who, f"/tutors/{w.tutor.id}")
    slots = w.get(who, f"/tutors/{w.tutor.id}/slots", params={"from": z(NOW), "to": z(NOW + timedelta(days=2))})
    assert page.status_code in (200, 404) and slots.status_code == page.status_code, (page.text, slots.text)
    listed = page.status_code == 200
    assert (str(w.tutor.id) in ids) == listed
    return listed


def _set_active(w: World, active: bool) -> None:
    w.seen(w.client.patch(f"{API}/admin/users/{w.tutor.id}", json={"is_active": active}, headers=w.admin.headers))


def _sweep(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's booking sweep and its jobs, run in this process once the read models have caught up."""
    for key, value in server_env(w.settings).items():
        monkeypatch.setenv(key, value)
    from workers import actors

    for job in (actors.expire_booking, actors.complete_booking, actors.remind_booking, actors.withdraw_booking):
        monkeypatch.setattr(job, "send", job.fn)
    ok(w.get(w.admin, "/admin/users", params={"limit": 1}))  # waits for the position the tests wrote
    ok(w.get(w.students[0], "/bookings"))
    actors.sweep_bookings.fn()
    w.pos = max(w.pos, head(w.settings.database_url))  # later reads reflect what the jobs recorded


def test_a_deactivated_tutor_is_unlisted_unbookable_and_their_lessons_refunded(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    student = w.student(240)
    pending = ok(w.book(student, NOW + timedelta(days=1, hours=2)), 201)
    confirmed = ok(w.book(student, NOW + timedelta(days=1, hours=4), minutes=90), 201)
    ok(w.post(w.tutor, f"/bookings/{confirmed['id']}/confirm"))
    assert _listed(w, student)
    held = ok(w.get(student, "/student/credits"))["items"][0]
    assert (held["minutes_available"], held["minutes_held"]) == (90, 150)

    _set_active(w, False)
    assert not _listed(w, student)
    problem(w.book(student, NOW + timedelta(days=2, hours=2)), 422, "tutor-not-bookable")
    r = w.post(student, "/packages/purchases", {"tutor_id": str(w.tutor.id), "lessons": 5})
    problem(r, 422, "tutor-not-bookable")
    # favorites list only listed tutors, and a new favorite of an unlisted tutor is unknown
    problem(w.post(student, f"/student/favorites/{w.tutor.id}"), 404, "not-found")

    _sweep(w, monkeypatch)
    for b in (pending, confirmed):
        got = ok(w.get(student, f"/bookings/{b['id']}"))
        assert got["status"] == "cancelled", got
    credit = ok(w.get(student, "/student/credits"))["items"][0]
    assert (credit["minutes_available"], credit["minutes_held"]) == (240, 0)
    kinds = [n["type"] for n in ok(w.get(student, "/notifications", params={"limit": 100}))["items"]]
    assert kinds.count("booking.cancelled") == 2, kinds

    _set_active(w, True)
    assert _listed(w, student)
    ok(w.book(student, NOW + timedelta(days=2, hours=2)), 201)


def test_a_deleted_tutor_never_comes_back(w: World) -> None:
    student = w.student(60)
    r = w.seen(w.client.delete(f"{API}/admin/users/{w.tutor.id}", headers=w.admin.headers))
    ok(r)
    assert not _listed(w, student)
    problem(w.book(student, NOW + timedelta(days=1, hours=2)), 422, "tutor-not-bookable")


def test_a_tutor_moved_to_another_role_is_unlisted_until_moved_back(w: World) -> None:
    student = w.student(60)
    w.seen(w.client.patch(f"{API}/admin/users/{w.tutor.id}", json={"role": "student"}, headers=w.admin.headers))
    assert not _listed(w, student)
    w.seen(w.client.patch(f"{API}/admin/users/{w.tutor.id}", json={"role": "tutor"}, headers=w.admin.headers))
    assert _listed(w, student)


def test_the_sweep_leaves_started_lessons_and_other_tutors_alone(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    student = w.student(120)
    other = w.new_tutor(weekly=WEEKLY)
    other_student = w.student(60, tutor=other)
    started = ok(w.book(student, NOW + timedelta(hours=2)), 201)
    ok(w.post(w.tutor, f"/bookings/{started['id']}/confirm"))
    kept = ok(w.book(other_student, NOW + timedelta(days=1, hours=3), tutor=other), 201)
    w.set_clock(NOW + timedelta(hours=2, minutes=30))  # the lesson has started
    _set_active(w, False)
    _sweep(w, monkeypatch)
    assert ok(w.get(student, f"/bookings/{started['id']}"))["status"] == "confirmed"
    assert ok(w.get(other_student, f"/bookings/{kept['id']}"))["status"] == "pending"
