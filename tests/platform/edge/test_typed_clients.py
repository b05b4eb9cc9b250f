"""Typed clients: the server's answers match /schema/openapi.json, and a client generated from it works.

One real `tutorconnect api` process for the module, with the projectors, the `stripe` SDK against localstripe (which
posts signed webhooks to the API) and a world made through the API: an approved tutor, a student who bought a
package, booked and messaged, a finance and an admin account.

- Every response the world's requests got, and every GET route called with the world's real ids as each of the
  four roles, is checked with schemathesis' `response_schema_conformance` and `content_type_conformance`.
- Schemathesis then generates requests for every operation from the schema as a student and as an admin, and
  checks the same two, and that no answer is a 5xx.
- openapi-python-client generates a Python client from the live document; register -> login -> search -> buy ->
  book -> confirm run through it with its typed response objects."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import stripe
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from application.settings import Settings
from tests.money.support import STRIPE_KEY, module_database, paid_api
from tests.support.api import PASSWORD, register, staff_login
from tests.support.http import ok
from tests.support.system import wait_until
from tests.support.world import ALL_WEEK, approve_tutor

API = "/api/v1"
CHECKS = [response_schema_conformance, content_type_conformance]
GOOD_CARD = "4242424242424242"


@dataclass
class World:
    root: str
    settings: Settings
    stripe_base: str
    tokens: dict[str, str] = field(default_factory=dict)  # role -> access token
    ids: dict[str, str] = field(default_factory=dict)  # path parameter name -> a real id
    seen: list[httpx.Response] = field(default_factory=list)  # every answer the world's requests got


class Conformance:
    """Checks answers against the live OpenAPI document with schemathesis."""

    def __init__(self, root: str) -> None:
        self.schema = schemathesis.openapi.from_url(f"{root}/schema/openapi.json")
        self.root = root
        self.failures: list[str] = []

    def check(self, r: httpx.Response) -> None:
        """Check one answer against its operation (an answer to a path outside the document is a failure)."""
        path = r.request.url.path
        found = self.schema.find_operation_by_path(r.request.method, path)
        if found is None:
            self.failures.append(f"{r.request.method} {path}: no operation in the document")
            return
        case = found.Case(method=r.request.method)
        try:
            case.validate_response(r, checks=CHECKS)
        except Exception as e:  # schemathesis raises one FailureGroup per answer: collect them all
            self.failures.append(f"{r.request.method} {r.request.url} -> {r.status_code}: {e}"[:2000])


def _pay(stripe_base: str, payment_intent_id: str) -> None:
    """Pay like a card holder: attach a card to the PaymentIntent and confirm it (localstripe posts the webhook)."""
    sc = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stripe_base})
    pm = sc.payment_methods.create(
        params={"type": "card", "card": {"number": GOOD_CARD, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    sc.payment_intents.update(payment_intent_id, params={"payment_method": pm.id})
    sc.payment_intents.confirm(payment_intent_id)


def _slot(days: int, hour: int) -> datetime:
    d = datetime.now(UTC) + timedelta(days=days)
    return d.replace(hour=hour, minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def world(
    pg_admin_url: str, redis_server: str, localstripe: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with module_database(
        pg_admin_url, redis_server, 5, stripe_api_key=STRIPE_KEY, stripe_api_base=localstripe
    ) as settings_:
        log: Path = tmp_path_factory.mktemp("typed-api") / "api.log"
        with paid_api(settings_, localstripe, log, "typed-clients") as root:
            w = World(root, settings_, localstripe)
            with httpx.Client(base_url=root, timeout=30, event_hooks={"response": [_keep(w)]}) as http:
                _populate(w, http)
            yield w


def _keep(w: World) -> Any:
    def hook(r: httpx.Response) -> None:
        r.read()
        w.seen.append(r)

    return hook


def _populate(w: World, http: httpx.Client) -> None:
    """The world, through the API (subject and tutor approval by the applications, as tests/bookings do)."""

    def auth(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {w.tokens[role]}"}

    w.tokens["admin"] = staff_login(http, w.settings, "admin")["access_token"]
    w.tokens["finance"] = staff_login(http, w.settings, "finance")["access_token"]
    tutor = register(http, "tutor", full_name="Tia Tutor")
    student = register(http, "student", full_name="Sam Student")
    w.tokens["tutor"], w.tokens["student"] = tutor["access_token"], student["access_token"]
    tutor_id, student_id = tutor["user"]["id"], student["user"]["id"]
    subject_id, _ = approve_tutor(w.settings, uuid.UUID(tutor_id), weekly=ALL_WEEK, amount=4000)
    ok(http.post(f"{API}/student/favorites/{tutor_id}", headers=auth("student")))
    bought = ok(
        http.post(f"{API}/packages/purchases", json={"tutor_id": tutor_id, "lessons": 5}, headers=auth("student")),
        201,
    )
    _pay(w.stripe_base, bought["payment_intent_id"])
    wait_until(
        lambda: ok(http.get(f"{API}/packages/purchases/{bought['id']}", headers=auth("student")))["status"] == "paid",
        timeout=20,
        what="the purchase paid",
    )
    wait_until(
        lambda: ok(http.get(f"{API}/student/credits", headers=auth("student")))["items"],
        timeout=20,
        what="credit granted",
    )
    booking = ok(
        http.post(
            f"{API}/bookings",
            json={"tutor_id": tutor_id, "subject_id": subject_id, "start": _slot(3, 10).isoformat(),
                  "duration_minutes": 60, "note": "fractions"},
            headers=auth("student"),
        ),
        201,
    )  # fmt: skip
    ok(http.post(f"{API}/bookings/{booking['id']}/confirm", headers=auth("tutor")))
    other = ok(
        http.post(
            f"{API}/bookings",
            json={"tutor_id": tutor_id, "subject_id": subject_id, "start": _slot(4, 10).isoformat(),
                  "duration_minutes": 30},
            headers=auth("student"),
        ),
        201,
    )  # fmt: skip
    ok(http.post(f"{API}/bookings/{other['id']}/cancel", json={"reason": "moved"}, headers=auth("student")))
    thread = ok_any(http.post(f"{API}/threads", json={"participant_id": tutor_id}, headers=auth("student")), (200, 201))
    message = ok(
        http.post(f"{API}/threads/{thread['id']}/messages", json={"body": "See you"}, headers=auth("student")), 201
    )
    ok(http.post(f"{API}/threads/{thread['id']}/read", json={"up_to_message_id": message["id"]}, headers=auth("tutor")))
    notes = wait_until(
        lambda: ok(http.get(f"{API}/notifications", headers=auth("tutor")))["items"], timeout=15, what="a notification"
    )
    feed = ok(http.post(f"{API}/me/calendar-feed", headers=auth("student")), 201)["url"]
    w.ids.update(
        feed=feed.rsplit("/", 1)[1],
        tutor_id=tutor_id,
        student_id=student_id,
        user_id=student_id,
        subject_id=subject_id,
        booking_id=booking["id"],
        aggregate_id=booking["id"],
        purchase_id=bought["id"],
        thread_id=thread["id"],
        message_id=message["id"],
        notification_id=notes[0]["id"],
        account="platform_commission",
        dataset="bookings",
    )


def ok_any(r: httpx.Response, statuses: tuple[int, ...]) -> Any:
    assert r.status_code in statuses, (r.status_code, r.text)
    return r.json()


def test_the_worlds_answers_match_the_document(world: World) -> None:
    conformance = Conformance(world.root)
    assert world.seen, "the world made no requests"
    for r in world.seen:
        if r.request.url.path.startswith(API):
            conformance.check(r)
    assert conformance.failures == [], "\n\n".join(conformance.failures)


def test_every_get_answers_as_its_schema_says_for_every_role(world: World) -> None:
    """Every GET of the document with the world's ids, as each role: 2xx bodies match their schemas, the rest are
    problems (also in the document)."""
    conformance = Conformance(world.root)
    called = 0
    with httpx.Client(base_url=world.root, timeout=30) as http:
        for operation in conformance.schema.get_all_operations():
            op = operation.ok()
            if op.method.upper() != "GET" or not op.path.startswith(API):
                continue
            missing = [name for name in re.findall(r"{(\w+)}", op.path) if name not in world.ids]
            assert not missing, f"{op.path}: the world has no id for {missing}"
            path = re.sub(r"{(\w+)}", lambda m: world.ids[m.group(1)], op.path)
            for token in world.tokens.values():
                r = http.get(path, headers={"Authorization": f"Bearer {token}"})
                conformance.check(r)
                called += 1
    assert called > 100, called
    assert conformance.failures == [], "\n\n".join(conformance.failures)


@pytest.mark.parametrize("role", ["student", "admin"])
def test_generated_requests_get_answers_that_match_the_document(world: World, role: str) -> None:
    """Schemathesis' own requests (from each operation's parameters and bodies), as a student and as an admin."""
    schema = schemathesis.openapi.from_url(f"{world.root}/schema/openapi.json")
    headers = {"Authorization": f"Bearer {world.tokens[role]}"}
    failures: list[str] = []
    statuses: list[int] = []
    for operation in schema.get_all_operations():
        op = operation.ok()
        if op.path.endswith(("/auth/logout", "/test-clock")):  # would end this role's session or move time
            continue

        @given(case=op.as_strategy())
        @settings(
            max_examples=6,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            r = case.call(base_url=world.root, headers=headers)
            statuses.append(r.status_code)
            try:
                case.validate_response(r, checks=[*CHECKS, not_a_server_error])
            except Exception as e:
                failures.append(f"{case.method} {case.formatted_path} -> {r.status_code}: {e}"[:1500])

        run()
    assert len(statuses) > 200 and any(200 <= s < 300 for s in statuses), sorted(set(statuses))
    assert failures == [], f"{len(failures)} answers do not match:\n\n" + "\n\n".join(failures[:20])


def _generate_client(root: str, out: Path) -> Any:
    """openapi-python-client's package for the live document, imported."""
    config = out.parent / "client-config.yaml"
    config.write_text("project_name_override: tc_client\npackage_name_override: tc_client\npost_hooks: []\n")
    subprocess.run(
        [str(Path(sys.executable).with_name("openapi-python-client")), "generate", "--url",
         f"{root}/schema/openapi.json", "--meta", "none", "--output-path", str(out), "--config", str(config)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    sys.path.insert(0, str(out.parent))
    return importlib.import_module("tc_client")


def test_the_checks_catch_a_wrong_answer(world: World) -> None:
    """The checks above can fail: a booking without its fields, and a body served as the wrong type."""
    conformance = Conformance(world.root)
    url = f"{world.root}{API}/bookings/{world.ids['booking_id']}"
    request = httpx.Request("GET", url)
    conformance.check(httpx.Response(200, json={"id": 5}, request=request))
    conformance.check(httpx.Response(200, text="id,status", headers={"content-type": "text/csv"}, request=request))
    assert len(conformance.failures) == 2, conformance.failures


def test_a_generated_client_walks_from_register_to_confirm(world: World, tmp_path: Path) -> None:
    """openapi-python-client's client for the live document: every answer below is one of its typed models."""
    tc = _generate_client(world.root, tmp_path / "tc_client")
    m = importlib.import_module("tc_client.models")
    call = {name.split(".")[1]: _operation(tc, name) for name in (
        "identity.identity_register", "identity.identity_login", "tutors.tutors_search", "money.money_buy",
        "money.money_purchase", "money.money_credits", "bookings.bookings_request_booking", "bookings.bookings_confirm",
    )}  # fmt: skip
    anonymous = tc.Client(base_url=world.root, raise_on_unexpected_status=True)
    email = f"generated-{uuid.uuid4().hex[:10]}@example.test"
    body = m.RegisterRequest(email=email, password=PASSWORD, full_name="Gene Rated", role=m.RegisterRequestRole.STUDENT)
    registered = call["identity_register"](client=anonymous, body=body)
    assert isinstance(registered, m.RegistrationOut) and registered.user.email == email
    tokens = call["identity_login"](client=anonymous, body=m.LoginRequest(email=email, password=PASSWORD))
    assert isinstance(tokens, m.TokenPairOut) and tokens.expires_in == 1800
    student = tc.AuthenticatedClient(base_url=world.root, token=tokens.access_token, raise_on_unexpected_status=True)
    tutor_client = tc.AuthenticatedClient(
        base_url=world.root, token=world.tokens["tutor"], raise_on_unexpected_status=True
    )

    page = call["tutors_search"](client=anonymous, sort="price")
    assert isinstance(page, m.PublicTutorPage)
    tutor = next(t for t in page.items if str(t.id) == world.ids["tutor_id"])
    assert isinstance(tutor, m.PublicTutorOut) and isinstance(tutor.hourly_rate, m.MoneyOut)
    assert tutor.hourly_rate.amount == 4000

    bought = call["money_buy"](
        client=student, body=m.PurchaseIn(tutor_id=tutor.id, lessons=m.PurchaseInLessons.VALUE_5)
    )
    assert isinstance(bought, m.NewPurchaseOut) and bought.price.amount == 5 * 4000
    _pay(world.stripe_base, bought.payment_intent_id)
    paid = wait_until(
        lambda: (p := call["money_purchase"](bought.id, client=student)).status == m.PurchaseOutStatus.PAID and p,
        timeout=20,
        what="the purchase paid",
    )
    assert isinstance(paid, m.PurchaseOut)
    credit = wait_until(
        lambda: (c := call["money_credits"](client=student)).items and c, timeout=20, what="credit granted"
    )
    assert isinstance(credit, m.StudentCreditPage) and credit.items[0].minutes_available == 300

    start = _slot(5, 12)
    booking = call["bookings_request_booking"](
        client=student,
        body=m.BookingIn(tutor_id=tutor.id, subject_id=tutor.subjects[0].id, start=start,
                         duration_minutes=m.BookingInDurationMinutes.VALUE_60, note="from a generated client"),
    )  # fmt: skip
    assert isinstance(booking, m.BookingOut) and booking.status == m.BookingOutStatus.PENDING
    assert booking.start == start and isinstance(booking.policy, m.BookingPolicyOut)
    confirmed = call["bookings_confirm"](booking.id, client=tutor_client)
    assert isinstance(confirmed, m.BookingOut) and confirmed.status == m.BookingOutStatus.CONFIRMED


def _operation(tc: Any, dotted: str) -> Any:
    """The generated module's blocking call (`sync`) of one operation."""
    area, name = dotted.split(".")
    return importlib.import_module(f"{tc.__name__}.api.{area}.{name}").sync
