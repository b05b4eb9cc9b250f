"""The booking API end to end (the real app behind TestClient, real projector threads, the test clock):
the request check order, auto-confirm, who may confirm / decline / cancel / reschedule / complete / mark a
no-show, what a cancel refunds, reviews and responses, lists and visibility, slots, notifications and the tutor
calendar. Queries carry X-Min-Position from the commands before them."""

from __future__ import annotations

import json
import queue
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from application.settings import Settings
from tests.bookings.support import API, User, World, make_world, ok, parse, problem, z

NOW = datetime(2027, 6, 1, 8, 0, tzinfo=UTC)  # a Tuesday; the tutor teaches 08:00-20:00 UTC every day
DAY = NOW.replace(hour=0)
WEEKLY = [{"weekday": d, "start": "08:00", "end": "20:00"} for d in range(7)]


@pytest.fixture
def w(shared_client: Any, shared_settings: Settings) -> World:
    """A tutor and students of this test's own on the module's app; business time back at NOW."""
    return make_world(shared_client, shared_settings, NOW, weekly=WEEKLY, min_notice_minutes=60)


def at(days: int, hour: int, minute: int = 0) -> datetime:
    return DAY + timedelta(days=days, hours=hour, minutes=minute)


def credit(w: World, student: User) -> dict[str, Any]:
    items = ok(w.get(student, "/student/credits"))["items"]
    mine = [i for i in items if i["tutor_id"] == str(w.tutor.id)]
    return mine[0] if mine else {"minutes_available": 0, "minutes_held": 0}


def slot_starts(w: World, user: User, frm: datetime, to: datetime, minutes: int = 60) -> list[str]:
    r = w.get(user, f"/tutors/{w.tutor.id}/slots", params={"from": z(frm), "to": z(to), "duration_minutes": minutes})
    return [s["start"] for s in ok(r)["items"]]


# ------------------------------------------------------------------------------------------ request checks


def test_request_is_checked_in_the_contract_order(w: World) -> None:
    rich, poor = w.student(600), w.student(0)
    # 1. the body: missing fields, a duration off the list, an instant without offset
    for body in (
        {"subject_id": w.subject_id, "start": z(at(2, 10)), "duration_minutes": 60},
        {"tutor_id": str(w.tutor.id), "subject_id": w.subject_id, "start": z(at(2, 10)), "duration_minutes": 45},
        {"tutor_id": str(w.tutor.id), "subject_id": w.subject_id, "start": "2027-06-03T10:00:00",
         "duration_minutes": 60},
        {"tutor_id": "not-a-uuid", "subject_id": w.subject_id, "start": z(at(2, 10)), "duration_minutes": 60},
    ):  # fmt: skip
        problem(w.post(poor, "/bookings", body), (400, 422))
    # 2. a tutor who is not approved, even at an off-grid time within the notice and without credit
    draft = w.client.post(
        API + "/auth/register",
        json={"email": f"draft-{poor.id}@example.test", "password": "Passw0rd-test", "full_name": "D", "role": "tutor"},
    ).json()
    problem(w.book(poor, NOW + timedelta(minutes=5), tutor=User(draft["user"]["id"], {})), 422, "tutor-not-bookable")
    # 3. off the grid or outside the weekly rule, even within the notice and without credit
    problem(w.book(poor, at(0, 9, 15)), 422, "outside-availability")
    problem(w.book(poor, at(2, 10, 15)), 422, "outside-availability")
    problem(w.book(poor, at(2, 19, 30)), 422, "outside-availability")  # 19:30-20:30 runs past 20:00
    problem(w.book(poor, at(2, 21)), 422, "outside-availability")
    # 4. on the grid inside availability but within the tutor's 60 minutes' notice (and no credit)
    problem(w.book(poor, NOW + timedelta(minutes=30)), 422, "too-short-notice")
    problem(w.book(poor, NOW - timedelta(hours=24)), 422, "too-short-notice")
    # 5. a taken time (and no credit): conflict comes first
    b = ok(w.book(rich, at(2, 10)), 201)
    problem(w.book(poor, at(2, 10)), 409, "booking-conflict")
    problem(w.book(poor, at(2, 9, 30)), 409, "booking-conflict")  # overlaps its first half
    problem(w.book(rich, at(2, 10, 30), 30), 409, "booking-conflict")
    # 6. free time, no credit with this tutor
    problem(w.book(poor, at(2, 12)), 422, "insufficient-credit")
    # and a free time with credit is booked, pending, with the contract's shape and the policy in force
    assert b["status"] == "pending"
    assert set(b) >= {"id", "tutor_id", "student_id", "subject_id", "start", "end", "duration_minutes", "status",
                      "note", "policy", "created_at", "pending_reschedule"}  # fmt: skip
    assert (b["start"], b["end"], b["duration_minutes"]) == (z(at(2, 10)), z(at(2, 11)), 60)
    assert b["policy"] == {"cancellation_window_hours": 12, "late_cancel_refund_bps": 5000, "no_show_refund_bps": 0,
                           "commission_bps": 2000}  # fmt: skip
    assert (b["student_id"], b["tutor_id"]) == (str(rich.id), str(w.tutor.id))
    # only students book
    problem(w.book(w.tutor, at(3, 10)), 403)
    assert credit(w, rich)["minutes_held"] == 60 and credit(w, rich)["minutes_available"] == 540


