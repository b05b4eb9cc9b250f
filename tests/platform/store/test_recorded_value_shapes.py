"""The booking's proposal, review and response and the tutor's documents are frozen values in memory, and the events
that make them are byte for byte what they were when they were dicts: streams recorded then replay into the values.

No database: the project's MetaMapper turns events into stored events and back, as the store does (as in
test_recorded_shapes.py, whose cases these extend)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from domain.booking import Booking
from domain.booking_values import Party, Proposal, Review, ReviewResponse
from domain.documents import Document, DocumentStatus
from domain.files import StoredFile
from domain.platform import DEFAULT_POLICY
from domain.tutor import TutorProfile
from tests.platform.store.shapes import parse, recorded, replay

S, T, SUB, DOC = UUID(int=1), UUID(int=2), UUID(int=3), UUID(int=7)
T0 = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)
# What Booking and TutorProfile recorded when the proposal, review, response and documents were dicts (made by that
# code, run through this mapper), without each event's timestamp and _meta
RECORDED = parse(
    """
Requested {"originator_topic":"domain.booking:Booking","student_id":"00000000-0000-0000-0000-000000000001","tutor_id":"00000000-0000-0000-0000-000000000002","subject_id":"00000000-0000-0000-0000-000000000003","start":"2031-03-02T15:00:00Z","end":"2031-03-02T16:00:00Z","duration_minutes":60,"note":"hi","policy":{"cancellation_window_hours":12,"late_cancel_refund_bps":5000,"no_show_refund_bps":0,"commission_bps":2000,"pending_expiry_hours":24,"auto_complete_hours":24},"settings_version":3,"requested_at":"2031-03-01T09:00:00Z"}
Confirmed {"auto":false}
RescheduleProposed {"start":"2031-03-02T17:00:00Z","end":"2031-03-02T18:00:00Z","proposed_by":"student"}
RescheduleRejected {"by":"tutor"}
RescheduleProposed {"start":"2031-03-02T18:00:00Z","end":"2031-03-02T19:00:00Z","proposed_by":"tutor"}
Rescheduled {"start":"2031-03-02T18:00:00Z","end":"2031-03-02T19:00:00Z","previous_start":"2031-03-02T15:00:00Z","by":"student"}
Completed {"auto":false}
Reviewed {"tutor_id":"00000000-0000-0000-0000-000000000002","rating":4,"text":"good","created_at":"2031-03-03T02:00:00Z"}
ReviewResponded {"tutor_id":"00000000-0000-0000-0000-000000000002","text":"thanks","created_at":"2031-03-03T03:00:00Z"}
Created {"originator_topic":"domain.tutor:TutorProfile","tutor_id":"00000000-0000-0000-0000-000000000002"}
DocumentRequested {"document_id":"00000000-0000-0000-0000-000000000007","filename":"cv.pdf","content_type":"application/pdf","size":1000,"key":"tutors/x/cv.pdf","requested_at":"2031-03-01T09:00:00Z"}
DocumentUploaded {"document_id":"00000000-0000-0000-0000-000000000007","size":900,"uploaded_at":"2031-03-01T09:05:00Z","key":"checked/documents/7"}
"""
)
BOOKING, PROFILE = RECORDED[:9], RECORDED[9:]
PDF = b"%PDF-1.4 x"
SECRET = "m" * 22
CONFIRMED_V2 = ("Confirmed", f'{{"auto":false,"meeting_secret":"{SECRET}","class_version":2}}')  # since meeting links


def lesson() -> Booking:
    """A booking moved once (one proposal rejected, one accepted), completed, reviewed and answered."""
    b = Booking.request(S, T, SUB, T0 + timedelta(hours=30), 60, "hi", DEFAULT_POLICY, 3, T0)
    b.confirm(T, SECRET, now=T0)
    b.propose(S, T0 + timedelta(hours=32))
    b.answer_reschedule(T, False)
    b.propose(T, T0 + timedelta(hours=33))
    b.answer_reschedule(S, True)
    b.complete(T, T0 + timedelta(hours=40))
    b.add_review(S, 4, " good ", T0 + timedelta(hours=41))
    b.respond(T, " thanks ", T0 + timedelta(hours=42))
    return b


def test_the_recorded_json_is_what_it_was() -> None:
    assert recorded(lesson().collect_events()) == [CONFIRMED_V2 if n == "Confirmed" else (n, j) for n, j in BOOKING]
    p = TutorProfile(tutor_id=T)
    p.request_document(DOC, "cv.pdf", "application/pdf", 1000, "tutors/x/cv.pdf", T0)
    p.complete_document(
        str(DOC), StoredFile(900, "application/pdf", PDF), "checked/documents/7", T0 + timedelta(minutes=5)
    )
    assert recorded(p.collect_events()) == PROFILE


def test_old_booking_streams_replay_into_the_values() -> None:
    proposed = replay(Booking, BOOKING[:3])
    assert proposed.pending_reschedule == Proposal(T0 + timedelta(hours=32), T0 + timedelta(hours=33), Party.STUDENT)
    assert type(proposed.pending_reschedule.proposed_by) is Party
    assert replay(Booking, BOOKING[:4]).pending_reschedule is None
    b = replay(Booking, BOOKING)
    assert (b.start, b.end, b.pending_reschedule) == (T0 + timedelta(hours=33), T0 + timedelta(hours=34), None)
    assert b.review == Review(4, "good", T0 + timedelta(hours=41))
    assert b.review_response == ReviewResponse("thanks", T0 + timedelta(hours=42))
    live = lesson()
    assert (b.review, b.review_response) == (live.review, live.review_response)


def test_old_profile_streams_replay_into_documents() -> None:
    announced = replay(TutorProfile, PROFILE[:2])
    assert announced.documents == {str(DOC): Document(str(DOC), "cv.pdf", "application/pdf", 1000, "tutors/x/cv.pdf")}
    assert announced.documents[str(DOC)].status is DocumentStatus.PENDING and announced.completeness == 0
    p = replay(TutorProfile, PROFILE)
    uploaded = T0 + timedelta(minutes=5)
    assert p.documents[str(DOC)] == Document(
        str(DOC), "cv.pdf", "application/pdf", 900, "checked/documents/7", DocumentStatus.UPLOADED, uploaded
    )
    assert p.completeness == 20


def test_a_document_uploaded_before_checked_copies_keeps_its_upload_key() -> None:
    name, json = PROFILE[2]
    p = replay(TutorProfile, [*PROFILE[:2], (name, json.replace(',"key":"checked/documents/7"', ""))])
    doc = p.documents[str(DOC)]
    assert (doc.key, doc.status, doc.size) == ("tutors/x/cv.pdf", DocumentStatus.UPLOADED, 900)
