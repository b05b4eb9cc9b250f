"""Every route in OpenAPI, with every role, on ids that do not exist: anonymous callers get 401, roles the route is not
for get 403 (decided before any lookup, so a 403 never tells an id exists), and roles it is for get the route's
answer for an unknown id (404 where the path names one). A route added without an entry here fails the test."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.support.api import API, Actor

pytestmark = pytest.mark.cloned_database

ANYONE = None  # a public route
USERS = ("student", "tutor", "admin", "finance")
STUDENT, TUTOR, ADMIN = ("student",), ("tutor",), ("admin",)
MONEY = ("finance", "admin")
PARTIES = ("student", "tutor")

# (method, path) -> (who may call it, what they get for an unknown id or an empty request; None: not checked here
# because the answer depends on the caller's own data, e.g. a list).
ROUTES: dict[tuple[str, str], tuple[tuple[str, ...] | None, int | None]] = {
    ("GET", "/healthz"): (ANYONE, None),
    ("GET", "/readyz"): (ANYONE, None),
    ("POST", "/api/v1/auth/register"): (ANYONE, 422),
    ("POST", "/api/v1/auth/login"): (ANYONE, 422),
    ("POST", "/api/v1/auth/refresh"): (ANYONE, 422),
    ("POST", "/api/v1/auth/logout"): (USERS, 422),
    ("GET", "/api/v1/me"): (USERS, 200),
    ("PATCH", "/api/v1/me"): (USERS, 200),
    ("POST", "/api/v1/me/avatar"): (USERS, 422),
    ("POST", "/api/v1/me/avatar/{upload_id}/complete"): (USERS, 404),
    ("GET", "/api/v1/admin/users"): (ADMIN, 200),
    ("GET", "/api/v1/admin/users/{user_id}"): (ADMIN, 404),
    ("PATCH", "/api/v1/admin/users/{user_id}"): (ADMIN, 404),
    ("PUT", "/api/v1/admin/users/{user_id}/avatar"): (ADMIN, 404),
    ("DELETE", "/api/v1/admin/users/{user_id}"): (ADMIN, 404),
    ("GET", "/api/v1/admin/events"): (ADMIN, 200),
    ("GET", "/api/v1/admin/aggregates/{aggregate_id}/history"): (ADMIN, 404),
    ("GET", "/api/v1/subjects"): (ANYONE, 200),
    ("POST", "/api/v1/admin/subjects"): (ADMIN, 422),
    ("PATCH", "/api/v1/admin/subjects/{subject_id}"): (ADMIN, 404),
    ("DELETE", "/api/v1/admin/subjects/{subject_id}"): (ADMIN, 404),
    ("POST", "/api/v1/admin/subjects/{subject_id}/restore"): (ADMIN, 404),
    ("PUT", "/api/v1/admin/test-clock"): (ADMIN, None),
    ("DELETE", "/api/v1/admin/test-clock"): (ADMIN, None),
    ("GET", "/api/v1/tutor/profile"): (TUTOR, 200),
    ("PATCH", "/api/v1/tutor/profile"): (TUTOR, 200),
    ("POST", "/api/v1/tutor/profile/submit"): (TUTOR, 422),
    ("GET", "/api/v1/tutor/documents"): (TUTOR, 200),
    ("POST", "/api/v1/tutor/documents"): (TUTOR, 422),
    ("POST", "/api/v1/tutor/documents/{document_id}/complete"): (TUTOR, 404),
    ("GET", "/api/v1/tutors"): (ANYONE, 200),
    ("GET", "/api/v1/tutors/{tutor_id}"): (ANYONE, 404),
    ("GET", "/api/v1/tutors/{tutor_id}/slots"): (ANYONE, 422),  # from/to are required
    ("GET", "/api/v1/tutors/{tutor_id}/reviews"): (ANYONE, 404),
    ("GET", "/api/v1/tutor/reviews"): (TUTOR, 200),
    ("GET", "/api/v1/admin/tutors"): (ADMIN, 200),
    ("GET", "/api/v1/admin/tutors/{tutor_id}"): (ADMIN, 404),
    ("POST", "/api/v1/admin/tutors/{tutor_id}/approve"): (ADMIN, 404),
    ("POST", "/api/v1/admin/tutors/{tutor_id}/reject"): (ADMIN, 404),
    ("POST", "/api/v1/admin/tutors/{tutor_id}/suspend"): (ADMIN, 404),
    ("POST", "/api/v1/admin/tutors/{tutor_id}/reinstate"): (ADMIN, 404),
    ("POST", "/api/v1/admin/tutors/{tutor_id}/documents/{document_id}/verify"): (ADMIN, 404),
    ("GET", "/api/v1/student/favorites"): (STUDENT, 200),
    ("POST", "/api/v1/student/favorites/{tutor_id}"): (STUDENT, 404),
    ("DELETE", "/api/v1/student/favorites/{tutor_id}"): (STUDENT, None),
    ("GET", "/api/v1/student/profile"): (STUDENT, 200),
    ("PATCH", "/api/v1/student/profile"): (STUDENT, 200),
    ("GET", "/api/v1/packages"): (ANYONE, 422),  # tutor_id is required
    ("POST", "/api/v1/packages/purchases"): (STUDENT, 422),
    ("GET", "/api/v1/packages/purchases"): (("student", "finance", "admin"), 200),
    ("GET", "/api/v1/packages/purchases/{purchase_id}"): (("student", "finance", "admin"), 404),
    ("GET", "/api/v1/student/credits"): (STUDENT, 200),
    ("GET", "/api/v1/tutor/earnings"): (TUTOR, 200),
    ("GET", "/api/v1/tutor/payouts"): (TUTOR, 200),
    ("POST", "/api/v1/admin/purchases/{purchase_id}/refund"): (MONEY, 404),
    ("POST", "/api/v1/webhooks/stripe"): (ANYONE, None),
    ("GET", "/api/v1/finance/accounts/{account}/balance"): (MONEY, None),
    ("GET", "/api/v1/finance/journal"): (MONEY, 200),
    ("POST", "/api/v1/finance/payouts"): (MONEY, 422),
    ("POST", "/api/v1/finance/reconciliation"): (MONEY, 200),
    ("GET", "/api/v1/admin/settings"): (ADMIN, 200),
    ("PATCH", "/api/v1/admin/settings"): (ADMIN, None),
    ("GET", "/api/v1/bookings"): (PARTIES, 200),
    ("POST", "/api/v1/bookings"): (STUDENT, 422),
    ("GET", "/api/v1/bookings/{booking_id}"): (USERS, 404),
    ("POST", "/api/v1/bookings/{booking_id}/confirm"): (TUTOR, 404),
    ("POST", "/api/v1/bookings/{booking_id}/decline"): (TUTOR, 404),
    ("POST", "/api/v1/bookings/{booking_id}/complete"): (TUTOR, 404),
    ("POST", "/api/v1/bookings/{booking_id}/no-show"): (TUTOR, 404),
    ("POST", "/api/v1/bookings/{booking_id}/cancel"): (PARTIES, 404),
    ("POST", "/api/v1/bookings/{booking_id}/reschedule"): (PARTIES, None),
    ("POST", "/api/v1/bookings/{booking_id}/reschedule/accept"): (PARTIES, 404),
    ("POST", "/api/v1/bookings/{booking_id}/reschedule/reject"): (PARTIES, 404),
    ("POST", "/api/v1/bookings/{booking_id}/review"): (STUDENT, None),
    ("POST", "/api/v1/bookings/{booking_id}/review/response"): (TUTOR, None),
    ("GET", "/api/v1/notifications"): (USERS, 200),
    ("POST", "/api/v1/notifications/{notification_id}/read"): (USERS, 404),
    ("GET", "/api/v1/tutor/calendar"): (TUTOR, None),
    ("POST", "/api/v1/me/calendar-feed"): (USERS, 201),
    ("GET", "/api/v1/calendar/{feed}"): (ANYONE, 404),
    ("GET", "/api/v1/admin/exports/{dataset}"): (ADMIN, 404),
    ("GET", "/api/v1/admin/analytics/overview"): (ADMIN, 200),
    ("GET", "/api/v1/admin/analytics/timeseries"): (ADMIN, None),
    ("POST", "/api/v1/attachments"): (USERS, 422),
    ("GET", "/api/v1/threads"): (USERS, 200),
    ("POST", "/api/v1/threads"): (USERS, 422),
    ("GET", "/api/v1/threads/{thread_id}/messages"): (USERS, 404),
    ("POST", "/api/v1/threads/{thread_id}/messages"): (USERS, 404),
    ("PATCH", "/api/v1/threads/{thread_id}/messages/{message_id}"): (USERS, 404),
    ("DELETE", "/api/v1/threads/{thread_id}/messages/{message_id}"): (USERS, 404),
    ("POST", "/api/v1/threads/{thread_id}/read"): (USERS, 404),
}
# a body that names unknown things where a route needs one (the rest take `{}`)
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/threads/{thread_id}/messages"): {"body": "hello"},
    ("PATCH", "/api/v1/threads/{thread_id}/messages/{message_id}"): {"body": "hello"},
    ("POST", "/api/v1/threads/{thread_id}/read"): {"up_to_message_id": str(uuid.uuid4())},
    ("POST", "/api/v1/bookings/{booking_id}/cancel"): {"reason": "x"},
    ("PATCH", "/api/v1/admin/users/{user_id}"): {"is_active": True},
    ("PUT", "/api/v1/admin/users/{user_id}/avatar"): {"upload_id": None, "reason": "x"},
    ("PATCH", "/api/v1/admin/subjects/{subject_id}"): {"name": "x"},
    ("POST", "/api/v1/admin/tutors/{tutor_id}/reject"): {"feedback": "x"},
    ("POST", "/api/v1/admin/tutors/{tutor_id}/suspend"): {"reason": "x"},
}


def _concrete(template: str) -> str:
    """A URL of the route naming things that do not exist."""
    return re.sub(r"\{(\w+)\}", lambda m: "nothing" if m[1] in ("dataset", "account") else str(uuid.uuid4()), template)


def test_the_table_covers_every_route_in_openapi(client: Any) -> None:
    spec = client.get("/schema/openapi.json").json()
    documented = {
        (m.upper(), p)
        for p, ops in spec["paths"].items()
        for m in ops
        if m in ("get", "post", "put", "patch", "delete")
    }
    documented.add(("GET", f"{API}/ws"))  # the WebSocket is not an OpenAPI operation
    listed = set(ROUTES) | {("GET", f"{API}/ws")}
    assert documented == listed, f"not in the table: {sorted(documented - listed)}; gone: {sorted(listed - documented)}"


def test_every_route_with_every_role_on_unknown_ids(
    client: Any, student: Actor, tutor: Actor, admin: Actor, finance: Actor
) -> None:
    people = {"student": student, "tutor": tutor, "admin": admin, "finance": finance}
    wrong: list[str] = []
    for (method, template), (allowed, unknown) in ROUTES.items():
        url = _concrete(template)
        body = BODIES.get((method, template), {})
        send: dict[str, Any] = {"json": body} if method in ("POST", "PUT", "PATCH") else {}
        if allowed is not ANYONE:
            r = client.request(method, url, **send)
            if r.status_code != 401:
                wrong.append(f"{method} {template} anonymous: {r.status_code}")
        for role, who in people.items():
            r = client.request(method, url, headers=who.auth, **send)
            if allowed is not ANYONE and role not in allowed:
                expected: int | None = 403
            else:
                expected = unknown
            if r.status_code >= 500 or (expected is not None and r.status_code != expected):
                wrong.append(f"{method} {template} as {role}: {r.status_code} (expected {expected}) {r.text[:120]}")
    assert not wrong, "\n".join(wrong)