def test_auto_confirm_only_more_than_24_hours_ahead(shared_client: Any, shared_settings: Settings) -> None:
    w = make_world(shared_client, shared_settings, NOW, auto_confirm=True)  # available around the clock
    s = w.student(600)
    assert ok(w.book(s, NOW + timedelta(hours=26)), 201)["status"] == "confirmed"
    assert ok(w.book(s, NOW + timedelta(hours=23)), 201)["status"] == "pending"
    assert ok(w.book(s, NOW + timedelta(hours=2)), 201)["status"] == "pending"


# ---------------------------------------------------------------------------------------- lifecycle rules


def test_confirm_and_decline_by_the_tutor_on_pending_only(w: World) -> None:
    s, other = w.student(600), w.student(600)
    b = ok(w.book(s, at(2, 10)), 201)
    c = ok(w.book(s, at(2, 12)), 201)
    problem(w.post(s, f"/bookings/{b['id']}/confirm"), 403)
    problem(w.post(s, f"/bookings/{b['id']}/decline"), 403)
    problem(w.post(other, f"/bookings/{b['id']}/cancel"), 404)  # not theirs: as if it did not exist
    stranger = w.new_tutor(weekly=WEEKLY)
    problem(w.post(stranger, f"/bookings/{b['id']}/confirm"), 404)
    confirmed = ok(w.post(w.tutor, f"/bookings/{b['id']}/confirm"))
    assert confirmed["status"] == "confirmed"
    assert "confirmed" in problem(w.post(w.tutor, f"/bookings/{b['id']}/confirm"), 409, "wrong-status")["detail"]
    assert "confirmed" in problem(w.post(w.tutor, f"/bookings/{b['id']}/decline"), 409, "wrong-status")["detail"]
    assert credit(w, s)["minutes_held"] == 120
    declined = ok(w.post(w.tutor, f"/bookings/{c['id']}/decline"))
    assert declined["status"] == "declined"
    assert "declined" in problem(w.post(w.tutor, f"/bookings/{c['id']}/confirm"), 409)["detail"]
    assert "declined" in problem(w.post(s, f"/bookings/{c['id']}/cancel"), 409)["detail"]
    got = credit(w, s)
    assert (got["minutes_held"], got["minutes_available"]) == (60, 540)  # the decline released its hold
    assert ok(w.get(s, f"/bookings/{c['id']}"))["status"] == "declined"


