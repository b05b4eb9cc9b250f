"""TutorProfile's document verification in memory: only an uploaded document of the tutor's can be verified, once;
the verification survives a replay of the stream."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import NotFound, WrongStatus
from domain.files import StoredFile
from domain.tutor import TutorProfile

NOW = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)
PDF = b"%PDF-1.4\n" + bytes(100)


def _with_documents() -> tuple[TutorProfile, str, str]:
    """A profile with one uploaded and one merely announced document: (profile, uploaded id, pending id)."""
    p = TutorProfile(tutor_id=uuid.uuid4())
    done, pending = uuid.uuid4(), uuid.uuid4()
    p.request_document(done, "diploma.pdf", "application/pdf", len(PDF), "k/1", NOW)
    p.request_document(pending, "id.pdf", "application/pdf", len(PDF), "k/2", NOW)
    p.complete_document(str(done), StoredFile(len(PDF), "application/pdf", PDF), "checked/1", NOW)
    return p, str(done), str(pending)


def test_an_uploaded_document_is_verified_once_by_the_first_admin() -> None:
    p, done, _ = _with_documents()
    admin, other = uuid.uuid4(), uuid.uuid4()
    assert not p.documents[done].verified
    p.verify_document(done, admin, NOW + timedelta(hours=1))
    doc = p.documents[done]
    assert (doc.verified, doc.verified_at, doc.verified_by) == (True, NOW + timedelta(hours=1), str(admin))
    events = len(p.collect_events())
    # again, by another admin later: nothing recorded, the first verification stands
    p.verify_document(done, other, NOW + timedelta(hours=2))
    assert p.collect_events() == []
    assert (p.documents[done].verified_at, p.documents[done].verified_by) == (NOW + timedelta(hours=1), str(admin))
    assert events > 0


def test_unknown_or_pending_documents_are_refused() -> None:
    p, _, pending = _with_documents()
    with pytest.raises(NotFound):
        p.verify_document(str(uuid.uuid4()), uuid.uuid4(), NOW)
    with pytest.raises(WrongStatus):
        p.verify_document(pending, uuid.uuid4(), NOW)
    assert not p.documents[pending].verified


def test_verification_replays_from_the_events() -> None:
    p, done, _ = _with_documents()
    admin = uuid.uuid4()
    p.verify_document(done, admin, NOW)
    events = p.collect_events()
    assert type(events[-1]).__name__ == "DocumentVerified"
    copy: TutorProfile | None = None
    for e in events:
        copy = e.mutate(copy)
    assert copy is not None and copy.documents == p.documents
    assert copy.documents[done].verified_by == str(admin)
