"""RFC 9457 problem+json: the one table of error -> (status, type) and the handlers that render it."""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg
import redis
from eventsourcing import persistence as es_persistence
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)

from api.text import MESSAGE, unstorable
from application import money, storage
from domain import booking, files, messaging, payouts, purchase, tutor, user
from domain import credits as credit_rules
from domain import errors as e
from projections.failures import ProjectionStopped

BASE = "https://tutorconnect.dev/problems/"
log = logging.getLogger("tutorconnect.api")


class ProjectionLagging(Exception):
    """A read model has not reached the position the client asked for."""


class RateLimited(Exception):
    """Too many requests in the current window."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("rate limit exceeded")
        self.retry_after = retry_after


# error class -> (status, type slug, title). Checked in order: subclasses before their bases.
TABLE: list[tuple[type[Exception], int, str, str]] = [
    (e.InvalidCredentials, 401, "invalid-credentials", "Invalid credentials"),
    (e.Unauthenticated, 401, "unauthorized", "Authentication required"),
    (e.Forbidden, 403, "forbidden", "Forbidden"),
    (e.NotFound, 404, "not-found", "Not found"),
    (e.EmailTaken, 409, "email-taken", "Email already registered"),
    (user.SelfLockout, 409, "self-lockout", "Self lockout"),
    (e.WrongStatus, 409, "wrong-status", "Wrong status"),
    (e.ConcurrencyConflict, 409, "concurrency-conflict", "Concurrent change"),
    (e.IdempotencyKeyInFlight, 409, "idempotency-key-in-flight", "Request in progress"),
    (e.IdempotencyKeyReused, 422, "idempotency-key-reused", "Idempotency key reused"),
    (e.ValidationFailed, 422, "validation-failed", "Validation failed"),
    (tutor.ProfileIncomplete, 422, "profile-incomplete", "Profile incomplete"),
    (tutor.TutorNotBookable, 422, "tutor-not-bookable", "Tutor not bookable"),
    (files.UnsupportedFile, 422, "unsupported-file", "Unsupported file"),
    (files.FileTooLarge, 422, "file-too-large", "File too large"),
    (files.UploadMissing, 422, "upload-missing", "Upload missing"),
    (storage.StorageUnavailable, 503, "storage-unavailable", "Storage unavailable"),
    (messaging.EditWindowClosed, 409, "edit-window-closed", "Edit window closed"),
    (booking.BookingConflict, 409, "booking-conflict", "Booking conflict"),
    (booking.OutsideAvailability, 422, "outside-availability", "Outside availability"),
    (booking.TooShortNotice, 422, "too-short-notice", "Too short notice"),
    (credit_rules.InsufficientCredit, 422, "insufficient-credit", "Insufficient credit"),
    (payouts.PayoutExceedsPayable, 422, "payout-exceeds-payable", "Payout exceeds payable"),
    (purchase.NothingToRefund, 409, "nothing-to-refund", "Nothing to refund"),
    (money.PaymentProviderError, 502, "payment-provider-error", "Payment provider error"),
    (money.BadWebhook, 400, "invalid-webhook", "Invalid webhook"),
    (e.DomainError, 422, "rule-violated", "Request refused"),
]


def problem(
    status: int, slug: str, title: str, detail: str = "", headers: dict[str, str] | None = None, **extra: Any
) -> Response[dict[str, Any]]:
    """A problem+json response."""
    body: dict[str, Any] = {"type": BASE + slug, "title": title, "status": status, "detail": detail or title}
    body.update(extra)
    return Response(body, status_code=status, media_type="application/problem+json", headers=headers)


def domain_error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Render any DomainError from the table."""
    for cls, status, slug, title in TABLE:
        if isinstance(exc, cls):
            extra: dict[str, Any] = {}
            if isinstance(exc, e.ValidationFailed):
                extra["errors"] = [{"field": f, "message": m} for f, m in exc.errors]
            headers = (
                {"WWW-Authenticate": "Bearer"} if status == 401 else {"Retry-After": "5"} if status == 503 else None
            )
            return problem(status, slug, title, getattr(exc, "detail", str(exc)), headers=headers, **extra)
    return unexpected(_, exc)


