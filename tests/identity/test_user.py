"""User and EmailClaim: validation rules, email normalisation and the account lifecycle as a state machine."""

from __future__ import annotations

import re
import string
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import available_timezones

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain.errors import NotFound, ValidationFailed, WrongStatus
from domain.ids import normalise_email
from domain.user import ROLES, EmailClaim, User, check_email, check_password, check_profile

NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
ZONE_SET = frozenset(available_timezones())
ZONES = sorted(ZONE_SET)
WHITESPACE = [chr(i) for i in range(sys.maxunicode + 1) if chr(i).isspace()]
FAST = settings(max_examples=150, deadline=None)


def fields_of(exc: ValidationFailed) -> list[str]:
    return [f for f, _ in exc.errors]


# ------------------------------------------------------------------------------------ email normalisation

ascii_local = st.text(alphabet=string.ascii_letters + string.digits + "._%+-", min_size=1, max_size=20)
ascii_domain = st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=15)
emails = st.builds(lambda a, b, c: f"{a}@{b}.{c}", ascii_local, ascii_domain, st.sampled_from(["com", "test", "DE"]))
spaces = st.text(alphabet=st.sampled_from(WHITESPACE), max_size=4)


@st.composite
def case_variant(draw: st.DrawFn, text: str) -> str:
    """The same text with each letter's case chosen at random."""
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.swapcase() if f else c for c, f in zip(text, flips, strict=True))


@FAST
@given(data=st.data(), email=emails, before=spaces, after=spaces)
def test_surrounding_whitespace_and_case_give_the_same_claim_id(data: Any, email: str, before: str, after: str) -> None:
    variant = before + data.draw(case_variant(email)) + after
    assert EmailClaim.create_id(variant) == EmailClaim.create_id(email)
    assert EmailClaim.create_id(variant) == EmailClaim.create_id(email.lower())


@FAST
@given(a=emails, b=emails)
def test_different_emails_get_different_claim_ids(a: str, b: str) -> None:
    assume(a.lower() != b.lower())
    assert EmailClaim.create_id(a) != EmailClaim.create_id(b)


@FAST
@given(st.text())
def test_normalise_is_idempotent(text: str) -> None:
    once = normalise_email(text)
    assert normalise_email(once) == once
    assert EmailClaim.create_id(once) == EmailClaim.create_id(text)


def test_claim_id_is_a_stable_uuid5() -> None:
    claim_id = EmailClaim.create_id("  Ann@Example.COM ")
    assert isinstance(claim_id, UUID) and claim_id.version == 5
    assert claim_id == EmailClaim.create_id("ann@example.com")


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("Ann@Example.com", "ann@example.com"),
        ("  bob@x.test\n", "bob@x.test"),
        ("\tC.D+tag@SUB.Example.ORG ", "c.d+tag@sub.example.org"),
    ],
)
def test_registration_stores_the_normalised_email(raw: str, stored: str) -> None:
    assert check_email(raw) == stored
    assert User.register(raw, "Ann", "student", NOW).email == stored


@pytest.mark.parametrize(
    "bad", ["", "   ", "ann", "ann@", "@example.com", "ann@example", "a b@example.com", "a@b@c.d", "a" * 250 + "@x.com"]
)
def test_invalid_emails_are_refused(bad: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        User.register(bad, "Ann", "student", NOW)
    assert fields_of(info.value) == ["email"]


# ------------------------------------------------------------------------------------------- passwords


def accepted(password: str) -> bool:
    try:
        check_password(password)
    except ValidationFailed as e:
        assert fields_of(e) == ["password"]
        return False
    return True


def rule_holds(password: str) -> bool:
    """The contract: at least 8 characters with a letter and a digit."""
    return len(password) >= 8 and any(c.isalpha() for c in password) and any(c.isdecimal() for c in password)


@FAST
@given(st.text(alphabet=string.printable, max_size=16))
def test_password_rule_on_ascii(password: str) -> None:
    assert accepted(password) == rule_holds(password)


@FAST
@given(st.text(max_size=16))
def test_password_rule_on_any_text(password: str) -> None:
    """Letters and digits are judged alike, whatever the script ('пароль12' has letters, so it is a valid password)."""
    assert accepted(password) == rule_holds(password)


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("abcdefg1", True),
        ("1234567a", True),
        ("Passw0rd-test", True),
        ("abcdef1", False),  # 7 characters
        ("abcdefgh", False),  # no digit
        ("12345678", False),  # no letter
        ("        ", False),
        ("", False),
        ("!!!!!!a1", True),
    ],
)
def test_password_examples(password: str, ok: bool) -> None:
    assert accepted(password) is ok


