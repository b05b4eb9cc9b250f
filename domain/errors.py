"""Domain errors: every rule the core refuses is one of these; api/problems.py maps each to a problem type."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every refused command; `detail` is safe to show to the caller."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.__class__.__doc__ or self.__class__.__name__)
        self.detail = detail or (self.__class__.__doc__ or "").strip()


class ValidationFailed(DomainError):
    """The request is well-formed but breaks a validation rule."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))
        self.errors = errors


class NotFound(DomainError):
    """No such resource (or it is not yours to see)."""


class Forbidden(DomainError):
    """You may not do that."""


class Unauthenticated(DomainError):
    """Missing, invalid or expired credentials."""


class InvalidCredentials(Unauthenticated):
    """Wrong email or password."""


class EmailTaken(DomainError):
    """An account with this email already exists."""


class WrongStatus(DomainError):
    """The resource is not in a status that allows this."""


class ConcurrencyConflict(DomainError):
    """Someone else changed this at the same time; try again."""


class IdempotencyKeyReused(DomainError):
    """This Idempotency-Key was used with a different request."""


class IdempotencyKeyInFlight(DomainError):
    """A request with this Idempotency-Key is still being processed."""
