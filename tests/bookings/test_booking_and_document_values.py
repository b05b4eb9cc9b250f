"""A booking's proposal, review and response and a tutor's documents are frozen values: commands replace them, and
they survive the aggregate cache's copy (a pickle round trip) equal and of their own types."""

from __future__ import annotations

import dataclasses
import pickle
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.booking import Booking
from domain.booking_values import Party, Proposal, Review, ReviewResponse
from domain.documents import Document, DocumentStatus
from domain.errors import Forbidden
from domain.files import StoredFile
from domain.platform import DEFAULT_POLICY
from domain.tutor import TutorProfile

T0 = datetime(2031, 1, 1, 9, tzinfo=UTC)
PDF = b"%PDF-1.7 x"


def confirmed() -> Booking:
    b = Booking.request(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), T0 + timedelta(days=2), 60, "", DEFAULT_POLICY, 1, T0)
    b.confirm(b.tutor_id, "m" * 22, now=T0)
    return b


def copy(x: object) -> object:
    return pickle.loads(pickle.dumps(x, pickle.HIGHEST_PROTOCOL))


@pytest.mark.parametrize("party", list(Party))
def test_a_proposal_names_the_party_and_only_the_other_answers(party: Party) -> None:
    b = confirmed()
    proposer, other = (b.student_id, b.tutor_id) if party is Party.STUDENT else (b.tutor_id, b.student_id)
    new_start = T0 + timedelta(days=3)
    b.propose(proposer, new_start)
    proposal = b.pending_reschedule
    assert proposal == Proposal(new_start, new_start + timedelta(minutes=60), party)
    assert proposal.proposed_by is party and proposal.proposed_by == party.value
    with pytest.raises(Forbidden):
        b.answer_reschedule(proposer, True)
    assert b.answer_reschedule(other, True) is proposal
    assert (b.start, b.pending_reschedule) == (new_start, None)


def test_review_and_response_are_values_that_cannot_change() -> None:
    b = confirmed()
    b.complete(b.tutor_id, T0 + timedelta(days=3))
    b.add_review(b.student_id, 5, " great ", T0 + timedelta(days=3, hours=1))
    b.respond(b.tutor_id, " thank you ", T0 + timedelta(days=3, hours=2))
    assert b.review == Review(5, "great", T0 + timedelta(days=3, hours=1))
    assert b.review_response == ReviewResponse("thank you", T0 + timedelta(days=3, hours=2))
    review: Any = b.review
    with pytest.raises(dataclasses.FrozenInstanceError):
        review.rating = 1


@given(propose=st.booleans(), review=st.booleans(), respond=st.booleans())
def test_a_copied_booking_keeps_its_values(propose: bool, review: bool, respond: bool) -> None:
    b = confirmed()
    if propose:
        b.propose(b.student_id, T0 + timedelta(days=4))
    elif review:
        b.complete(b.tutor_id, T0 + timedelta(days=3))
        b.add_review(b.student_id, 3, "ok", T0 + timedelta(days=3))
        if respond:
            b.respond(b.tutor_id, "noted", T0 + timedelta(days=3))
    c = copy(b)
    assert isinstance(c, Booking)
    for name in ("pending_reschedule", "review", "review_response"):
        assert getattr(c, name) == getattr(b, name) and type(getattr(c, name)) is type(getattr(b, name)), name
    if propose:
        assert c.pending_reschedule is not None and type(c.pending_reschedule.proposed_by) is Party


def test_a_document_is_replaced_when_its_file_is_checked_and_survives_a_copy() -> None:
    p = TutorProfile(tutor_id=uuid.uuid4())
    first, second = uuid.uuid4(), uuid.uuid4()
    p.request_document(first, "cv.pdf", "application/pdf", 100, "up/cv", T0)
    p.request_document(second, "id.pdf", "application/pdf", 100, "up/id", T0)
    announced = p.documents[str(first)]
    assert announced == Document(str(first), "cv.pdf", "application/pdf", 100, "up/cv", DocumentStatus.PENDING, None)
    p.complete_document(str(first), StoredFile(90, "application/pdf", PDF), "checked/cv", T0 + timedelta(minutes=1))
    done = p.documents[str(first)]
    assert done is not announced and announced.status is DocumentStatus.PENDING  # replaced, not changed
    assert (done.size, done.key, done.status, done.uploaded_at) == (
        90, "checked/cv", DocumentStatus.UPLOADED, T0 + timedelta(minutes=1),
    )  # fmt: skip
    assert p.completeness == 20
    c = copy(p)
    assert isinstance(c, TutorProfile)
    assert c.documents == p.documents
    assert all(type(d.status) is DocumentStatus for d in c.documents.values())


def test_a_document_checked_without_a_copy_keeps_its_upload_key() -> None:
    doc = Document("d", "a.png", "image/png", 10, "up/a")
    assert doc.uploaded(8, T0, None).key == "up/a"
    assert doc.uploaded(8, T0, "checked/a").key == "checked/a"
