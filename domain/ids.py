"""Derived ids: the one place where deterministic (uuid5) aggregate ids are made."""

from __future__ import annotations

from uuid import UUID, uuid5

NAMESPACE = UUID("6f1f3c1e-2b1a-4c1e-9d53-7f5b0c2e1a10")


def derived_id(kind: str, *parts: str) -> UUID:
    """The id of an aggregate whose identity is a natural key (an email claim, a calendar week)."""
    return uuid5(NAMESPACE, ":".join((kind, *parts)))


def normalise_email(email: str) -> str:
    """Emails are compared trimmed and lower-cased everywhere (register, login, claims)."""
    return email.strip().lower()
