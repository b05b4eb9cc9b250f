"""Tutoring context: profile builder, documents on S3, admin approval, and student profiles and favorites."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.accounts import Account
from application.storage import UPLOAD_TTL
from application.store import EventStoreApp, Loaded
from domain.documents import Document, DocumentStatus
from domain.errors import DomainError, NotFound, ValidationFailed
from domain.money import Money
from domain.student import StudentProfile
from domain.subject import Subject
from domain.tutor import TutorProfile
from domain.user import User


def profile_view(p: TutorProfile) -> dict[str, Any]:
    """The contract's tutor profile in plain values (blocks and openings as (start, end) UTC instants)."""
    a = p.availability
    return {
        "id": p.tutor_id,
        "status": p.status,
        "completeness": p.completeness,
        "feedback": p.feedback,
        "personal": dict(p.personal),
        "experience": dict(p.experience),
        "subjects": list(p.subjects),
        "hourly_rate": p.hourly_rate,
        "availability": {
            "timezone": a["timezone"],
            "weekly": list(a["weekly"]),
            "blocks": [_interval(b) for b in a["blocks"]],
            "openings": [_interval(b) for b in a["openings"]],
        },
        "auto_confirm": p.auto_confirm,
        "min_notice_minutes": p.min_notice_minutes,
    }