# ---------------------------------------------------------------------------------------------- profile


@FAST
@given(st.sampled_from(ZONES))
def test_every_iana_zone_is_accepted(zone: str) -> None:
    check_profile({"timezone": zone})


@FAST
@given(st.text(max_size=30))
def test_junk_zones_are_refused(text: str) -> None:
    assume(text not in ZONE_SET)
    with pytest.raises(ValidationFailed) as info:
        check_profile({"timezone": text})
    assert fields_of(info.value) == ["timezone"]


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "Europe/Berlin ",
        "europe/berlin",
        "Mars/Olympus_Mons",
        "+02:00",
        "UTC+2",
        "PST",
        "../../etc/passwd",
        "Europe/",
        None,
        5,
    ],
)
def test_junk_zone_examples_are_refused(junk: Any) -> None:
    with pytest.raises(ValidationFailed) as info:
        check_profile({"timezone": junk})
    assert fields_of(info.value) == ["timezone"]


@pytest.mark.parametrize(
    "changes",
    [
        {"full_name": "Ann Lee"},
        {"timezone": "America/Sao_Paulo", "language": "pt-BR", "currency": "BRL"},
        {"language": "en"},
        {"avatar_url": None},
        {"avatar_url": "https://cdn.example.test/a.png"},
        {},
    ],
)
def test_valid_profile_changes(changes: dict[str, Any]) -> None:
    check_profile(changes)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"full_name": "   "}, "full_name"),
        ({"full_name": "x" * 201}, "full_name"),
        ({"language": "EN"}, "language"),
        ({"language": "english"}, "language"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"avatar_url": "x" * 2001}, "avatar_url"),
        ({"role": "admin"}, "role"),
        ({"email": "x@y.z"}, "email"),
        ({"deleted": False}, "deleted"),
        ({"is_active": True}, "is_active"),
    ],
)
def test_invalid_profile_changes(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        check_profile(changes)
    assert fields_of(info.value) == [field]


def test_every_invalid_field_is_reported() -> None:
    with pytest.raises(ValidationFailed) as info:
        check_profile({"timezone": "Nowhere/Town", "currency": "us", "role": "admin"})
    assert sorted(fields_of(info.value)) == ["currency", "role", "timezone"]


# --------------------------------------------------------------------------------------- registration


def test_self_service_registration_is_student_or_tutor_only() -> None:
    for role in ("student", "tutor"):
        assert User.register("a@b.cd", "Ann", role, NOW).role == role
    for role in ("admin", "finance", "root"):
        with pytest.raises(ValidationFailed) as info:
            User.register("a@b.cd", "Ann", role, NOW)
        assert fields_of(info.value) == ["role"]
    assert User.register("a@b.cd", "Ann", "admin", NOW, staff=True).role == "admin"


def test_registration_defaults_and_trimmed_name() -> None:
    user = User.register("a@b.cd", "  Ann Lee ", "tutor", NOW)
    assert (user.full_name, user.role, user.is_active, user.deleted) == ("Ann Lee", "tutor", True, False)
    assert (user.timezone, user.language, user.currency, user.avatar_url) == ("UTC", "en", "USD", None)
    assert user.registered_at == NOW and user.version == 1
    [registered] = user.collect_events()
    assert type(registered).__name__ == "Registered"


def test_unchanged_values_record_nothing() -> None:
    user = User.register("a@b.cd", "Ann", "student", NOW)
    user.collect_events()
    user.update_profile({"full_name": " Ann ", "timezone": "UTC"})
    user.change_role("student")
    user.reactivate()
    assert user.collect_events() == []
    user.deactivate()
    user.deactivate()
    assert [type(e).__name__ for e in user.collect_events()] == ["Deactivated"]


def test_role_change_records_the_previous_role() -> None:
    user = User.register("a@b.cd", "Ann", "student", NOW)
    user.change_role("tutor")
    event = user.collect_events()[-1]
    assert (type(event).__name__, event.role, event.previous) == ("RoleChanged", "tutor", "student")  # type: ignore[attr-defined]


def test_end_session_after_delete_is_refused() -> None:
    user = User.register("a@b.cd", "Ann", "student", NOW)
    user.delete()
    user.collect_events()
    with pytest.raises(NotFound):
        user.end_session(uuid4(), "logout")
    assert user.collect_events() == []


# ------------------------------------------------------------------------------------ lifecycle machine

SECRET_WORDS = re.compile(r"password|passwd|token|secret|hash|argon", re.IGNORECASE)
SECRET_VALUES = re.compile(r"rt\.[0-9a-f]{32}\.|\$argon2(id|i|d)\$|^eyJ[\w-]+\.[\w-]+\.")  # refresh, hash, JWT
NAMES = st.text(alphabet=string.ascii_letters + " .'-", min_size=1, max_size=40).filter(lambda s: s.strip() != "")

# (key, value, valid?) triples: validity is decided here, independently of check_profile.
VALID_CHANGES = st.one_of(
    st.tuples(st.just("full_name"), NAMES),
    st.tuples(st.just("full_name"), st.builds(lambda n: f"  {n}  ", NAMES)),
    st.tuples(
        st.just("timezone"),
        st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]),
    ),
    st.tuples(st.just("language"), st.sampled_from(["en", "de", "pt-BR", "zh-Hant", "fil"])),
    st.tuples(st.just("currency"), st.sampled_from(["USD", "EUR", "JPY", "BRL"])),
    st.tuples(st.just("avatar_url"), st.sampled_from([None, "https://cdn.example.test/a.png", "x" * 2000])),
).map(lambda kv: (kv[0], kv[1], True))
INVALID_CHANGES = st.one_of(
    st.tuples(st.just("full_name"), st.sampled_from(["", "   ", "x" * 201, None, 7])),
    st.tuples(st.just("timezone"), st.sampled_from(["", "Mars/Base", "europe/berlin", "+01:00", None])),
    st.tuples(st.just("language"), st.sampled_from(["EN", "english", "e", "", None])),
    st.tuples(st.just("currency"), st.sampled_from(["usd", "US", "EURO", None])),
    st.tuples(st.just("avatar_url"), st.sampled_from(["x" * 2001, 42])),
    st.tuples(
        st.sampled_from(["role", "email", "deleted", "is_active", "password", "id"]),
        st.sampled_from([True, "admin", None]),
    ),
).map(lambda kv: (kv[0], kv[1], False))
CHANGE_SETS = st.lists(st.one_of(VALID_CHANGES, VALID_CHANGES, INVALID_CHANGES), max_size=4, unique_by=lambda t: t[0])