def test_cancel_refunds_by_who_and_when(w: World) -> None:
    s = w.student(600)
    early = ok(w.book(s, at(2, 10)), 201)  # 50 h ahead
    late = ok(w.book(s, NOW + timedelta(hours=3), 90), 201)  # 3 h ahead
    by_tutor = ok(w.book(s, NOW + timedelta(hours=5)), 201)  # 5 h ahead
    for b in (early, late, by_tutor):
        ok(w.post(w.tutor, f"/bookings/{b['id']}/confirm"))
    assert credit(w, s)["minutes_held"] == 210
    r = ok(w.post(s, f"/bookings/{early['id']}/cancel", {"reason": "exam moved"}))
    assert set(r) == {"booking", "refunded_minutes", "forfeited_minutes"}
    assert (r["refunded_minutes"], r["forfeited_minutes"], r["booking"]["status"]) == (60, 0, "cancelled")
    r = ok(w.post(s, f"/bookings/{late['id']}/cancel", {"reason": "ill"}))
    assert (r["refunded_minutes"], r["forfeited_minutes"]) == (45, 45)  # late: 50 % by the default policy
    r = ok(w.post(w.tutor, f"/bookings/{by_tutor['id']}/cancel", {"reason": "tutor ill"}))
    assert (r["refunded_minutes"], r["forfeited_minutes"]) == (60, 0)  # a tutor's cancel always refunds all
    problem(w.post(s, f"/bookings/{early['id']}/cancel"), 409, "wrong-status")
    got = credit(w, s)
    assert (got["minutes_held"], got["minutes_available"]) == (0, 600 - 45)
    # the tutor earned the forfeited half of the late cancel: 45 min at 100/min less 20 % commission
    earnings = ok(w.get(w.tutor, "/tutor/earnings"))
    assert earnings["earned"] == {"amount": 3600, "currency": "USD"}, earnings
    # a pending request can be cancelled too, by its student, in full when early
    p = ok(w.book(s, at(3, 10)), 201)
    r = ok(w.post(s, f"/bookings/{p['id']}/cancel"))
    assert (r["refunded_minutes"], r["forfeited_minutes"], r["booking"]["status"]) == (60, 0, "cancelled")


def test_reschedule_is_answered_by_the_other_party(w: World) -> None:
    s = w.student(600)
    b = ok(w.book(s, at(2, 10)), 201)
    problem(w.post(s, f"/bookings/{b['id']}/reschedule", {"start": z(at(2, 14))}), 409, "wrong-status")  # pending
    ok(w.post(w.tutor, f"/bookings/{b['id']}/confirm"))
    problem(w.post(s, f"/bookings/{b['id']}/reschedule/accept"), 409)  # nothing proposed
    problem(w.post(s, f"/bookings/{b['id']}/reschedule", {"start": z(at(2, 14, 15))}), 422, "outside-availability")
    problem(w.post(s, f"/bookings/{b['id']}/reschedule", {"start": z(at(2, 21))}), 422, "outside-availability")
    other = ok(w.book(w.student(600), at(2, 16)), 201)
    problem(w.post(s, f"/bookings/{b['id']}/reschedule", {"start": z(at(2, 15, 30))}), 409, "booking-conflict")
    r = ok(w.post(s, f"/bookings/{b['id']}/reschedule", {"start": z(at(2, 14))}))
    assert r["pending_reschedule"] == {"start": z(at(2, 14)), "proposed_by": "student"}
    assert r["start"] == z(at(2, 10))
    problem(w.post(s, f"/bookings/{b['id']}/reschedule/accept"), 403)  # the proposer cannot answer
    problem(w.post(w.new_tutor(weekly=WEEKLY), f"/bookings/{b['id']}/reschedule/accept"), 404)
    moved = ok(w.post(w.tutor, f"/bookings/{b['id']}/reschedule/accept"))
    assert (moved["start"], moved["end"], moved["status"], moved["pending_reschedule"]) == (
        z(at(2, 14)), z(at(2, 15)), "confirmed", None)  # fmt: skip
    starts = slot_starts(w, s, at(2, 8), at(2, 20))
    assert z(at(2, 10)) in starts and z(at(2, 14)) not in starts and z(at(2, 16)) not in starts
    # the old time is free again: someone else books it
    ok(w.book(w.student(600), at(2, 10)), 201)
    # the tutor proposes; the tutor cannot answer; the student rejects and the booking stays
    r = ok(w.post(w.tutor, f"/bookings/{b['id']}/reschedule", {"start": z(at(3, 9))}))
    assert r["pending_reschedule"] == {"start": z(at(3, 9)), "proposed_by": "tutor"}
    problem(w.post(w.tutor, f"/bookings/{b['id']}/reschedule/reject"), 403)
    kept = ok(w.post(s, f"/bookings/{b['id']}/reschedule/reject"))
    assert (kept["start"], kept["pending_reschedule"]) == (z(at(2, 14)), None)
    assert ok(w.get(s, f"/bookings/{b['id']}"))["pending_reschedule"] is None
    assert other["status"] == "pending"


