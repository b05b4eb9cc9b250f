"""Typed aggregate state, unchanged events: the JSON that Booking and CreditAccount record is byte for byte what it
was when their state was dicts and strings, and streams recorded then replay into the frozen values and enums.

No database: the project's MetaMapper turns events into stored events and back, as the store does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from domain.booking import Booking, BookingStatus
from domain.credits import CreditAccount, HoldState, Lot, LotState, Part
from domain.platform import DEFAULT_POLICY, PlatformSettings, Policy
from tests.platform.store.shapes import parse, recorded, replay

S, T, SUB = UUID(int=1), UUID(int=2), UUID(int=3)
T0 = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)
# What Booking and CreditAccount recorded when their state was dicts and strings (made by that code, run through
# this mapper), without each event's timestamp and _meta
RECORDED = parse(
    """
Requested {"originator_topic":"domain.booking:Booking","student_id":"00000000-0000-0000-0000-000000000001","tutor_id":"00000000-0000-0000-0000-000000000002","subject_id":"00000000-0000-0000-0000-000000000003","start":"2031-03-02T15:00:00Z","end":"2031-03-02T16:00:00Z","duration_minutes":60,"note":"hi","policy":{"cancellation_window_hours":12,"late_cancel_refund_bps":5000,"no_show_refund_bps":0,"commission_bps":2000,"pending_expiry_hours":24,"auto_complete_hours":24},"settings_version":3,"requested_at":"2031-03-01T09:00:00Z"}
Confirmed {"auto":false}
Cancelled {"by":"student","reason":"late","refunded_minutes":30,"forfeited_minutes":30}
Opened {"originator_topic":"domain.credits:CreditAccount","student_id":"00000000-0000-0000-0000-000000000001"}
CreditGranted {"student_id":"00000000-0000-0000-0000-000000000001","lot_id":"lot-a","purchase_id":"p-a","tutor_id":"00000000-0000-0000-0000-000000000002","minutes":60,"amount":4000,"currency":"USD","expires_at":"2031-03-02T09:00:00+00:00"}
CreditGranted {"student_id":"00000000-0000-0000-0000-000000000001","lot_id":"lot-b","purchase_id":"p-b","tutor_id":"00000000-0000-0000-0000-000000000002","minutes":120,"amount":7001,"currency":"USD","expires_at":"2031-03-03T09:00:00+00:00"}
CreditHeld {"student_id":"00000000-0000-0000-0000-000000000001","booking_id":"bk-1","tutor_id":"00000000-0000-0000-0000-000000000002","parts":[{"lot_id":"lot-a","minutes":60,"amount":4000},{"lot_id":"lot-b","minutes":30,"amount":1750}],"currency":"USD","commission_bps":2000}
HoldResolved {"student_id":"00000000-0000-0000-0000-000000000001","booking_id":"bk-1","tutor_id":"00000000-0000-0000-0000-000000000002","outcome":"cancelled","captured":[{"lot_id":"lot-a","minutes":45,"amount":3000}],"released":[{"lot_id":"lot-a","minutes":15,"amount":1000},{"lot_id":"lot-b","minutes":30,"amount":1750}],"commission":600,"currency":"USD"}
LotExpired {"student_id":"00000000-0000-0000-0000-000000000001","lot_id":"lot-a","minutes":15,"amount":1000,"currency":"USD"}
CreditRefunded {"student_id":"00000000-0000-0000-0000-000000000001","lot_id":"lot-b","minutes":120,"amount":7001,"currency":"USD"}
"""
)
BOOKING, CREDIT = RECORDED[:3], RECORDED[3:]
SECRET = "m" * 22
# Confirmed is at class_version 2 since meeting links: it records the lesson's meeting secret
CONFIRMED_V2 = ("Confirmed", f'{{"auto":false,"meeting_secret":"{SECRET}","class_version":2}}')
POLICY_JSON = (
    '{"cancellation_window_hours":12,"late_cancel_refund_bps":5000,"no_show_refund_bps":0,"commission_bps":2000,'
    '"pending_expiry_hours":24,"auto_complete_hours":24}'
)


def test_the_recorded_json_is_what_it_was() -> None:
    b = Booking.request(S, T, SUB, T0 + timedelta(hours=30), 60, "hi", DEFAULT_POLICY, 3, T0)
    b.confirm(T, SECRET, now=T0)
    b.cancel(S, "late", T0 + timedelta(hours=25))
    assert recorded(b.collect_events()) == [BOOKING[0], CONFIRMED_V2, BOOKING[2]]
    a = CreditAccount(student_id=S)
    a.grant("lot-a", "p-a", str(T), 60, 4000, "USD", T0 + timedelta(days=1))
    a.grant("lot-b", "p-b", str(T), 120, 7001, "USD", T0 + timedelta(days=2))
    a.hold("bk-1", str(T), 90, T0, 2000)
    a.resolve("bk-1", 45, HoldState.CANCELLED)
    a.expire(T0 + timedelta(days=1, hours=1))
    a.refund("lot-b")
    assert recorded(a.collect_events()) == CREDIT


def test_old_streams_replay_into_typed_state() -> None:
    b = replay(Booking, BOOKING)
    assert b.status is BookingStatus.CANCELLED and b.status == "cancelled"
    assert b.policy == Policy(12, 5000, 0, 2000, 24, 24)
    a = replay(CreditAccount, CREDIT)
    expires = datetime(2031, 3, 2, 9, 0, tzinfo=UTC)
    assert a.lots["lot-a"] == Lot("lot-a", "p-a", str(T), 60, 4000, "USD", expires, 0, 0, LotState.EXPIRED)
    assert a.lots["lot-b"] == Lot(
        "lot-b", "p-b", str(T), 120, 7001, "USD", expires + timedelta(days=1), 0, 0, "refunded"
    )
    hold = a.holds["bk-1"]
    assert hold.parts == (Part("lot-a", 60, 4000), Part("lot-b", 30, 1750))
    assert hold.state is HoldState.CANCELLED and hold.commission_bps == 2000


def test_a_confirmation_recorded_before_meeting_links_loads_without_a_room() -> None:
    old = replay(Booking, BOOKING[:2])
    assert old.status is BookingStatus.CONFIRMED and old.meeting_secret is None
    assert replay(Booking, [BOOKING[0], CONFIRMED_V2]).meeting_secret == SECRET


def test_a_request_recorded_before_the_timings_keeps_the_one_day_defaults() -> None:
    old = POLICY_JSON.replace(',"pending_expiry_hours":24,"auto_complete_hours":24', "")
    b = replay(Booking, [(BOOKING[0][0], BOOKING[0][1].replace(POLICY_JSON, old))])
    assert b.policy == Policy(12, 5000, 0, 2000)
    assert b.expires_at == T0 + timedelta(hours=24) and b.completes_at == b.end + timedelta(hours=24)


def test_every_booking_request_keeps_the_policy_of_the_settings_version() -> None:
    s = PlatformSettings.defaults()
    assert s.booking_policy == DEFAULT_POLICY
    s.change({"commission_bps": 1000, "pending_expiry_hours": 2})
    assert (s.booking_policy.commission_bps, s.booking_policy.pending_expiry_hours) == (1000, 2)
    assert s.booking_policy.cancellation_window_hours == DEFAULT_POLICY.cancellation_window_hours