def public_state(agg: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(agg).items() if k != "_pending_events"}


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [*strings_in(k), *strings_in(v)]]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings_in(v)]
    return []


class UserLifecycle(RuleBasedStateMachine):
    """Drives one User through random commands; a plain-Python model says what each must do."""

    user: User

    @initialize(role=st.sampled_from(ROLES), name=NAMES)
    def register(self, role: str, name: str) -> None:
        self.user = User.register(" Some.One@Example.TEST ", name, role, NOW, staff=True)
        self.model: dict[str, Any] = {
            "email": "some.one@example.test",
            "full_name": name.strip(),
            "role": role,
            "is_active": True,
            "deleted": False,
            "timezone": "UTC",
            "language": "en",
            "currency": "USD",
            "avatar_url": None,
        }
        self.events: list[Any] = []
        self.expected_new: list[str] = ["Registered"]
        self.collect()

    def collect(self) -> None:
        new = list(self.user.collect_events())
        assert [type(e).__name__ for e in new] == self.expected_new
        self.events.extend(new)
        self.expected_new = []

    def attempt(self, command: Any, *args: Any) -> Exception | None:
        """Run a command; a deleted user must refuse every command with NotFound."""
        try:
            command(*args)
        except (NotFound, ValidationFailed, WrongStatus) as e:
            error: Exception | None = e
        else:
            error = None
        if self.model["deleted"]:
            assert isinstance(error, NotFound), f"{command.__name__} on a deleted user gave {error!r}"
        return error

    @rule(changes=CHANGE_SETS)
    def update_profile(self, changes: list[tuple[str, Any, bool]]) -> None:
        error = self.attempt(self.user.update_profile, {k: v for k, v, _ in changes})
        if self.model["deleted"]:
            return
        if not all(ok for _, _, ok in changes):
            assert isinstance(error, ValidationFailed)
            return
        assert error is None
        wanted = {k: v.strip() if k == "full_name" else v for k, v, _ in changes}
        if any(self.model[k] != v for k, v in wanted.items()):
            self.expected_new = ["ProfileUpdated"]
        self.model.update(wanted)

    @rule(role=st.sampled_from([*ROLES, "root", "", "Student"]))
    def change_role(self, role: str) -> None:
        error = self.attempt(self.user.change_role, role)
        if self.model["deleted"]:
            return
        if role not in ROLES:
            assert isinstance(error, ValidationFailed)
            return
        assert error is None
        if role != self.model["role"]:
            self.expected_new = ["RoleChanged"]
            self.model["role"] = role

    @rule()
    def deactivate(self) -> None:
        error = self.attempt(self.user.deactivate)
        if not self.model["deleted"]:
            assert error is None
            if self.model["is_active"]:
                self.expected_new = ["Deactivated"]
            self.model["is_active"] = False

    @rule()
    def reactivate(self) -> None:
        error = self.attempt(self.user.reactivate)
        if not self.model["deleted"]:
            assert error is None
            if not self.model["is_active"]:
                self.expected_new = ["Reactivated"]
            self.model["is_active"] = True

    @rule()
    def delete(self) -> None:
        error = self.attempt(self.user.delete)
        if not self.model["deleted"]:
            assert error is None
            self.expected_new = ["Deleted"]
            self.model.update(deleted=True, is_active=False)

    @rule(family=st.uuids())
    def log_in(self, family: UUID) -> None:
        error = self.attempt(self.user.log_in, family)
        if self.model["deleted"]:
            return
        if not self.model["is_active"]:
            assert isinstance(error, WrongStatus)
        else:
            assert error is None
            self.expected_new = ["SessionStarted"]

    @rule(family=st.uuids(), reason=st.sampled_from(["logout", "refresh token reuse detected"]))
    def end_session(self, family: UUID, reason: str) -> None:
        error = self.attempt(self.user.end_session, family, reason)
        if not self.model["deleted"]:
            assert error is None
            self.expected_new = ["SessionRevoked"]

    @invariant()
    def events_are_as_expected(self) -> None:
        self.collect()

    @invariant()
    def state_matches_the_model(self) -> None:
        assert {k: getattr(self.user, k) for k in self.model} == self.model
        if self.user.deleted:
            assert not self.user.is_active

    @invariant()
    def versions_increase_by_one_per_event(self) -> None:
        assert [e.originator_version for e in self.events] == list(range(1, len(self.events) + 1))
        assert self.user.version == len(self.events)
        assert {e.originator_id for e in self.events} == {self.user.id}

    @invariant()
    def replay_gives_the_live_state(self) -> None:
        replayed: Any = None
        for e in self.events:
            replayed = e.mutate(replayed)
        assert isinstance(replayed, User)
        assert public_state(replayed) == public_state(self.user)

    @invariant()
    def no_event_carries_a_secret(self) -> None:
        for e in self.events:
            state = vars(e)
            assert not [k for k in state if SECRET_WORDS.search(k)], state
            assert not [s for s in strings_in(state) if SECRET_VALUES.search(s)], state