def test_complete_after_the_end_and_no_show_from_ten_minutes_after_the_start(w: World) -> None:
    s = w.student(600)
    done = ok(w.book(s, NOW + timedelta(hours=2)), 201)
    absent = ok(w.book(s, NOW + timedelta(hours=4)), 201)
    early = ok(w.book(s, NOW + timedelta(hours=6)), 201)
    for b in (done, absent, early):
        ok(w.post(w.tutor, f"/bookings/{b['id']}/confirm"))
    start = parse(done["start"])
    problem(w.post(w.tutor, f"/bookings/{done['id']}/complete"), 409, "wrong-status")
    problem(w.post(w.tutor, f"/bookings/{done['id']}/no-show"), 409, "wrong-status")
    w.set_clock(start + timedelta(minutes=5))
    problem(w.post(w.tutor, f"/bookings/{done['id']}/no-show"), 409, "wrong-status")
    problem(w.post(w.tutor, f"/bookings/{done['id']}/complete"), 409, "wrong-status")  # not ended
    w.set_clock(start + timedelta(minutes=61))
    problem(w.post(s, f"/bookings/{done['id']}/complete"), 403)
    completed = ok(w.post(w.tutor, f"/bookings/{done['id']}/complete"))
    assert completed["status"] == "completed"
    problem(w.post(w.tutor, f"/bookings/{done['id']}/complete"), 409)
    problem(w.post(s, f"/bookings/{done['id']}/cancel"), 409)
    w.set_clock(parse(absent["start"]) + timedelta(minutes=11))
    problem(w.post(s, f"/bookings/{absent['id']}/no-show"), 403)
    marked = ok(w.post(w.tutor, f"/bookings/{absent['id']}/no-show"))
    assert marked["status"] == "no_show"
    problem(w.post(w.tutor, f"/bookings/{absent['id']}/no-show"), 409)
    problem(w.post(w.tutor, f"/bookings/{early['id']}/no-show"), 409)
    got = credit(w, s)
    assert (got["minutes_held"], got["minutes_available"]) == (60, 600 - 180)  # a no-show refunds 0 % by default
    earnings = ok(w.get(w.tutor, "/tutor/earnings"))
    assert earnings["earned"]["amount"] == 2 * 4800 and earnings["pending"]["amount"] == 4800, earnings


def test_review_once_and_response_once(w: World) -> None:
    s = w.student(600)
    b = ok(w.book(s, NOW + timedelta(hours=2)), 201)
    pending = ok(w.book(s, NOW + timedelta(hours=5)), 201)
    ok(w.post(w.tutor, f"/bookings/{b['id']}/confirm"))
    problem(w.post(s, f"/bookings/{b['id']}/review", {"rating": 5, "text": "Great"}), 409)  # not completed yet
    w.set_clock(parse(b["end"]) + timedelta(minutes=1))
    ok(w.post(w.tutor, f"/bookings/{b['id']}/complete"))
    problem(w.post(s, f"/bookings/{pending['id']}/review", {"rating": 4}), 409)
    problem(w.post(w.tutor, f"/bookings/{b['id']}/review", {"rating": 5}), 403)
    for rating in (0, 6, 4.5, None, True):
        problem(w.post(s, f"/bookings/{b['id']}/review", {"rating": rating}), (400, 422))
    problem(w.post(s, f"/bookings/{b['id']}/review/response", {"text": "x"}), 403)
    problem(w.post(w.tutor, f"/bookings/{b['id']}/review/response", {"text": "Thanks"}), 409)  # nothing to answer
    review = ok(w.post(s, f"/bookings/{b['id']}/review", {"rating": 4, "text": "  Clear explanations  "}), 201)
    assert (review["rating"], review["text"], review["response"]) == (4, "Clear explanations", None)
    problem(w.post(s, f"/bookings/{b['id']}/review", {"rating": 1, "text": "changed my mind"}), 409)
    problem(w.post(w.tutor, f"/bookings/{b['id']}/review/response", {"text": ""}), (400, 422))
    answered = ok(w.post(w.tutor, f"/bookings/{b['id']}/review/response", {"text": "Thank you!"}), 201)
    assert answered["response"]["text"] == "Thank you!"
    problem(w.post(w.tutor, f"/bookings/{b['id']}/review/response", {"text": "again"}), 409)
    tutor = ok(w.get(s, f"/tutors/{w.tutor.id}"))
    assert (tutor["rating_average"], tutor["rating_count"]) == (4, 1), tutor
    assert len(tutor["reviews"]) == 1
    r = tutor["reviews"][0]
    assert (r["rating"], r["text"], r["response"]["text"]) == (4, "Clear explanations", "Thank you!")
    assert r["created_at"].endswith("Z") and r["response"]["created_at"].endswith("Z")
    # a reviewed tutor is still found by full-text search (the projection once dropped the search vector of a
    # tutor row it rewrote for a review), with the rating and the subjects
    found = ok(w.get(s, "/tutors", params={"q": "physics", "limit": 100}))["items"]
    mine = [x for x in found if x["id"] == str(w.tutor.id)]
    assert [x["rating_count"] for x in mine] == [1], found
    assert mine[0]["subjects"] and mine[0]["subjects"] == tutor["subjects"]


