"""Access tokens (30-minute JWTs) and opaque refresh tokens (stored only as digests)."""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from domain.errors import Unauthenticated

ALGORITHM = "HS256"


@dataclass(frozen=True)
class Tokens:
    """A token pair as the API returns it."""

    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class AccessClaims:
    """What a verified access token says."""

    user_id: str
    role: str
    issued_at: int
    session_id: str | None = None  # the refresh-token family it was issued under (logout ends its sockets)
    expires: int = 0


def issue_access(secret: str, user_id: str, role: str, ttl_s: int, session_id: uuid.UUID | None = None) -> str:
    """A signed access token; its lifetime runs on real time, never on the test clock."""
    now = int(time.time())
    payload = {"sub": user_id, "role": role, "iat": now, "exp": now + ttl_s, "jti": uuid.uuid4().hex, "typ": "access"}
    if session_id is not None:
        payload["sid"] = session_id.hex
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify_access(secret: str, token: str) -> AccessClaims:
    """Check signature, expiry and type; the account's current state is checked by the caller."""
    claims, expires = _signed(secret, token)
    if expires <= time.time():  # PyJWT's rule (no leeway), checked on every use: the signature check is cached
        raise Unauthenticated("invalid or expired access token")
    return claims


@functools.lru_cache(maxsize=8192)
def _signed(secret: str, token: str) -> tuple[AccessClaims, int]:
    """The claims of a well-signed access token and its expiry. A client sends the same token for up to 30
    minutes, and whether a given string is well signed never changes, so the HMAC and JSON work is done once per
    token (the rate limiter and the auth check both need it). Failures are not cached: they raise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub", "iat"], "verify_exp": False},
        )
    except jwt.PyJWTError as e:
        raise Unauthenticated("invalid or expired access token") from e
    if claims.get("typ") != "access":
        raise Unauthenticated("not an access token")
    try:
        expires = int(claims["exp"])
    except (TypeError, ValueError):
        raise Unauthenticated("invalid or expired access token") from None
    sid = claims.get("sid")
    claimed = AccessClaims(
        str(claims["sub"]), str(claims.get("role", "")), int(claims["iat"]), str(sid) if sid else None, expires
    )
    return claimed, expires


def new_refresh_token(family_id: uuid.UUID) -> tuple[str, bytes]:
    """A fresh refresh token (`rt.<family>.<secret>`) and the digest we store in its place."""
    token = f"rt.{family_id.hex}.{secrets.token_urlsafe(32)}"
    return token, digest(token)


def digest(token: str) -> bytes:
    """SHA-256 of a refresh token: enough for a 256-bit random secret (no salt or stretching needed)."""
    return hashlib.sha256(token.encode()).digest()