UserLifecycle.TestCase.settings = settings(
    max_examples=100, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestUserLifecycle = UserLifecycle.TestCase


def test_replayed_timestamps_are_the_event_times() -> None:
    user = User.register("a@b.cd", "Ann", "student", NOW)
    user.update_profile({"timezone": "Europe/Berlin"})
    events = user.collect_events()
    replayed: Any = None
    for e in events:
        replayed = e.mutate(replayed)
    assert replayed.modified_on == events[-1].timestamp
    assert replayed.created_on == events[0].timestamp
    assert abs(replayed.created_on - datetime.now(UTC)) < timedelta(minutes=1)


# ------------------------------------------------------------------------------------------ self-lockout

admin_actions = st.lists(
    st.tuples(
        st.sampled_from(["role", "deactivate", "reactivate", "delete"]),
        st.sampled_from(ROLES),
        st.booleans(),  # done by the user themselves?
    ),
    max_size=12,
)


@FAST
@given(admin_actions)
def test_nobody_changes_their_own_role_activity_or_existence(actions: list[tuple[str, str, bool]]) -> None:
    from domain.user import SelfLockout

    user = User.register("admin@example.test", "Ada", "admin", NOW, staff=True)
    user.collect_events()
    other = uuid4()
    for action, role, by_self in actions:
        by = user.id if by_self else other
        before = (user.role, user.is_active, user.deleted, user.version)
        try:
            if action == "role":
                user.change_role(role, by=by)
            elif action == "deactivate":
                user.deactivate(by=by)
            elif action == "reactivate":
                user.reactivate()
            else:
                user.delete(by=by)
        except SelfLockout:
            assert by_self
            assert (user.role, user.is_active, user.deleted, user.version) == before
            continue
        except NotFound:
            assert before[2]  # a deleted account changes no more
            continue
        if by_self:  # only what changes nothing, or a reactivation, passes when done to oneself
            assert action == "reactivate" or (user.role, user.is_active, user.deleted) == before[:3]