# ----------------------------------------------------------------------------------------------- queries


def test_lists_show_own_bookings_only(w: World) -> None:
    s1, s2 = w.student(600), w.student(600)
    a = ok(w.book(s1, at(2, 10)), 201)
    b = ok(w.book(s1, at(2, 12)), 201)
    c = ok(w.book(s2, at(2, 14)), 201)
    ok(w.post(w.tutor, f"/bookings/{b['id']}/confirm"))
    mine = ok(w.get(s1, "/bookings"))
    assert [x["id"] for x in mine["items"]] == [a["id"], b["id"]] and mine["next_cursor"] is None
    assert [x["id"] for x in ok(w.get(s1, "/bookings", params={"status": "pending"}))["items"]] == [a["id"]]
    assert [
        x["id"] for x in ok(w.get(s1, "/bookings", params={"status": "confirmed", "role": "student"}))["items"]
    ] == [b["id"]]
    assert [x["id"] for x in ok(w.get(s2, "/bookings"))["items"]] == [c["id"]]
    as_tutor = ok(w.get(w.tutor, "/bookings", params={"role": "tutor"}))
    assert [x["id"] for x in as_tutor["items"]] == [a["id"], b["id"], c["id"]]
    assert [x["id"] for x in ok(w.get(w.tutor, "/bookings", params={"status": "pending"}))["items"]] == [
        a["id"],
        c["id"],
    ]
    page = ok(w.get(w.tutor, "/bookings", params={"limit": 2}))
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = ok(w.get(w.tutor, "/bookings", params={"limit": 2, "cursor": page["next_cursor"]}))
    assert [x["id"] for x in rest["items"]] == [c["id"]] and rest["next_cursor"] is None
    problem(w.get(s1, "/bookings", params={"role": "tutor"}), 422)
    problem(w.get(s1, "/bookings", params={"status": "bogus"}), 422)
    assert ok(w.get(s1, f"/bookings/{a['id']}"))["id"] == a["id"]
    assert ok(w.get(w.tutor, f"/bookings/{a['id']}"))["id"] == a["id"]
    problem(w.get(s2, f"/bookings/{a['id']}"), 404)
    problem(w.get(w.new_tutor(weekly=WEEKLY), f"/bookings/{a['id']}"), 404)
    problem(w.client.get(f"{API}/bookings/{a['id']}"), 401)


def test_slots_exclude_pending_and_confirmed_bookings(w: World) -> None:
    s = w.student(600)
    frm, to = at(2, 8), at(2, 20)
    before = slot_starts(w, s, frm, to)
    assert before == [z(at(2, 8) + timedelta(minutes=30 * i)) for i in range(23)]
    p = ok(w.book(s, at(2, 10)), 201)
    c = ok(w.book(s, at(2, 14), 90), 201)
    ok(w.post(w.tutor, f"/bookings/{c['id']}/confirm"))
    after = slot_starts(w, s, frm, to)
    taken = {z(at(2, 9, 30)), z(at(2, 10)), z(at(2, 10, 30)), z(at(2, 13, 30)), z(at(2, 14)), z(at(2, 14, 30)),
             z(at(2, 15))}  # fmt: skip
    assert after == [x for x in before if x not in taken]
    ok(w.post(w.tutor, f"/bookings/{p['id']}/decline"))
    assert slot_starts(w, s, frm, to) == [x for x in before if x not in taken - {z(at(2, 9, 30)), z(at(2, 10)),
                                                                                z(at(2, 10, 30))}]  # fmt: skip
    detail = ok(w.get(s, f"/tutors/{w.tutor.id}"))
    assert all(
        x["start"] not in taken - {z(at(2, 9, 30)), z(at(2, 10)), z(at(2, 10, 30))} for x in detail["next_slots"]
    )


