"""Tutoring context: the TutorProfile aggregate (draft -> pending_approval -> approved / rejected -> suspended).

Its id is the tutor's user id. The five builder steps each record their own event; completeness counts 20 %
per step whose required fields are set. The module holds the aggregate's whole life (onboarding, review, preferences,
bookability) so that each rule is one hop from its route; what a document is and may be is in domain/documents.py."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.availability import Schedule, available, covers, on_grid, parse_rules
from domain.booking import OutsideAvailability, TooShortNotice
from domain.documents import DOCUMENT_TYPES, MAX_DOCUMENT_BYTES, Document, DocumentStatus
from domain.errors import DomainError, NotFound, ValidationFailed, WrongStatus
from domain.files import FileTooLarge, StoredFile, UnsupportedFile, check_stored
from domain.ids import derived_id
from domain.money import Money
from domain.user import valid_timezone


class TutorStatus(StrEnum):
    """A profile's approval lifecycle (equal to the strings of the contract and the read models)."""

    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUSPENDED = "suspended"


AUTO_CONFIRM_AFTER = timedelta(hours=24)  # auto-confirm answers only requests for lessons further away than this
_LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")


class ProfileIncomplete(DomainError):
    """The profile is not complete enough to submit."""


class TutorNotBookable(DomainError):
    """The tutor is not approved, is suspended, or their account is closed."""