def _interval(stored: dict[str, str]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(stored["start"]), datetime.fromisoformat(stored["end"])


def _safe_name(filename: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", filename.strip())[-100:]
    return name or "file"


class Tutoring(EventStoreApp):
    """Tutor profiles (builder, documents, approval) and student profiles (bio, goals, favorites)."""

    # ------------------------------------------------------------------------------------------- tutor

    def profile(self, tutor_id: UUID) -> TutorProfile:
        """The tutor's profile; a fresh draft when none was recorded yet (not saved until changed)."""
        try:
            p: Any = self.repository.get(TutorProfile.create_id(tutor_id))
        except AggregateNotFoundError:
            return TutorProfile(tutor_id=tutor_id)
        if not isinstance(p, TutorProfile):
            raise NotFound("no such tutor")
        return p

    def update_profile(self, actor: Account, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Apply any subset of the builder steps; each changed step records its own event."""
        profile_id = TutorProfile.create_id(actor.user_id)
        subject_ids = _subject_ids(body.get("subjects"))  # read with the profile, to check that each is taught

        def update(got: Loaded) -> tuple[dict[str, Any], int]:
            p = got.get(TutorProfile, profile_id) or TutorProfile(tutor_id=actor.user_id)
            active = {sid for sid, i in subject_ids.items() if (s := got.get(Subject, i)) is not None and s.active}
            _build(p, body, active)
            return profile_view(p), self.record(p)

        reads = [i for i in subject_ids.values() if i != profile_id]  # never the profile itself: it is taken
        return self.command(update, changes=[profile_id], reads=reads)

    def submit(self, actor: Account) -> tuple[dict[str, Any], int]:
        """Send the profile for approval."""
        profile_id = TutorProfile.create_id(actor.user_id)

        def submit(got: Loaded) -> tuple[dict[str, Any], int]:
            p = got.get(TutorProfile, profile_id) or TutorProfile(tutor_id=actor.user_id)
            p.submit(self.now())
            return profile_view(p), self.record(p)

        return self.command(submit, changes=[profile_id])

    def decide(self, tutor_id: UUID, action: str, text: str = "") -> tuple[dict[str, Any], int]:
        """Admin decisions: approve, reject (feedback), suspend (reason), reinstate."""
        profile_id = TutorProfile.create_id(tutor_id)

        def decide(got: Loaded) -> tuple[dict[str, Any], int]:
            p = got.need(TutorProfile, profile_id, "no such tutor")
            if action == "approve":
                p.approve()
            elif action == "reject":
                p.reject(text)
            elif action == "suspend":
                p.suspend(text)
            elif action == "reinstate":
                p.reinstate()
            else:
                raise ValidationFailed([("action", "approve, reject, suspend or reinstate")])
            return profile_view(p), self.record(p)

        return self.command(decide, changes=[profile_id])

    def request_document(
        self, actor: Account, filename: str, content_type: str, size: int
    ) -> tuple[Document, str, datetime, int]:
        """Announce an upload (type and size checked first): the document record, a presigned PUT URL for it and
        when that expires, and the position."""
        profile_id = TutorProfile.create_id(actor.user_id)
        document_id = uuid.uuid4()
        key = f"tutors/{actor.user_id}/documents/{document_id}/{_safe_name(filename)}"

        def announce(got: Loaded) -> tuple[Document, str, datetime, int]:
            p = got.get(TutorProfile, profile_id) or TutorProfile(tutor_id=actor.user_id)
            p.request_document(document_id, filename, content_type, size, key, self.now())
            url = self.storage.upload_url(key)
            return p.documents[str(document_id)], url, self.clock.now() + UPLOAD_TTL, self.record(p)

        return self.command(announce, changes=[profile_id])

    def complete_document(self, actor: Account, document_id: UUID) -> tuple[Document, int]:
        """Check the stored object (exists, type and size within limits) and count the document: its record."""
        profile_id = TutorProfile.create_id(actor.user_id)

        def complete(got: Loaded) -> tuple[Document, int]:
            p = got.need(TutorProfile, profile_id, "no such tutor")
            doc = p.documents.get(str(document_id))
            if doc is None:
                raise NotFound("no such document")
            if doc.status is DocumentStatus.UPLOADED:
                return doc, self.head()
            checked_key = f"checked/documents/{document_id}"
            stored = self.storage.copy_to_check(doc.key, checked_key)
            try:
                p.complete_document(str(document_id), stored, checked_key, self.now())
            except DomainError:
                if stored is not None:
                    self.storage.remove(checked_key)
                raise
            return p.documents[str(document_id)], self.record(p)

        return self.command(complete, changes=[profile_id])

    def verify_document(self, actor: Account, tutor_id: UUID, document_id: UUID) -> tuple[Document, int]:
        """An admin verifies one of a tutor's uploaded documents: the document as it now stands."""
        profile_id = TutorProfile.create_id(tutor_id)

        def verify(got: Loaded) -> tuple[Document, int]:
            p = got.need(TutorProfile, profile_id, "no such tutor")
            p.verify_document(str(document_id), actor.user_id, self.now())
            return p.documents[str(document_id)], self.record(p)

        return self.command(verify, changes=[profile_id])

    def document_url(self, doc: Document) -> str:
        """A 24-hour download URL of an uploaded document (the profile's, or a read model's record of it)."""
        return self.storage.download_url(doc.key, doc.filename, doc.content_type)

    # ----------------------------------------------------------------------------------------- student

    def student_profile(self, student_id: UUID) -> StudentProfile:
        """The student's profile (a fresh one when none was recorded yet)."""
        try:
            s: Any = self.repository.get(StudentProfile.create_id(student_id))
        except AggregateNotFoundError:
            return StudentProfile(student_id=student_id)
        if not isinstance(s, StudentProfile):
            raise NotFound("no such student")
        return s

    def _user(self, user_id: UUID) -> User:
        u: Any = self.repository.get(user_id)
        if not isinstance(u, User):
            raise NotFound("no such user")
        return u

    def student(self, student_id: UUID) -> tuple[StudentProfile, User]:
        """The student's profile and their User (which keeps timezone, currency and language)."""
        return self.student_profile(student_id), self._user(student_id)

    def update_student(self, actor: Account, body: dict[str, Any]) -> tuple[StudentProfile, User, int]:
        """Change bio, goals, learning style and (on the User) timezone, currency, language, atomically."""
        profile_id = StudentProfile.create_id(actor.user_id)

        def update(got: Loaded) -> tuple[StudentProfile, User, int]:
            s = got.get(StudentProfile, profile_id) or StudentProfile(student_id=actor.user_id)
            user = got.need(User, actor.user_id, "no such user")
            s.update({k: body[k] for k in ("bio", "goals", "learning_style") if k in body})
            user.update_profile({k: body[k] for k in ("timezone", "currency", "language") if k in body})
            return s, user, self.record(s, user)

        return self.command(update, changes=[profile_id, actor.user_id])

    def favorite(self, actor: Account, tutor_id: UUID, on: bool) -> int:
        """Add or remove a favorite tutor (idempotent)."""
        profile_id = StudentProfile.create_id(actor.user_id)

        def favorite(got: Loaded) -> int:
            s = got.get(StudentProfile, profile_id) or StudentProfile(student_id=actor.user_id)
            if on:
                tutor = self.profile(tutor_id)  # only read (a copy: this application changes tutor profiles)
                if not tutor.listed and str(tutor_id) not in s.favorites:
                    raise NotFound("no such tutor")
                s.add_favorite(str(tutor_id))
            else:
                s.remove_favorite(str(tutor_id))
            return self.record(s)

        return self.command(favorite, changes=[profile_id])


def _subject_ids(subjects: Any) -> dict[str, UUID]:
    """The subject ids a builder body names, as given and as UUIDs (those that are not UUIDs name no subject)."""
    out = {}
    for sid in subjects if isinstance(subjects, list) else ():
        if isinstance(sid, str):
            try:
                out[sid] = UUID(sid)
            except ValueError:
                continue
    return out


def _build(p: TutorProfile, body: dict[str, Any], active: set[str]) -> None:
    """Apply the builder steps a body names (`active`: which of its subjects the catalog teaches)."""
    if "personal" in body:
        p.set_personal(_mapping("personal", body["personal"]))
    if "experience" in body:
        p.set_experience(_mapping("experience", body["experience"]))
    if "subjects" in body or "hourly_rate" in body:
        subjects = body.get("subjects")
        if subjects is not None and (not isinstance(subjects, list) or not all(isinstance(s, str) for s in subjects)):
            raise ValidationFailed([("subjects", "a list of subject ids")])
        rate = body.get("hourly_rate")
        money = None
        if rate is not None:
            r = _mapping("hourly_rate", rate)
            if not isinstance(r.get("amount"), int) or isinstance(r.get("amount"), bool):
                raise ValidationFailed([("hourly_rate.amount", "integer minor units")])
            money = Money(r["amount"], str(r.get("currency", "")))
        p.set_teaching(subjects, money, active)
    if "availability" in body:
        p.set_availability(_mapping("availability", body["availability"]))
    if "auto_confirm" in body or "min_notice_minutes" in body:
        ac = body.get("auto_confirm")
        if ac is not None and not isinstance(ac, bool):
            raise ValidationFailed([("auto_confirm", "true or false")])
        p.set_preferences(ac, body.get("min_notice_minutes"))


def _mapping(field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationFailed([(field, "an object")])
    return value