def test_notifications_and_read_receipts(w: World) -> None:
    s = w.student(600)
    b = ok(w.book(s, at(2, 10)), 201)
    items = ok(w.get(w.tutor, "/notifications"))["items"]
    requested = [n for n in items if n["type"] == "booking.requested"]
    assert len(requested) == 1 and requested[0]["data"]["booking_id"] == b["id"] and requested[0]["read"] is False
    ok(w.post(w.tutor, f"/bookings/{b['id']}/confirm"))
    mine = ok(w.get(s, "/notifications"))["items"]
    confirmed = [n for n in mine if n["type"] == "booking.confirmed"]
    assert len(confirmed) == 1 and confirmed[0]["data"]["booking_id"] == b["id"]
    assert not [n for n in mine if n["type"] == "booking.requested"]
    problem(w.post(s, f"/notifications/{requested[0]['id']}/read"), 404)  # the tutor's, not hers
    r = ok(w.post(w.tutor, f"/notifications/{requested[0]['id']}/read"))
    assert r == {"id": requested[0]["id"], "read": True}
    again = {n["id"]: n for n in ok(w.get(w.tutor, "/notifications"))["items"]}
    assert again[requested[0]["id"]]["read"] is True
    unread = [n["id"] for n in ok(w.get(w.tutor, "/notifications", params={"unread": "true"}))["items"]]
    assert requested[0]["id"] not in unread
    ok(w.post(s, f"/bookings/{b['id']}/cancel", {"reason": "sorry"}))
    cancelled = [n for n in ok(w.get(w.tutor, "/notifications"))["items"] if n["type"] == "booking.cancelled"]
    assert len(cancelled) == 1 and cancelled[0]["data"]["booking_id"] == b["id"]


