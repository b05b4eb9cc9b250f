"""Access tokens (30-minute JWTs) and opaque refresh tokens (stored only as digests)."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from domain.errors import Unauthenticated

ALGORITHM = "HS256"


@dataclass(frozen=True)
class AccessClaims:
    """What a verified access token says."""

    user_id: str
    role: str
    issued_at: int


def issue_access(secret: str, user_id: str, role: str, ttl_s: int) -> str:
    """A signed access token; its lifetime runs on real time, never on the test clock."""
    now = int(time.time())
    payload = {"sub": user_id, "role": role, "iat": now, "exp": now + ttl_s, "jti": uuid.uuid4().hex, "typ": "access"}
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify_access(secret: str, token: str) -> AccessClaims:
    """Check signature, expiry and type; the account's current state is checked by the caller."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "iat"]})
    except jwt.PyJWTError as e:
        raise Unauthenticated("invalid or expired access token") from e
    if claims.get("typ") != "access":
        raise Unauthenticated("not an access token")
    return AccessClaims(str(claims["sub"]), str(claims.get("role", "")), int(claims["iat"]))


def new_refresh_token(family_id: uuid.UUID) -> tuple[str, bytes]:
    """A fresh refresh token (`rt.<family>.<secret>`) and the digest we store in its place."""
    token = f"rt.{family_id.hex}.{secrets.token_urlsafe(32)}"
    return token, digest(token)


def digest(token: str) -> bytes:
    """SHA-256 of a refresh token: enough for a 256-bit random secret (no salt or stretching needed)."""
    return hashlib.sha256(token.encode()).digest()
