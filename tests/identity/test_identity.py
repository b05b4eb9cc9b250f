"""Identity against a real event store: accounts, sessions, token rotation, admin operations and races."""

from __future__ import annotations

import json
import threading
from typing import Any
from uuid import UUID, uuid4

import argon2
import psycopg
import pytest
from argon2 import PasswordHasher

from application.accounts import Account
from application.identity import Identity, Outcome
from application.settings import Settings
from application.store import EVENTS_TABLE
from application.tokens import digest, issue_access
from domain.errors import EmailTaken, InvalidCredentials, NotFound, Unauthenticated, ValidationFailed
from domain.user import EmailClaim
from tests.support.api import PASSWORD


@pytest.fixture
def identity(prepared: Settings) -> Identity:
    return Identity(prepared)


def family_of(refresh_token: str) -> UUID:
    return UUID(refresh_token.split(".")[1])


def stream(identity: Identity, aggregate_id: UUID) -> list[Any]:
    return list(identity.repository.event_store.get(aggregate_id))


def kinds(identity: Identity, aggregate_id: UUID) -> list[str]:
    return [type(e).__name__ for e in stream(identity, aggregate_id)]


def query(settings: Settings, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute(sql, params).fetchall()


def register(
    identity: Identity, email: str = "ann@example.test", role: str = "student", **kw: Any
) -> tuple[Outcome, Account]:
    out = identity.register(email, kw.pop("password", PASSWORD), kw.pop("full_name", "Ann Lee"), role, **kw)
    assert out.tokens is not None
    return out, identity.authenticate(out.tokens.access_token)


# ------------------------------------------------------------------------------------------ register


def test_register_opens_an_account_and_a_session(identity: Identity, prepared: Settings) -> None:
    out, account = register(identity, " Ann@Example.TEST ", full_name="  Ann Lee ")
    assert out.tokens is not None
    assert out.user["email"] == "ann@example.test" and out.user["full_name"] == "Ann Lee"
    assert account == Account(UUID(out.user["id"]), "student")
    assert out.position == identity.head() > 0
    assert kinds(identity, account.user_id) == ["Registered", "SessionStarted"]
    assert stream(identity, account.user_id)[1].family_id == family_of(out.tokens.refresh_token)
    claim: Any = identity.repository.get(EmailClaim.create_id("ann@example.test"))
    assert (claim.email, claim.user_id) == ("ann@example.test", account.user_id)
    assert identity.me(account)["email"] == "ann@example.test"


def test_duplicate_email_in_any_case_is_taken(identity: Identity, prepared: Settings) -> None:
    register(identity, "ann@example.test")
    head = identity.head()
    with pytest.raises(EmailTaken):
        identity.register("  ANN@example.TEST", PASSWORD, "Impostor", "tutor")
    assert identity.head() == head
    assert query(prepared, "SELECT count(*) FROM identity_accounts")[0][0] == 1


INVALID_REGISTRATIONS = [
    ("ann@example.test", "short1", "student", "password"),
    ("ann@example.test", "longenough", "student", "password"),
    ("ann@example.test", PASSWORD, "admin", "role"),
    ("not-an-email", PASSWORD, "student", "email"),
]


def test_invalid_registration_stores_nothing(identity: Identity, prepared: Settings) -> None:
    for email, password, role, field in INVALID_REGISTRATIONS:
        with pytest.raises(ValidationFailed) as info:
            identity.register(email, password, "Ann", role)
        assert [f for f, _ in info.value.errors] == [field]
    assert identity.head() == 0
    assert query(prepared, "SELECT count(*) FROM identity_accounts")[0][0] == 0


def test_staff_may_register_admins(identity: Identity) -> None:
    _, account = register(identity, "root@example.test", role="admin", staff=True)
    assert account.role == "admin"


def test_twenty_concurrent_registrations_of_one_email_make_one_account(prepared: Settings) -> None:
    apps = [Identity(prepared) for _ in range(20)]
    for round_ in range(3):
        race_one_email(prepared, apps, round_)


def race_one_email(prepared: Settings, apps: list[Identity], round_: int) -> None:
    n = len(apps)
    variants = [f"{' ' * (i % 3)}{'RACE' if i % 2 else 'race'}{round_}@Example.TEST{' ' * (i % 2)}" for i in range(n)]
    email = f"race{round_}@example.test"
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = apps[i].register(variants[i], PASSWORD, f"Racer {i}", "student")
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    wins = [r for r in results if isinstance(r, Outcome)]
    assert len(wins) == 1, results
    assert all(isinstance(r, EmailTaken) for r in results if r is not wins[0]), results
    winner = UUID(wins[0].user["id"])

    assert query(prepared, "SELECT user_id FROM identity_accounts WHERE email = %s", email) == [(winner,)]
    assert query(prepared, "SELECT count(*) FROM identity_accounts")[0][0] == round_ + 1
    claim_id = EmailClaim.create_id(email)
    assert query(prepared, f"SELECT count(*) FROM {EVENTS_TABLE} WHERE originator_id = %s", claim_id)[0][0] == 1
    claim: Any = apps[0].repository.get(claim_id)
    assert claim.user_id == winner
    registered = query(
        prepared,
        f"SELECT originator_id FROM {EVENTS_TABLE} WHERE topic LIKE %s AND state LIKE %s",
        "%:User.Registered",
        f'%"{email}"%'.encode(),
    )
    assert registered == [(winner,)]
    assert query(prepared, "SELECT count(*) FROM identity_sessions WHERE user_id = %s", winner)[0][0] == 1
    assert apps[0].login(email, PASSWORD).user["id"] == str(winner)


# --------------------------------------------------------------------------------------------- login


def test_login_normalises_the_email_and_records_a_session(identity: Identity) -> None:
    _, account = register(identity)
    out = identity.login("  ANN@example.test ", PASSWORD)
    assert out.tokens is not None and identity.authenticate(out.tokens.access_token) == account
    assert kinds(identity, account.user_id) == ["Registered", "SessionStarted", "SessionStarted"]
    assert stream(identity, account.user_id)[-1].family_id == family_of(out.tokens.refresh_token)


def test_wrong_password_and_unknown_email_look_the_same(identity: Identity) -> None:
    register(identity)
    head = identity.head()
    with pytest.raises(InvalidCredentials) as wrong:
        identity.login("ann@example.test", PASSWORD + "x")
    with pytest.raises(InvalidCredentials) as unknown:
        identity.login("nobody@example.test", PASSWORD)
    assert wrong.value.detail == unknown.value.detail
    assert identity.head() == head


def test_garbage_access_tokens_are_refused(identity: Identity, prepared: Settings) -> None:
    out, _ = register(identity)
    assert out.tokens is not None
    for token in ("", "nonsense", out.tokens.refresh_token, out.tokens.access_token[:-2] + "xx"):
        with pytest.raises(Unauthenticated):
            identity.authenticate(token)
    other = Identity(
        Settings(**{**{f: getattr(prepared, f) for f in prepared.__struct_fields__}, "jwt_secret": "z" * 40})
    )
    with pytest.raises(Unauthenticated):
        other.authenticate(out.tokens.access_token)


def test_a_valid_token_for_an_unknown_user_is_refused(identity: Identity, prepared: Settings) -> None:
    token = issue_access(prepared.jwt_secret, str(uuid4()), "admin", 60)
    with pytest.raises(Unauthenticated):
        identity.authenticate(token)


# ------------------------------------------------------------------------------------ refresh, logout


def test_refresh_rotates_the_token(identity: Identity) -> None:
    out, account = register(identity)
    assert out.tokens is not None
    new = identity.refresh(out.tokens.refresh_token)
    assert new.tokens is not None
    assert new.tokens.refresh_token != out.tokens.refresh_token
    assert family_of(new.tokens.refresh_token) == family_of(out.tokens.refresh_token)
    assert identity.authenticate(new.tokens.access_token) == account
    assert identity.refresh(new.tokens.refresh_token).tokens is not None


def test_refresh_reuse_revokes_the_whole_family_only(identity: Identity, prepared: Settings) -> None:
    out, account = register(identity)
    other = identity.login("ann@example.test", PASSWORD)
    assert out.tokens is not None and other.tokens is not None
    family = family_of(out.tokens.refresh_token)
    first = identity.refresh(out.tokens.refresh_token)
    assert first.tokens is not None
    second = identity.refresh(first.tokens.refresh_token)
    assert second.tokens is not None

    with pytest.raises(Unauthenticated):
        identity.refresh(out.tokens.refresh_token)  # reuse of a spent token
    for token in (out.tokens.refresh_token, first.tokens.refresh_token, second.tokens.refresh_token):
        with pytest.raises(Unauthenticated):
            identity.refresh(token)

    revoked = [e for e in stream(identity, account.user_id) if type(e).__name__ == "SessionRevoked"]
    assert [(e.family_id, e.reason) for e in revoked] == [(family, "refresh token reuse detected")]
    assert query(prepared, "SELECT revoked_reason FROM identity_sessions WHERE family_id = %s", family) == [("reuse",)]

    untouched = identity.refresh(other.tokens.refresh_token)  # the other family still works
    assert untouched.tokens is not None and family_of(untouched.tokens.refresh_token) == family_of(
        other.tokens.refresh_token
    )
    assert identity.authenticate(untouched.tokens.access_token) == account


def test_unknown_refresh_tokens_are_refused(identity: Identity) -> None:
    out, _ = register(identity)
    assert out.tokens is not None
    real = out.tokens.refresh_token
    for token in ("", "rt.", "garbage", "rt." + "0" * 32 + ".nope", "Bearer " + real, real + "x", real.upper()):
        with pytest.raises(Unauthenticated):
            identity.refresh(token)
    assert identity.refresh(real).tokens is not None  # the failed attempts spent nothing


def test_expired_refresh_tokens_are_refused(identity: Identity, prepared: Settings) -> None:
    out, _ = register(identity)
    assert out.tokens is not None
    with psycopg.connect(prepared.database_url) as conn:
        conn.execute(
            "UPDATE identity_refresh_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = %s",
            (digest(out.tokens.refresh_token),),
        )
    with pytest.raises(Unauthenticated):
        identity.refresh(out.tokens.refresh_token)


def test_logout_revokes_the_family_once(identity: Identity, prepared: Settings) -> None:
    out, account = register(identity)
    keep = identity.login("ann@example.test", PASSWORD)
    assert out.tokens is not None and keep.tokens is not None
    identity.logout(account, out.tokens.refresh_token)
    with pytest.raises(Unauthenticated):
        identity.refresh(out.tokens.refresh_token)
    head = identity.head()
    identity.logout(account, out.tokens.refresh_token)  # again: nothing more to record
    assert identity.head() == head
    revoked = [e for e in stream(identity, account.user_id) if type(e).__name__ == "SessionRevoked"]
    assert [(e.family_id, e.reason) for e in revoked] == [(family_of(out.tokens.refresh_token), "logout")]
    assert identity.refresh(keep.tokens.refresh_token).tokens is not None


def test_logout_of_someone_elses_session_is_not_found(identity: Identity) -> None:
    out, _ = register(identity)
    _, mallory = register(identity, "mallory@example.test")
    assert out.tokens is not None
    with pytest.raises(NotFound):
        identity.logout(mallory, out.tokens.refresh_token)
    assert identity.refresh(out.tokens.refresh_token).tokens is not None


# ---------------------------------------------------------------------------------------------- admin


def test_deactivation_locks_the_user_out_at_once(identity: Identity) -> None:
    out, account = register(identity)
    assert out.tokens is not None
    identity.admin_update(account.user_id, is_active=False)
    with pytest.raises(Unauthenticated):
        identity.authenticate(out.tokens.access_token)
    with pytest.raises(InvalidCredentials):
        identity.login("ann@example.test", PASSWORD)
    with pytest.raises(Unauthenticated):
        identity.refresh(out.tokens.refresh_token)
    assert kinds(identity, account.user_id)[-1] == "Deactivated"

    identity.admin_update(account.user_id, is_active=True)
    assert identity.authenticate(out.tokens.access_token) == account
    assert identity.login("ann@example.test", PASSWORD).tokens is not None
    assert identity.refresh(out.tokens.refresh_token).tokens is not None  # the refused refresh spent nothing


def test_role_change_applies_to_existing_tokens(identity: Identity) -> None:
    out, account = register(identity)
    assert out.tokens is not None
    result = identity.admin_update(account.user_id, role="tutor")
    assert result.user["role"] == "tutor"
    assert identity.authenticate(out.tokens.access_token) == Account(account.user_id, "tutor")
    changed = stream(identity, account.user_id)[-1]
    assert (type(changed).__name__, changed.role, changed.previous) == ("RoleChanged", "tutor", "student")
    head = identity.head()
    identity.admin_update(account.user_id, role="tutor", is_active=True)  # no change: no event
    assert identity.head() == head
    with pytest.raises(ValidationFailed):
        identity.admin_update(account.user_id, role="root")


def test_deleted_user_is_gone_for_good(identity: Identity, prepared: Settings) -> None:
    out, account = register(identity)
    assert out.tokens is not None
    identity.admin_delete(account.user_id)
    with pytest.raises(Unauthenticated):
        identity.authenticate(out.tokens.access_token)
    with pytest.raises(InvalidCredentials):
        identity.login("ann@example.test", PASSWORD)
    with pytest.raises(Unauthenticated):
        identity.refresh(out.tokens.refresh_token)
    for command in (
        lambda: identity.admin_delete(account.user_id),
        lambda: identity.admin_update(account.user_id, is_active=True),
        lambda: identity.update_profile(account, {"full_name": "Back"}),
    ):
        with pytest.raises(NotFound):
            command()
    assert query(prepared, "SELECT revoked_reason FROM identity_sessions WHERE user_id = %s", account.user_id) == [
        ("deleted",)
    ]
    assert kinds(identity, account.user_id) == ["Registered", "SessionStarted", "Deleted"]
    with pytest.raises(EmailTaken):  # the claim stays: the email cannot be re-registered
        identity.register("ann@example.test", PASSWORD, "Ann Again", "student")


def test_admin_ops_on_unknown_or_non_user_ids_are_not_found(identity: Identity) -> None:
    register(identity)
    for target in (uuid4(), EmailClaim.create_id("ann@example.test")):
        with pytest.raises(NotFound):
            identity.admin_update(target, role="tutor")
        with pytest.raises(NotFound):
            identity.admin_delete(target)


def test_profile_update(identity: Identity) -> None:
    _, account = register(identity)
    out = identity.update_profile(account, {"timezone": "Europe/Berlin", "full_name": " Ann B. Lee "})
    assert (out.user["timezone"], out.user["full_name"]) == ("Europe/Berlin", "Ann B. Lee")
    assert identity.me(account)["timezone"] == "Europe/Berlin"
    with pytest.raises(ValidationFailed):
        identity.update_profile(account, {"timezone": "Mars/Base"})
    with pytest.raises(ValidationFailed):
        identity.update_profile(account, {"role": "admin"})
    assert identity.me(account)["role"] == "student"


# -------------------------------------------------------------------------------------------- secrets


def keys_of(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [k for key, v in value.items() for k in (key, *keys_of(v))]
    if isinstance(value, list):
        return [k for v in value for k in keys_of(v)]
    return []


def test_no_secret_enters_the_event_log(identity: Identity, prepared: Settings) -> None:
    passwords = ["Passw0rd-test", "An0ther-secret-pass", "th1rd-Secret-xyz"]
    tokens: list[str] = []
    accounts = []
    for i, pw in enumerate(passwords):
        out, account = register(identity, f"user{i}@example.test", password=pw)
        accounts.append(account)
        assert out.tokens is not None
        tokens += [out.tokens.access_token, out.tokens.refresh_token]
        again = identity.login(f"USER{i}@example.test", pw)
        assert again.tokens is not None
        rotated = identity.refresh(again.tokens.refresh_token)
        assert rotated.tokens is not None
        tokens += [
            again.tokens.access_token,
            again.tokens.refresh_token,
            rotated.tokens.access_token,
            rotated.tokens.refresh_token,
        ]
        identity.logout(account, rotated.tokens.refresh_token)
    spent = identity.refresh(tokens[1])
    assert spent.tokens is not None
    tokens += [spent.tokens.access_token, spent.tokens.refresh_token]
    with pytest.raises(Unauthenticated):
        identity.refresh(tokens[1])  # reuse: the family is revoked and the revocation recorded
    identity.update_profile(accounts[0], {"avatar_url": "https://cdn.example.test/a.png"})
    identity.admin_update(accounts[1].user_id, role="tutor", is_active=False)
    identity.admin_delete(accounts[2].user_id)

    hashes = [r[0] for r in query(prepared, "SELECT password_hash FROM identity_accounts")]
    assert len(hashes) == 3
    needles: list[bytes] = [b"$argon2"]
    for pw in passwords:
        needles.append(pw.encode())
    for h in hashes:
        needles += [h.encode(), *(part.encode() for part in h.split("$")[-2:])]  # salt and digest alone too
    for t in tokens:
        needles += [t.encode(), t.rsplit(".", 1)[-1].encode()]  # the refresh secret (or the JWT signature) alone
        needles += [digest(t), digest(t).hex().encode()]

    states = [bytes(r[0]) for r in query(prepared, f"SELECT state FROM {EVENTS_TABLE}")]
    assert len(states) >= 15
    leaks = [(n, s) for s in states for n in needles if n in s]
    assert leaks == []
    for s in states:
        names = " ".join(keys_of(json.loads(s))).lower()
        assert not any(word in names for word in ("password", "hash", "token", "secret")), names


def test_password_hash_is_argon2id_with_the_configured_cost(identity: Identity, prepared: Settings) -> None:
    register(identity)
    [(stored,)] = query(prepared, "SELECT password_hash FROM identity_accounts")
    assert stored.startswith("$argon2id$")
    params = argon2.extract_parameters(stored)
    assert params.type is argon2.Type.ID
    assert (params.time_cost, params.memory_cost, params.parallelism) == (
        prepared.argon2_time_cost,
        prepared.argon2_memory_kib,
        prepared.argon2_parallelism,
    )
    assert PasswordHasher().verify(stored, PASSWORD)


def test_a_token_checked_once_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signature check of a token string is remembered; its expiry is checked on every use, and a token
    signed with another secret or of another type is refused every time."""
    import time as real_time

    from application import tokens

    secret = "s" * 40
    token = issue_access(secret, str(uuid4()), "student", 60)
    assert tokens.verify_access(secret, token).role == "student"
    assert tokens.verify_access(secret, token).role == "student"  # the remembered check
    later = real_time.time() + 61
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    with pytest.raises(Unauthenticated):
        tokens.verify_access(secret, token)
    monkeypatch.undo()
    with pytest.raises(Unauthenticated):
        tokens.verify_access("t" * 40, token)
    with pytest.raises(Unauthenticated):
        tokens.verify_access(secret, token + "x")