def _frames(ws: Any, seconds: float, enough: Any = lambda frames: False) -> list[dict[str, Any]]:
    """The frames the socket receives within `seconds`, or until `enough(frames)`."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0 and not enough(out):
        try:
            out.append(json.loads(ws.receive_text(timeout=left)))
        except queue.Empty:
            break
    return out


def _has(kind: str, **data: Any) -> Any:
    return lambda frames: any(f["type"] == kind and all(f["data"].get(k) == v for k, v in data.items()) for f in frames)


def test_websocket_frames_for_booking_changes_and_notifications(w: World) -> None:
    s = w.student(600)
    token = {u.id: u.headers["Authorization"].split()[1] for u in (s, w.tutor)}
    with (
        w.client.websocket_connect(f"{API}/ws?token={token[w.tutor.id]}") as to_tutor,
        w.client.websocket_connect(f"{API}/ws?token={token[s.id]}") as to_student,
    ):
        # The hub follows the log from the moment it starts: book until the tutor hears of a booking.
        booked: list[str] = []
        heard: list[dict[str, Any]] = []
        for hour in (10, 12, 14, 16):
            booked.append(ok(w.book(s, at(3, hour)), 201)["id"])
            heard = _frames(to_tutor, 3.0, _has("booking.updated"))
            if any(f["type"] == "booking.updated" for f in heard):
                break
        requested = [f["data"] for f in heard if f["type"] == "booking.updated"]
        assert requested and requested[0]["event"] == "Requested" and requested[0]["booking_id"] in booked
        b = requested[0]["booking_id"]
        ok(w.post(w.tutor, f"/bookings/{b}/confirm"))
        told = _frames(to_student, 8.0, lambda f: _has("booking.updated", event="Confirmed")(f)
                       and _has("notification.created", type="booking.confirmed")(f))  # fmt: skip
        assert {"booking_id": b, "event": "Confirmed"} in [f["data"] for f in told if f["type"] == "booking.updated"]
        notes = [f["data"] for f in told if f["type"] == "notification.created"]
        assert any(n["type"] == "booking.confirmed" and n["data"]["booking_id"] == b for n in notes), told
        # the tutor's own notification of the request reached the tutor, not the student
        heard += _frames(to_tutor, 8.0, _has("notification.created", type="booking.requested"))
        tutor_notes = [f["data"] for f in heard if f["type"] == "notification.created"]
        assert any(n["type"] == "booking.requested" for n in tutor_notes), tutor_notes
        assert not [n for n in notes if n["type"] == "booking.requested"]


def test_tutor_calendar(w: World) -> None:
    s = w.student(600)
    a = ok(w.book(s, at(2, 10)), 201)
    b = ok(w.book(s, at(5, 10)), 201)
    far = ok(w.book(s, at(20, 10)), 201)
    ok(w.post(w.tutor, f"/bookings/{b['id']}/decline"))
    cal = ok(w.get(w.tutor, "/tutor/calendar"))
    assert [(x["id"], x["status"]) for x in cal["items"]] == [(a["id"], "pending"), (b["id"], "declined")]
    window = ok(w.get(w.tutor, "/tutor/calendar", params={"from": z(at(19, 0)), "to": z(at(21, 0))}))
    assert [x["id"] for x in window["items"]] == [far["id"]]
    problem(w.get(s, "/tutor/calendar"), 403)
    problem(w.get(w.tutor, "/tutor/calendar", params={"from": z(at(2, 0)), "to": z(at(1, 0))}), 422)


# ------------------------------------------------------------------------------------- instants and offsets


def _book_at(w: World, student: User, start: str, minutes: int = 60) -> Any:
    body = {"tutor_id": str(w.tutor.id), "subject_id": w.subject_id, "start": start, "duration_minutes": minutes}
    return w.post(student, "/bookings", body)


# Sunday 2027-06-06 19:00Z written as Monday 2027-06-07 01:00+06:00: another local date and another ISO week.
SUNDAY_19 = at(5, 19)
SUNDAY_19_AS_MONDAY = "2027-06-07T01:00:00+06:00"


def test_a_start_with_another_offset_is_returned_in_utc(w: World) -> None:
    """Instants are stored and returned in UTC whatever offset the client wrote them with."""
    b = ok(_book_at(w, w.student(600), SUNDAY_19_AS_MONDAY), 201)
    assert (b["start"], b["end"]) == (z(SUNDAY_19), z(SUNDAY_19 + timedelta(hours=1))), b
    assert ok(w.get(w.tutor, f"/bookings/{b['id']}"))["start"] == z(SUNDAY_19)


def test_overlaps_are_refused_whatever_offset_the_times_were_written_with(w: World) -> None:
    """18:30Z-19:30Z overlaps 19:00Z-20:00Z however the client wrote the latter; the tutor must not be booked twice."""
    ok(_book_at(w, w.student(600), SUNDAY_19_AS_MONDAY), 201)
    problem(w.book(w.student(600), SUNDAY_19 - timedelta(minutes=30)), 409, "booking-conflict")
    problem(_book_at(w, w.student(600), z(SUNDAY_19)), 409, "booking-conflict")


def test_the_grid_is_the_utc_grid_whatever_the_offset(w: World) -> None:
    """16:00+05:45 is 10:15Z: on the hour in Kathmandu, off the :00/:30 UTC grid (the slots never offer it)."""
    problem(_book_at(w, w.student(600), "2027-06-03T16:00:00+05:45"), 422, "outside-availability")


def test_the_rest_of_a_no_show_slot_is_bookable_when_slots_offer_it(w: World) -> None:
    """After a no-show the booking is no longer pending or confirmed, so slots offer the rest of its time; a
    request for a time slots offer must not be refused as a conflict."""
    s = w.student(600)
    b = ok(w.book(s, NOW + timedelta(hours=2), 120), 201)
    ok(w.post(w.tutor, f"/bookings/{b['id']}/confirm"))
    start = parse(b["start"])
    w.set_clock(start + timedelta(minutes=15))
    ok(w.post(w.tutor, f"/bookings/{b['id']}/no-show"))
    later = start + timedelta(minutes=90)  # inside the no-show's 2 hours, after the 60 minutes' notice
    offered = slot_starts(w, s, later, later + timedelta(minutes=30), 30)
    other = w.student(600)
    r = w.book(other, later, 30)
    if z(later) in offered:
        assert r.status_code == 201, f"slots offer {z(later)} but booking it gives {r.status_code}: {r.text}"
    else:
        problem(r, 409, "booking-conflict")


def test_a_repeated_request_with_its_idempotency_key_books_once(w: World) -> None:
    s = w.student(600)
    body = {"tutor_id": str(w.tutor.id), "subject_id": w.subject_id, "start": z(at(2, 10)), "duration_minutes": 60}
    key = {**s.headers, "Idempotency-Key": "book-tuesday-10"}
    first = w.client.post(API + "/bookings", json=body, headers=key)
    again = w.client.post(API + "/bookings", json=body, headers=key)
    assert ok(first, 201) == ok(again, 201)
    problem(w.client.post(API + "/bookings", json={**body, "start": z(at(2, 12))}, headers=key), 422,
            "idempotency-key-reused")  # fmt: skip
    w.seen(again)
    assert [b["id"] for b in ok(w.get(s, "/bookings"))["items"]] == [first.json()["id"]]
    assert credit(w, s)["minutes_held"] == 60


def test_a_proposed_time_taken_meanwhile_cannot_be_accepted(w: World) -> None:
    s = w.student(600)
    b = ok(w.book(s, at(2, 10)), 201)
    ok(w.post(w.tutor, f"/bookings/{b['id']}/confirm"))
    ok(w.post(s, f"/bookings/{b['id']}/reschedule", {"start": z(at(2, 14))}))
    ok(w.book(w.student(600), at(2, 14, 30)), 201)  # someone books across the proposed time meanwhile
    problem(w.post(w.tutor, f"/bookings/{b['id']}/reschedule/accept"), 409, "booking-conflict")
    kept = ok(w.get(s, f"/bookings/{b['id']}"))
    assert (kept["start"], kept["status"]) == (z(at(2, 10)), "confirmed")
    assert z(at(2, 10)) not in slot_starts(w, s, at(2, 8), at(2, 20))  # still reserved at its own time


def test_a_student_cannot_cancel_a_lesson_that_already_took_place(w: World) -> None:
    """Once a confirmed lesson has ended it is completed (by the tutor, or by itself after 24 h) or marked a
    no-show; a student's cancel then would turn a lesson they had (or missed: 0 % refund) into a 50 % refund."""
    s = w.student(600)
    b = ok(w.book(s, NOW + timedelta(hours=2)), 201)
    ok(w.post(w.tutor, f"/bookings/{b['id']}/confirm"))
    w.set_clock(parse(b["end"]) + timedelta(minutes=30))
    problem(w.post(s, f"/bookings/{b['id']}/cancel", {"reason": "after the fact"}), 409)
    assert ok(w.get(s, f"/bookings/{b['id']}"))["status"] == "confirmed"
    assert ok(w.post(w.tutor, f"/bookings/{b['id']}/complete"))["status"] == "completed"