MISSING_FIELD = re.compile(r"Object missing required field `([^`]+)`")


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    """Framework errors (malformed bodies, unknown routes, wrong methods, oversized bodies)."""
    status = exc.status_code
    if status in (404, 405) and unstorable(request.scope.get("path", "")):
        # a segment no route matches because of text PostgreSQL cannot store (`/bookings/%00`): named as such,
        # as the before_request hook names a matched route's parameters (api/text.py)
        return problem(
            422,
            "validation-failed",
            "Validation failed",
            "path: " + MESSAGE,
            errors=[{"field": "path", "message": MESSAGE}],
        )
    if isinstance(exc, ValidationException):
        errors = []
        for item in exc.extra if isinstance(exc.extra, list) else []:
            if isinstance(item, dict):
                field = str(item.get("key") or item.get("field") or "body")
                message = str(item.get("message", "invalid"))
                if missing := MISSING_FIELD.match(message):  # named by its object (the body is `data`): name it
                    field = missing[1] if field in ("data", "body") else f"{field}.{missing[1]}"
                errors.append({"field": field, "message": message})
        if not errors:
            errors = [{"field": "body", "message": exc.detail}]
        return problem(422, "validation-failed", "Validation failed", exc.detail, errors=errors)
    if isinstance(exc, NotAuthorizedException):
        return problem(401, "unauthorized", "Authentication required", exc.detail, {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, PermissionDeniedException):
        return problem(403, "forbidden", "Forbidden", exc.detail)
    if isinstance(exc, NotFoundException):
        return problem(404, "not-found", "Not found", exc.detail)
    if status == 400:  # the body is not JSON at all (schema violations are ValidationException above)
        return problem(400, "malformed-request", "Malformed request", exc.detail)
    slugs = {405: "method-not-allowed", 413: "payload-too-large", 415: "unsupported-media-type", 429: "rate-limited"}
    slug = slugs.get(status, "http-error" if status < 500 else "server-error")
    headers = dict((exc.headers or {}).items()) if exc.headers else None
    return problem(status, slug, slug.replace("-", " ").capitalize(), exc.detail, headers)


def lagging(_: Request[Any, Any, Any], exc: ProjectionLagging | ProjectionStopped) -> Response[dict[str, Any]]:
    """503 while a read model catches up to the client's X-Min-Position, or is stopped at an event it could not
    apply (then `projections` names it)."""
    extra = {"projections": exc.names} if isinstance(exc, ProjectionStopped) else {}
    retry = "30" if isinstance(exc, ProjectionStopped) else "1"
    return problem(503, "projection-lagging", "Read model lagging", str(exc), {"Retry-After": retry}, **extra)


# A dependency that is down or restarting (the database, Redis): the request recorded nothing it did not commit,
# and the client may try again shortly. Never a 500: the fault is not in the request or in our code.
UNAVAILABLE: tuple[type[Exception], ...] = (
    psycopg.OperationalError,  # includes psycopg_pool.PoolTimeout and a connection cut by a restart
    psycopg.InterfaceError,
    es_persistence.OperationalError,
    es_persistence.InterfaceError,
    redis.RedisError,
)


def unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """503 while the database or Redis cannot be reached."""
    log.warning("dependency unavailable: %s: %s", type(exc).__name__, " ".join(str(exc).split())[:300])
    return problem(
        503,
        "service-unavailable",
        "Service unavailable",
        "a service this request needs is unavailable for a moment; try again",
        {"Retry-After": "2"},
    )


def unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """A bug: log it, and still answer problem+json."""
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "server-error", "Internal server error", "an unexpected error occurred")


HANDLERS: dict[type[Exception] | int, Any] = {
    **dict.fromkeys(UNAVAILABLE, unavailable),
    e.DomainError: domain_error,
    HTTPException: http_error,
    ProjectionLagging: lagging,
    ProjectionStopped: lagging,
    Exception: unexpected,
}
MEDIA = MediaType.JSON