def _text(field: str, value: Any, max_len: int, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or len(value) > max_len or (required and not value.strip()):
        raise ValidationFailed([(field, f"text of at most {max_len} characters")])
    return value.strip()


def _interval_list(field: str, raw: Any) -> list[dict[str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationFailed([(field, "a list of {start, end}")])
    out = []
    for i, item in enumerate(raw):
        try:
            a = datetime.fromisoformat(str(item["start"]).replace("Z", "+00:00"))
            b = datetime.fromisoformat(str(item["end"]).replace("Z", "+00:00"))
        except (KeyError, TypeError, ValueError):
            raise ValidationFailed([(f"{field}[{i}]", "{start, end} RFC 3339 instants")]) from None
        if a.tzinfo is None or b.tzinfo is None:
            raise ValidationFailed([(f"{field}[{i}]", "instants need an offset")])
        if b <= a:
            raise ValidationFailed([(f"{field}[{i}]", "end must be after start")])
        out.append({"start": a.astimezone(UTC).isoformat(), "end": b.astimezone(UTC).isoformat()})
    return out


def completeness_of(
    personal: dict[str, Any],
    experience: dict[str, Any],
    subjects: list[str],
    hourly_rate: dict[str, Any] | None,
    availability: dict[str, Any],
    document_statuses: Iterable[str],
) -> int:
    """0-100: 20 for each builder step whose required fields are set (one rule for aggregate and read models); the
    documents step counts once one of the tutor's documents is uploaded."""
    steps: list[bool] = [
        bool(personal.get("bio")),
        experience.get("years") is not None,
        bool(subjects) and hourly_rate is not None and int(hourly_rate["amount"]) > 0,
        bool(availability.get("timezone")) and bool(availability.get("weekly")),
        any(s == DocumentStatus.UPLOADED for s in document_statuses),
    ]
    return 20 * sum(1 for s in steps if s)


class TutorProfile(Aggregate):
    """A tutor's public profile and its approval lifecycle."""

    @event("Created")
    def __init__(self, tutor_id: UUID) -> None:
        self.tutor_id = tutor_id
        self.status = TutorStatus.DRAFT
        self.feedback: str | None = None
        self.personal: dict[str, Any] = {"bio": "", "location": "", "languages": []}
        self.experience: dict[str, Any] = {"years": None, "education": "", "certifications": []}
        self.subjects: list[str] = []
        self.hourly_rate: dict[str, Any] | None = None
        self.availability: dict[str, Any] = {"timezone": None, "weekly": [], "blocks": [], "openings": []}
        self.schedule = Schedule.of(self.availability)
        self.documents: dict[str, Document] = {}
        self.auto_confirm = False
        self.min_notice_minutes = 0
        self.submitted_at: datetime | None = None
        self.rounds = 0
        self.account_open = True  # the tutor's account is active, undeleted and still a tutor's (identity)

    @staticmethod
    def create_id(tutor_id: UUID) -> UUID:
        """One profile per tutor: its stream id is derived from the tutor's user id (clients only see the latter)."""
        return derived_id("tutor-profile", str(tutor_id))

    # ----------------------------------------------------------------------------------------- builder steps

    def set_personal(self, raw: dict[str, Any]) -> None:
        """Step 1: bio (required for completeness), location, languages."""
        bio = _text("personal.bio", raw.get("bio", self.personal["bio"]), 5000)
        location = _text("personal.location", raw.get("location", self.personal["location"]), 200)
        langs = raw.get("languages", self.personal["languages"])
        if not isinstance(langs, list) or not all(isinstance(x, str) and _LANG.match(x) for x in langs):
            raise ValidationFailed([("personal.languages", "language codes such as 'en' or 'pt-BR'")])
        value = {"bio": bio, "location": location, "languages": list(dict.fromkeys(langs))}
        if value != self.personal:
            self._personal_set(personal=value)

    @event("PersonalSet")
    def _personal_set(self, personal: dict[str, Any]) -> None:
        self.personal = personal

    def set_experience(self, raw: dict[str, Any]) -> None:
        """Step 2: years (required), education, certifications."""
        years = raw.get("years", self.experience["years"])
        if years is not None and (not isinstance(years, int) or isinstance(years, bool) or not 0 <= years <= 80):
            raise ValidationFailed([("experience.years", "a whole number of years, 0 to 80")])
        education = _text("experience.education", raw.get("education", self.experience["education"]), 1000)
        certs = raw.get("certifications", self.experience["certifications"])
        if not isinstance(certs, list) or not all(isinstance(c, str) and 0 < len(c) <= 200 for c in certs):
            raise ValidationFailed([("experience.certifications", "a list of names")])
        value = {"years": years, "education": education, "certifications": certs}
        if value != self.experience:
            self._experience_set(experience=value)

    @event("ExperienceSet")
    def _experience_set(self, experience: dict[str, Any]) -> None:
        self.experience = experience

    def set_teaching(self, subjects: list[str] | None, hourly_rate: Money | None, active: set[str]) -> None:
        """Step 3: subjects (each active in the catalog) and the hourly rate (> 0)."""
        new_subjects = self.subjects if subjects is None else list(dict.fromkeys(subjects))
        for i, s in enumerate(new_subjects):
            if s not in self.subjects and s not in active:
                raise ValidationFailed([(f"subjects[{i}]", "not an active subject")])
        rate: dict[str, Any] | None = (
            self.hourly_rate
            if hourly_rate is None
            else {"amount": hourly_rate.amount, "currency": hourly_rate.currency}
        )
        if rate is not None and rate["amount"] <= 0:
            raise ValidationFailed([("hourly_rate.amount", "must be more than 0")])
        if new_subjects != self.subjects or rate != self.hourly_rate:
            self._teaching_set(subjects=new_subjects, hourly_rate=rate)

    @event("TeachingSet")
    def _teaching_set(self, subjects: list[str], hourly_rate: dict[str, Any] | None) -> None:
        self.subjects = subjects
        self.hourly_rate = hourly_rate

    def set_availability(self, raw: dict[str, Any]) -> None:
        """Step 4: IANA time zone, weekly rules, one-off blocks and openings."""
        tz = raw.get("timezone", self.availability["timezone"])
        if tz is not None and (not isinstance(tz, str) or not valid_timezone(tz)):
            raise ValidationFailed([("availability.timezone", "an IANA time zone such as 'Europe/Berlin'")])
        weekly_raw = raw.get("weekly", self.availability["weekly"])
        if not isinstance(weekly_raw, list):
            raise ValidationFailed([("availability.weekly", "a list of {weekday, start, end}")])
        rules = parse_rules(weekly_raw)
        weekly = [
            {
                "weekday": r.weekday,
                "start": f"{r.start // 60:02d}:{r.start % 60:02d}",
                "end": f"{r.end // 60:02d}:{r.end % 60:02d}",
            }
            for r in rules
        ]
        value = {
            "timezone": tz,
            "weekly": weekly,
            "blocks": _interval_list("availability.blocks", raw.get("blocks", self.availability["blocks"])),
            "openings": _interval_list("availability.openings", raw.get("openings", self.availability["openings"])),
        }
        if value != self.availability:
            self._availability_set(availability=value)

    @event("AvailabilitySet")
    def _availability_set(self, availability: dict[str, Any]) -> None:
        self.availability = availability
        self.schedule = Schedule.of(availability)

    def set_preferences(self, auto_confirm: bool | None, min_notice_minutes: int | None) -> None:
        """Booking preferences: auto-confirm and minimum notice."""
        ac = self.auto_confirm if auto_confirm is None else auto_confirm
        mn = self.min_notice_minutes if min_notice_minutes is None else min_notice_minutes
        if not isinstance(mn, int) or isinstance(mn, bool) or not 0 <= mn <= 60 * 24 * 30:
            raise ValidationFailed([("min_notice_minutes", "0 to 43200 minutes")])
        if (ac, mn) != (self.auto_confirm, self.min_notice_minutes):
            self._preferences_set(auto_confirm=bool(ac), min_notice_minutes=mn)

    @event("PreferencesSet")
    def _preferences_set(self, auto_confirm: bool, min_notice_minutes: int) -> None:
        self.auto_confirm = auto_confirm
        self.min_notice_minutes = min_notice_minutes

    # --------------------------------------------------------------------------------------------- documents

    def request_document(
        self, document_id: UUID, filename: str, content_type: str, size: int, key: str, now: datetime
    ) -> None:
        """Step 5 (first half): announce an upload; type and size are checked here."""
        if content_type not in DOCUMENT_TYPES:
            raise UnsupportedFile(f"documents must be one of {', '.join(DOCUMENT_TYPES)}")
        if not isinstance(size, int) or size <= 0:
            raise ValidationFailed([("size", "a positive number of bytes")])
        if size > MAX_DOCUMENT_BYTES:
            raise FileTooLarge("documents are at most 10 MB")
        name = _text("filename", filename, 255, required=True)
        self._document_requested(
            document_id=str(document_id), filename=name, content_type=content_type, size=size, key=key, requested_at=now
        )

    @event("DocumentRequested")
    def _document_requested(
        self, document_id: str, filename: str, content_type: str, size: int, key: str, requested_at: datetime
    ) -> None:
        self.documents[document_id] = Document(document_id, filename, content_type, size, key)

    def complete_document(self, document_id: str, stored: StoredFile | None, key: str, now: datetime) -> None:
        """Step 5 (second half): the object the tutor uploaded, copied by the server to `key` (which the tutor cannot
        write), is the announced file (domain/files.py); the document counts from now on and is served from `key`."""
        doc = self.documents.get(document_id)
        if doc is None:
            raise ValidationFailed([("document_id", "no such document")])
        if doc.status is DocumentStatus.UPLOADED:
            return
        checked = check_stored(f"document {document_id}", doc.content_type, doc.size, stored)
        self._document_uploaded(document_id=document_id, size=checked.size, uploaded_at=now, key=key)

    @event("DocumentUploaded")
    def _document_uploaded(self, document_id: str, size: int, uploaded_at: datetime, key: str | None = None) -> None:
        self.documents[document_id] = self.documents[document_id].uploaded(size, uploaded_at, key)

    def verify_document(self, document_id: str, by: UUID, now: datetime) -> None:
        """An admin marks an uploaded document as checked: unknown 404, not yet uploaded 409 (nothing to check);
        verifying a verified document again records nothing (the first verification stands)."""
        doc = self.documents.get(document_id)
        if doc is None:
            raise NotFound("no such document")
        if doc.status is not DocumentStatus.UPLOADED:
            raise WrongStatus("the document is not uploaded yet: there is nothing to verify")
        if not doc.verified:
            self._document_verified(document_id=document_id, verified_at=now, verified_by=by)

    @event("DocumentVerified")
    def _document_verified(self, document_id: str, verified_at: datetime, verified_by: UUID) -> None:
        self.documents[document_id] = self.documents[document_id].checked(verified_at, str(verified_by))

    # ------------------------------------------------------------------------------------------- lifecycle

    @property
    def completeness(self) -> int:
        """0-100: 20 per step with its required fields set."""
        return completeness_of(
            self.personal,
            self.experience,
            self.subjects,
            self.hourly_rate,
            self.availability,
            (d.status for d in self.documents.values()),
        )

    def submit(self, now: datetime) -> None:
        """Send a draft or rejected profile for approval (>= 80 % complete with a subject and a rate)."""
        if self.status not in (TutorStatus.DRAFT, TutorStatus.REJECTED):
            raise WrongStatus(f"a {self.status} profile cannot be submitted")
        if self.completeness < 80 or not self.subjects or not self.hourly_rate:
            raise ProfileIncomplete(f"profile is {self.completeness}% complete; 80% with a subject and a rate needed")
        self._submitted(submitted_at=now, completeness=self.completeness)

    @event("Submitted")
    def _submitted(self, submitted_at: datetime, completeness: int) -> None:
        self.status = TutorStatus.PENDING_APPROVAL
        self.submitted_at = submitted_at
        self.rounds += 1

    def approve(self) -> None:
        """An admin approves a pending profile: the tutor becomes searchable and bookable."""
        if self.status is not TutorStatus.PENDING_APPROVAL:
            raise WrongStatus(f"a {self.status} profile cannot be approved")
        self._approved()

    @event("Approved")
    def _approved(self) -> None:
        self.status = TutorStatus.APPROVED
        self.feedback = None

    def reject(self, feedback: str) -> None:
        """An admin rejects a pending profile with feedback; the tutor may edit and resubmit."""
        if self.status is not TutorStatus.PENDING_APPROVAL:
            raise WrongStatus(f"a {self.status} profile cannot be rejected")
        self._rejected(feedback=_text("feedback", feedback, 5000, required=True))

    @event("Rejected")
    def _rejected(self, feedback: str) -> None:
        self.status = TutorStatus.REJECTED
        self.feedback = feedback

    def suspend(self, reason: str) -> None:
        """Hide an approved tutor from search and booking."""
        if self.status is not TutorStatus.APPROVED:
            raise WrongStatus(f"a {self.status} profile cannot be suspended")
        self._suspended(reason=_text("reason", reason, 5000))

    @event("Suspended")
    def _suspended(self, reason: str) -> None:
        self.status = TutorStatus.SUSPENDED

    def reinstate(self) -> None:
        """Undo a suspension."""
        if self.status is not TutorStatus.SUSPENDED:
            raise WrongStatus(f"a {self.status} profile cannot be reinstated")
        self._reinstated()

    @event("Reinstated")
    def _reinstated(self) -> None:
        self.status = TutorStatus.APPROVED

    # ------------------------------------------------------------------------------------- the tutor's account

    def close_account(self, reason: str) -> None:
        """The tutor's account was deactivated, deleted or moved to another role: no longer listed or bookable."""
        if self.account_open:
            self._account_closed(reason=reason)

    @event("AccountClosed")
    def _account_closed(self, reason: str) -> None:
        self.account_open = False

    def reopen_account(self) -> None:
        """The tutor's account is active again: listed and bookable again if the profile is approved."""
        if not self.account_open:
            self._account_reopened()

    @event("AccountReopened")
    def _account_reopened(self) -> None:
        self.account_open = True

    @property
    def listed(self) -> bool:
        """Shown in search and on its public page: approved, with an open account."""
        return self.status is TutorStatus.APPROVED and self.account_open

    def check_bookable(self) -> None:
        """Only listed tutors can be booked or sold packages."""
        if not self.listed:
            raise TutorNotBookable("this tutor cannot be booked")

    def confirms_by_itself(self, start: datetime, now: datetime) -> bool:
        """Whether a request for a lesson at `start`, made at `now`, is confirmed on the tutor's behalf: they enabled
        auto-confirm and the lesson starts more than 24 h later (a nearer one the tutor confirms themselves)."""
        return self.auto_confirm and start - now > AUTO_CONFIRM_AFTER

    def check_teaches(self, subject_id: UUID, subject_active: bool) -> None:
        """A lesson is booked in one of the tutor's subjects, while the catalog still offers it."""
        if str(subject_id) not in self.subjects or not subject_active:
            raise ValidationFailed([("subject_id", "a subject this tutor teaches")])

    def check_time(self, start: datetime, minutes: int, now: datetime) -> None:
        """A lesson starts on the :00/:30 grid, lies wholly inside the tutor's availability (weekly rules in their
        zone, plus openings, minus blocks) and respects their minimum notice."""
        end = start + timedelta(minutes=minutes)
        s = self.schedule
        if not on_grid(start) or not s.timezone:
            raise OutsideAvailability("start must be on the :00/:30 grid inside the tutor's availability")
        free = available(s.weekly, s.timezone, s.openings, s.blocks, start - timedelta(days=1), end + timedelta(days=1))
        if not covers(free, start, end):
            raise OutsideAvailability("the tutor is not available at that time")
        if start < now + timedelta(minutes=self.min_notice_minutes):
            raise TooShortNotice(f"the tutor needs {self.min_notice_minutes} minutes' notice")