def test_search_next_slot_follows_bookings_and_time(w: World) -> None:
    """Search's next_slot (worked out once, then reused per tutor) moves when the slot is booked, freed, or
    passes out of the notice period, and stays right when the tutor changes nothing."""
    s = w.student(600)

    def next_slot() -> Any:
        items = ok(w.get(s, "/tutors", params={"subject": w.subject_id}))["items"]
        mine = [i for i in items if i["id"] == str(w.tutor.id)]
        assert len(mine) == 1, items
        return mine[0]["next_slot"]

    # business time runs on from NOW (08:00) and the tutor wants 60 minutes' notice: 09:30 is the first grid start
    hour = {"start": z(at(0, 9, 30)), "end": z(at(0, 10, 30))}
    assert next_slot() == hour
    assert next_slot() == hour  # the reused answer
    window = {"subject": w.subject_id, "available_from": z(at(0, 9, 30)), "available_to": z(at(0, 10, 30))}

    def in_window() -> bool:
        return str(w.tutor.id) in {i["id"] for i in ok(w.get(s, "/tutors", params=window))["items"]}

    assert in_window()
    b = ok(w.book(s, at(0, 9, 30)), 201)
    assert next_slot() == {"start": z(at(0, 10, 30)), "end": z(at(0, 11, 30))}
    assert not in_window()  # 09:30 is taken and 10:00-11:00 would overlap it
    ok(w.post(s, f"/bookings/{b['id']}/cancel", {"reason": "clash"}))
    assert next_slot() == hour
    assert in_window()
    w.set_clock(NOW + timedelta(minutes=45))  # 09:30 is within the notice from 08:45 on
    assert next_slot() == {"start": z(at(0, 10)), "end": z(at(0, 11))}
    w.set_clock(NOW)  # back in time: worked out again, not taken from a later answer
    assert next_slot() == hour
