"""Who is calling: the Account a request acts as, read from its access token and the command-side account row,
the role check, and the channel on which a change of an account is announced to the API processes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from application.store import SideWrite
from application.tokens import verify_access
from domain.errors import Forbidden, Unauthenticated


@dataclass(frozen=True)
class Account:
    """The authenticated caller, as the auth check sees it (from the command-side account row)."""

    user_id: UUID
    role: str


# Every change of an account's role, activity or existence NOTIFYs this channel in its own transaction (delivered
# at commit), so that API processes drop what they remember of it (api/accounts.py).
ACCOUNTS_CHANNEL = "tutorconnect_accounts"


def account_changed(user_id: UUID) -> SideWrite:
    """The side write that announces a change of this account (delivered at commit)."""
    return ("SELECT pg_notify(%s, %s)", (ACCOUNTS_CHANNEL, str(user_id)))


# The command-side account row an authenticated request is checked against. The API's guards keep what it said
# until the account changes (ACCOUNTS_CHANNEL); deactivation, deletion and role changes bite at the next request.
# With the token's session (its refresh-token family, or NULL for tokens issued before sessions were named): a
# logged-out or revoked session's access tokens stop working at once, not when they expire.
ACCOUNT_SQL = (
    "SELECT a.role, a.is_active, a.deleted, s.revoked_at IS NOT NULL AS revoked FROM identity_accounts a"
    " LEFT JOIN identity_sessions s ON s.family_id = %s WHERE a.user_id = %s"
)


def token_subject(secret: str, access_token: str) -> tuple[UUID, UUID | None]:
    """The user id and session of a well-signed, unexpired access token (401 otherwise)."""
    claims = verify_access(secret, access_token)
    try:
        return UUID(claims.user_id), UUID(claims.session_id) if claims.session_id else None
    except ValueError:
        raise Unauthenticated("invalid access token") from None


def account_of(user_id: UUID, row: Any) -> Account:
    """The caller, from their ACCOUNT_SQL row: only an existing, active, undeleted account gets in."""
    if row is None or not row["is_active"] or row["deleted"]:
        raise Unauthenticated("account is not active")
    if row["revoked"]:
        raise Unauthenticated("this session has ended")
    return Account(user_id, row["role"])


def require_role(actor: Account, *roles: str) -> None:
    """Refuse a caller whose role is not one of `roles`."""
    if actor.role not in roles:
        raise Forbidden(f"requires role {' or '.join(roles)}")
