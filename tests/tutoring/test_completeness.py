"""TutorProfile completeness, submission rules and the approval lifecycle (pure domain, hypothesis).

Contract: each of the five builder steps counts 20 % once its required fields are set (personal = bio;
experience = years; subjects = at least one active subject and hourly_rate > 0; availability = timezone and at
least one weekly rule; documents = at least one *uploaded* document). Only a draft or rejected profile can be
submitted, and only at >= 80 % with a subject and a rate; rejection keeps the feedback."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain.errors import ValidationFailed, WrongStatus
from domain.files import FileTooLarge, StoredFile, UnsupportedFile, UploadMissing
from domain.money import Money
from domain.tutor import ProfileIncomplete, TutorProfile, completeness_of

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)
SUBJECT = str(uuid.uuid4())
OTHER_SUBJECT = str(uuid.uuid4())
ACTIVE = {SUBJECT, OTHER_SUBJECT}
WEEKLY = [{"weekday": 0, "start": "17:00", "end": "20:00"}]


def fresh() -> TutorProfile:
    return TutorProfile(tutor_id=uuid.uuid4())


def upload(p: TutorProfile, finish: bool = True) -> str:
    doc = uuid.uuid4()
    p.request_document(doc, "diploma.pdf", "application/pdf", 1234, f"tutors/x/{doc}", NOW)
    if finish:
        p.complete_document(str(doc), StoredFile(1234, "application/pdf", b"%PDF-1.7\n"), f"checked/{doc}", NOW)
    return str(doc)


# ------------------------------------------------------------------------------- completeness, any combination

# Each step either complete, or in one of the partial states that must NOT count.
PERSONAL = st.sampled_from(["set", "empty", "location-only"])
EXPERIENCE = st.sampled_from(["set", "zero", "unset", "education-only"])
TEACHING = st.sampled_from(["set", "subjects-only", "rate-only", "none"])
AVAILABILITY = st.sampled_from(["set", "zone-only", "rules-only", "none", "blocks-and-openings-only"])
DOCUMENTS = st.sampled_from(["uploaded", "pending-only", "none", "pending-and-uploaded"])


def build(personal: str, experience: str, teaching: str, availability: str, documents: str) -> TutorProfile:
    p = fresh()
    if personal == "set":
        p.set_personal({"bio": "I teach algebra.", "location": "Berlin", "languages": ["en", "de"]})
    elif personal == "location-only":
        p.set_personal({"location": "Berlin", "languages": ["en"]})
    if experience in ("set", "zero"):  # 0 years is set (a newcomer), not missing
        p.set_experience({"years": 5 if experience == "set" else 0})
    elif experience == "education-only":
        p.set_experience({"education": "MSc", "certifications": ["CELTA"]})
    if teaching == "set":
        p.set_teaching([SUBJECT], Money(4500, "EUR"), ACTIVE)
    elif teaching == "subjects-only":
        p.set_teaching([SUBJECT], None, ACTIVE)
    elif teaching == "rate-only":
        p.set_teaching(None, Money(4500, "EUR"), ACTIVE)
    if availability == "set":
        p.set_availability({"timezone": "Europe/Berlin", "weekly": WEEKLY})
    elif availability == "zone-only":
        p.set_availability({"timezone": "Europe/Berlin"})
    elif availability == "rules-only":
        p.set_availability({"weekly": WEEKLY})
    elif availability == "blocks-and-openings-only":
        p.set_availability(
            {
                "blocks": [{"start": "2026-01-05T10:00:00Z", "end": "2026-01-05T11:00:00Z"}],
                "openings": [{"start": "2026-01-06T10:00:00Z", "end": "2026-01-06T11:00:00Z"}],
            }
        )
    if documents in ("pending-only", "pending-and-uploaded"):
        upload(p, finish=False)
    if documents in ("uploaded", "pending-and-uploaded"):
        upload(p)
    return p


@settings(max_examples=300, deadline=None)
@given(PERSONAL, EXPERIENCE, TEACHING, AVAILABILITY, DOCUMENTS)
def test_completeness_is_20_per_complete_step(
    personal: str, experience: str, teaching: str, availability: str, documents: str
) -> None:
    p = build(personal, experience, teaching, availability, documents)
    steps = [
        personal == "set",
        experience in ("set", "zero"),
        teaching == "set",
        availability == "set",
        documents in ("uploaded", "pending-and-uploaded"),
    ]
    assert p.completeness == 20 * sum(steps)
    # the read models use the same function on the same facts
    statuses = [d.status for d in p.documents.values()]
    assert (
        completeness_of(p.personal, p.experience, p.subjects, p.hourly_rate, p.availability, statuses) == p.completeness
    )

    # submit succeeds iff >= 80 % with a subject and a rate (the profile is a draft)
    can = p.completeness >= 80 and teaching == "set"
    if can:
        p.submit(NOW)
        assert p.status == "pending_approval"
        assert p.submitted_at == NOW
        assert p.rounds == 1
    else:
        with pytest.raises(ProfileIncomplete):
            p.submit(NOW)
        assert p.status == "draft"


@settings(deadline=None)
@given(
    bio=st.booleans(),
    years=st.one_of(st.none(), st.integers(0, 80)),
    subjects=st.lists(st.sampled_from([SUBJECT, OTHER_SUBJECT]), max_size=2),
    amount=st.one_of(st.none(), st.integers(0, 10**6)),
    zone=st.sampled_from([None, "", "Europe/Berlin"]),
    weekly=st.booleans(),
    docs=st.lists(st.sampled_from(["pending", "uploaded"]), max_size=3),
)
def test_completeness_of_counts_each_step(
    bio: bool,
    years: int | None,
    subjects: list[str],
    amount: int | None,
    zone: str | None,
    weekly: bool,
    docs: list[str],
) -> None:
    rate = None if amount is None else {"amount": amount, "currency": "USD"}
    got = completeness_of(
        {"bio": "hello" if bio else ""},
        {"years": years},
        subjects,
        rate,
        {"timezone": zone, "weekly": WEEKLY if weekly else []},
        docs,
    )
    steps = [
        bio,
        years is not None,
        bool(subjects) and amount is not None and amount > 0,
        bool(zone) and weekly,
        "uploaded" in docs,
    ]
    assert got == 20 * sum(steps)
    assert 0 <= got <= 100 and got % 20 == 0


def test_exactly_80_percent_without_subjects_cannot_be_submitted() -> None:
    p = build("set", "set", "none", "set", "uploaded")
    assert p.completeness == 80
    with pytest.raises(ProfileIncomplete):
        p.submit(NOW)


def test_60_percent_cannot_be_submitted_and_80_can() -> None:
    p = build("set", "unset", "set", "set", "none")
    assert p.completeness == 60
    with pytest.raises(ProfileIncomplete):
        p.submit(NOW)
    p.set_experience({"years": 1})
    assert p.completeness == 80
    p.submit(NOW)
    assert p.status == "pending_approval"


def test_rate_must_be_positive_and_subjects_active() -> None:
    p = fresh()
    with pytest.raises(ValidationFailed):
        p.set_teaching([SUBJECT], Money(0, "EUR"), ACTIVE)
    with pytest.raises(ValidationFailed):
        p.set_teaching([str(uuid.uuid4())], Money(100, "EUR"), ACTIVE)
    p.set_teaching([SUBJECT], Money(100, "EUR"), ACTIVE)
    # a subject retired later stays on the profile (it is no longer in `active`, but it was already chosen)
    p.set_teaching([SUBJECT], Money(200, "EUR"), set())
    assert p.subjects == [SUBJECT]


def test_documents_check_type_and_size() -> None:
    p = fresh()
    with pytest.raises(UnsupportedFile):
        p.request_document(uuid.uuid4(), "x.exe", "application/x-msdownload", 10, "k", NOW)
    with pytest.raises(FileTooLarge):
        p.request_document(uuid.uuid4(), "x.pdf", "application/pdf", 10 * 1_048_576 + 1, "k", NOW)
    p.request_document(uuid.uuid4(), "x.pdf", "application/pdf", 10 * 1_048_576, "k", NOW)  # exactly 10 MB is fine
    doc = uuid.uuid4()
    p.request_document(doc, "y.png", "image/png", 10, "k2", NOW)
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    with pytest.raises(UploadMissing):
        p.complete_document(str(doc), None, "c", NOW)
    with pytest.raises(UnsupportedFile):  # what was stored is what counts
        p.complete_document(str(doc), StoredFile(10, "text/html", png), "c", NOW)
    with pytest.raises(UnsupportedFile):  # and what its bytes are
        p.complete_document(str(doc), StoredFile(10, "image/png", b"<html><script>"), "c", NOW)
    with pytest.raises(FileTooLarge):  # no larger than announced
        p.complete_document(str(doc), StoredFile(11, "image/png", png), "c", NOW)
    assert p.completeness == 0
    p.complete_document(str(doc), StoredFile(10, "image/png; charset=binary", png), "checked/y", NOW)
    assert p.completeness == 20
    assert p.documents[str(doc)].key == "checked/y"  # served from the server's copy from now on


# ----------------------------------------------------------------------------------------- lifecycle machine

TRANSITIONS: dict[str, dict[str, str]] = {
    # action -> {from status: to status}; anything else is WrongStatus
    "submit": {"draft": "pending_approval", "rejected": "pending_approval"},
    "approve": {"pending_approval": "approved"},
    "reject": {"pending_approval": "rejected"},
    "suspend": {"approved": "suspended"},
    "reinstate": {"suspended": "approved"},
}


MOSTLY = st.sampled_from([True, True, True, False])


@dataclass
class Model:
    status: str = "draft"
    steps: dict[str, bool] = field(
        default_factory=lambda: dict.fromkeys(
            ("personal", "experience", "teaching", "availability", "documents"), False
        )
    )
    feedback: str | None = None
    rounds: int = 0

    @property
    def completeness(self) -> int:
        return 20 * sum(self.steps.values())


class ProfileLifecycle(RuleBasedStateMachine):
    """Edits in any order, decisions in any order: status follows the contract's table, every submission round is
    one Submitted event, and the aggregate rebuilt from its events is the same profile."""

    def __init__(self) -> None:
        super().__init__()
        self.p = fresh()
        self.m = Model()
        self.events: list[Any] = list(self.p.collect_events())

    @initialize(filled=st.sampled_from([True, True, False]))
    def start(self, filled: bool) -> None:
        """Usually begin from a complete draft, so that decision sequences get explored deeply."""
        if filled:
            self.personal(True)
            self.experience(3)
            self.teaching(True, 4000)
            self.availability(True, "Europe/Berlin")

    def _collect(self) -> None:
        self.events.extend(self.p.collect_events())

    # edits (allowed in every status; they never change it)

    @rule(on=MOSTLY)
    def personal(self, on: bool) -> None:
        self.p.set_personal({"bio": "I love maths" if on else ""})
        self.m.steps["personal"] = on

    @rule(years=st.one_of(st.none(), st.integers(0, 80)))
    def experience(self, years: int | None) -> None:
        self.p.set_experience({"years": years})
        self.m.steps["experience"] = years is not None

    @rule(on=MOSTLY, amount=st.integers(1, 100_000))
    def teaching(self, on: bool, amount: int) -> None:
        self.p.set_teaching([SUBJECT] if on else [], Money(amount, "USD"), ACTIVE)
        self.m.steps["teaching"] = on

    @rule(on=MOSTLY, zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Kathmandu"]))
    def availability(self, on: bool, zone: str) -> None:
        self.p.set_availability({"timezone": zone, "weekly": WEEKLY if on else []})
        self.m.steps["availability"] = on

    @rule(finish=st.booleans())
    def document(self, finish: bool) -> None:
        upload(self.p, finish)
        self.m.steps["documents"] = self.m.steps["documents"] or finish

    # decisions

    def _expect(self, action: str) -> str | None:
        return TRANSITIONS[action].get(self.m.status)

    @rule()
    def submit(self) -> None:
        target = self._expect("submit")
        if target is None:
            with pytest.raises(WrongStatus):
                self.p.submit(NOW)
        elif self.m.completeness < 80 or not self.m.steps["teaching"]:
            with pytest.raises(ProfileIncomplete):
                self.p.submit(NOW)
        else:
            self.p.submit(NOW)
            self.m.status, self.m.rounds = target, self.m.rounds + 1

    @rule()
    def approve(self) -> None:
        target = self._expect("approve")
        if target is None:
            with pytest.raises(WrongStatus):
                self.p.approve()
        else:
            self.p.approve()
            self.m.status, self.m.feedback = target, None

    @rule(feedback=st.sampled_from(["Please add a diploma.", "  Bio too short  ", "", "   "]))
    def reject(self, feedback: str) -> None:
        target = self._expect("reject")
        if target is None:
            with pytest.raises(WrongStatus):
                self.p.reject(feedback)
        elif not feedback.strip():
            with pytest.raises(ValidationFailed):
                self.p.reject(feedback)
        else:
            self.p.reject(feedback)
            self.m.status, self.m.feedback = target, feedback.strip()

    @rule(reason=st.sampled_from(["complaints", ""]))
    def suspend(self, reason: str) -> None:
        target = self._expect("suspend")
        if target is None:
            with pytest.raises(WrongStatus):
                self.p.suspend(reason)
        else:
            self.p.suspend(reason)
            self.m.status = target

    @rule()
    def reinstate(self) -> None:
        target = self._expect("reinstate")
        if target is None:
            with pytest.raises(WrongStatus):
                self.p.reinstate()
        else:
            self.p.reinstate()
            self.m.status = target

    @precondition(lambda self: self.m.status == "approved")
    @rule()
    def bookable_only_when_approved(self) -> None:
        self.p.check_bookable()

    @invariant()
    def matches_the_model(self) -> None:
        self._collect()
        assert self.p.status == self.m.status
        assert self.p.completeness == self.m.completeness
        assert self.p.feedback == self.m.feedback
        assert self.p.rounds == self.m.rounds
        submitted = [e for e in self.events if type(e).__name__ == "Submitted"]
        assert len(submitted) == self.m.rounds, "every submission round is in the history"
        assert all(e.completeness >= 80 for e in submitted)
        if self.m.status != "approved":
            from domain.tutor import TutorNotBookable

            with pytest.raises(TutorNotBookable):
                self.p.check_bookable()

    @invariant()
    def replays_from_its_events(self) -> None:
        copy: Any = None
        for e in self.events:
            copy = e.mutate(copy)
        assert copy is not None
        assert (copy.status, copy.rounds, copy.feedback, copy.completeness, copy.version) == (
            self.p.status,
            self.p.rounds,
            self.p.feedback,
            self.p.completeness,
            self.p.version,
        )


ProfileLifecycle.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_profile_lifecycle = ProfileLifecycle.TestCase


def test_a_full_round_trip_keeps_every_round() -> None:
    p = build("set", "set", "set", "set", "none")
    p.submit(NOW)
    p.reject("needs documents")
    assert (p.status, p.feedback) == ("rejected", "needs documents")
    p.set_personal({"bio": "A better bio"})
    assert p.feedback == "needs documents"  # editing keeps the feedback until the next decision
    p.submit(NOW)
    assert p.feedback == "needs documents"  # and so does resubmitting
    with pytest.raises(WrongStatus):
        p.submit(NOW)  # twice
    p.approve()
    after_approval: Any = (p.status, p.feedback, p.rounds)
    assert after_approval == ("approved", None, 2)
    p.suspend("reports")
    with pytest.raises(WrongStatus):
        p.approve()
    p.reinstate()
    assert p.status == "approved"
    names = [type(e).__name__ for e in p.collect_events()]
    assert names.count("Submitted") == 2
    assert [n for n in names if n in ("Submitted", "Approved", "Rejected", "Suspended", "Reinstated")] == [
        "Submitted",
        "Rejected",
        "Submitted",
        "Approved",
        "Suspended",
        "Reinstated",
    ]
