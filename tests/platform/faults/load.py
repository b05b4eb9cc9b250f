"""A steady mixed load over HTTP (registrations, purchases paid by signed webhooks, bookings, messages, reads),
every request with its own X-Request-ID, and the checks a fault run ends with: nothing acknowledged lost or
doubled, no 500, no hang, every read model at the head, the ledger reconciled."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from tests.platform.faults.stack import WEBHOOK_SECRET, Stack
from tests.support.api import PASSWORD
from tests.support.system import wait_until

API = "/api/v1"
TIMEOUT_S = 15.0  # a request that takes longer has hung
# the event each acknowledged command must have recorded exactly once, under its X-Request-ID
PRIMARY = {
    "register": "User.Registered",
    "book": "Booking.Requested",
    "message": "Thread.MessagePosted",
    "attach": "Thread.MessagePosted",
    "purchase": "Purchase.Created",
}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 56
CONNECTION_ERRORS = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


@dataclass
class World:
    """Who the load acts as: approved tutors, students with credit and a thread with the first tutor."""

    tutors: list[str]
    students: list[dict[str, Any]]  # {id, token, thread}
    subject: str
    admin: str  # an admin's access token


@dataclass
class Outcome:
    kind: str
    rid: str
    status: int  # 0: no response
    error: str
    at: float
    seconds: float
    data: dict[str, Any] = field(default_factory=dict)


class Load:
    """`clients` threads sending a mixed load, each about every `pace_s` seconds, until stopped."""

    KINDS = ("register", "book", "book", "message", "message", "attach", "purchase", "read", "read")

    def __init__(self, stack: Stack, world: World, clients: int = 6, pace_s: float = 0.05) -> None:
        self.stack, self.world, self.clients, self.pace_s = stack, world, clients, pace_s
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        for i in range(self.clients):
            t = threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(TIMEOUT_S * 4)

    def _run(self, i: int) -> None:
        rnd = random.Random(i * 7919 + int(time.time()))
        with httpx.Client(base_url=self.stack.base, timeout=TIMEOUT_S) as http:
            while not self._stop.is_set():
                kind = rnd.choice(self.KINDS)
                student = rnd.choice(self.world.students)
                try:
                    getattr(self, "_" + kind)(http, rnd, student)
                except Exception as e:  # a bug of the load itself: recorded, and the run fails on it
                    self._note(Outcome(kind, "", -1, f"load error {type(e).__name__}: {e}", time.monotonic(), 0))
                self._stop.wait(self.pace_s)

    # ------------------------------------------------------------------------------------------- requests

    def _send(self, http: httpx.Client, kind: str, method: str, path: str, **kw: Any) -> Outcome:
        rid = uuid.uuid4().hex
        headers = {**kw.pop("headers", {}), "X-Request-ID": rid}
        start = time.monotonic()
        try:
            r = http.request(method, API + path, headers=headers, **kw)
            body: Any = r.json() if r.headers.get("content-type", "").endswith("json") and r.content else {}
            out = Outcome(kind, rid, r.status_code, "", start, time.monotonic() - start,
                          body if isinstance(body, dict) else {"items": body})  # fmt: skip
        except httpx.HTTPError as e:
            out = Outcome(kind, rid, 0, type(e).__name__, start, time.monotonic() - start)
        self._note(out)
        return out

    def _note(self, out: Outcome) -> None:
        with self._lock:
            self.outcomes.append(out)

    def _register(self, http: httpx.Client, rnd: random.Random, _: dict[str, Any]) -> None:
        body = {"email": f"load-{secrets.token_hex(6)}@example.test", "password": PASSWORD,
                "full_name": "Load Student", "role": "student"}  # fmt: skip
        self._send(http, "register", "POST", "/auth/register", json=body)

    def _book(self, http: httpx.Client, rnd: random.Random, student: dict[str, Any]) -> None:
        day = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=rnd.randint(2, 80))
        start = day + timedelta(minutes=30 * rnd.randint(0, 47))
        body = {"tutor_id": rnd.choice(self.world.tutors), "subject_id": self.world.subject, "duration_minutes": 30,
                "start": start.isoformat().replace("+00:00", "Z"), "note": "fault load"}  # fmt: skip
        self._send(http, "book", "POST", "/bookings", json=body, headers=_bearer(student))

    def _message(self, http: httpx.Client, rnd: random.Random, student: dict[str, Any]) -> None:
        body = {"body": f"hello {secrets.token_hex(4)}"}
        self._send(http, "message", "POST", f"/threads/{student['thread']}/messages", json=body,
                   headers=_bearer(student))  # fmt: skip

    def _attach(self, http: httpx.Client, rnd: random.Random, student: dict[str, Any]) -> None:
        """Announce an attachment, PUT it to S3 (the client's own request: it may fail while S3 is away), send a
        message carrying it."""
        a = self._send(http, "announce", "POST", "/attachments", headers=_bearer(student),
                       json={"filename": "pic.png", "content_type": "image/png", "size": len(PNG)})  # fmt: skip
        if a.status != 201:
            return
        try:
            httpx.put(a.data["upload_url"], content=PNG, headers={"Content-Type": "image/png"}, timeout=3)
        except httpx.HTTPError:
            pass  # S3 is away: the message below is refused (upload-missing) or answered 503
        body = {"body": "see attached", "attachment_ids": [a.data["id"]]}
        self._send(http, "attach", "POST", f"/threads/{student['thread']}/messages", json=body,
                   headers=_bearer(student))  # fmt: skip

    def _read(self, http: httpx.Client, rnd: random.Random, student: dict[str, Any]) -> None:
        path = rnd.choice(["/student/credits", "/bookings", "/threads", "/notifications"])
        self._send(http, "read", "GET", path, headers=_bearer(student))

    def _purchase(self, http: httpx.Client, rnd: random.Random, student: dict[str, Any]) -> None:
        out = self._send(http, "purchase", "POST", "/packages/purchases",
                         json={"tutor_id": rnd.choice(self.world.tutors), "lessons": 1},
                         headers=_bearer(student))  # fmt: skip
        if out.status != 201:
            return
        # Stripe delivers `payment_intent.succeeded` until it gets a 2xx, sometimes more than once: so do we.
        event = succeeded(out.data["payment_intent_id"], int(out.data["price"]["amount"]))
        for _ in range(2):
            deadline = time.monotonic() + 40
            while True:
                w = self._send(http, "webhook", "POST", "/webhooks/stripe", **signed(event))
                w.data = {**w.data, "purchase_id": out.data["id"]}
                if 200 <= w.status < 300 or time.monotonic() > deadline or self._stop.is_set():
                    break
                time.sleep(0.5)  # Stripe backs off between deliveries; a short wait is enough here


def _bearer(student: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {student['token']}"}


def succeeded(payment_intent_id: str, amount: int) -> dict[str, Any]:
    return {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": payment_intent_id,
                "object": "payment_intent",
                "amount": amount,
                "amount_received": amount,
                "currency": "usd",
                "status": "succeeded",
            }
        },
    }


def signed(event: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(event).encode()
    ts = int(time.time())
    sig = hmac.new(WEBHOOK_SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"content": body, "headers": {"Stripe-Signature": f"t={ts},v1={sig}", "Content-Type": "application/json"}}


# ----------------------------------------------------------------------------------------------- checks


def summary(outcomes: list[Outcome]) -> str:
    c = Counter((o.kind, o.status if o.status else o.error) for o in outcomes)
    return ", ".join(f"{k}:{s}={n}" for (k, s), n in sorted(c.items(), key=str))


def check_answers(outcomes: list[Outcome], connection_errors: bool) -> None:
    """Every request got a clear answer in time: no 500 (503 is the answer while a dependency is down), no hang,
    and no dropped connection unless the API process itself was killed."""
    assert outcomes, "the load sent nothing"
    broken = [o for o in outcomes if o.status == -1]
    assert not broken, broken[:3]
    bad = [o for o in outcomes if o.status >= 500 and o.status != 503]
    assert not bad, f"server errors: {[(o.kind, o.status, o.data) for o in bad[:5]]}; {summary(outcomes)}"
    hung = [o for o in outcomes if o.error.endswith("Timeout") or o.seconds >= TIMEOUT_S]
    assert not hung, f"requests that hung: {[(o.kind, o.error, round(o.seconds, 1)) for o in hung[:5]]}"
    if not connection_errors:
        dropped = [o for o in outcomes if o.status == 0]
        assert not dropped, f"dropped connections: {[(o.kind, o.error) for o in dropped[:5]]}"
    for o in outcomes:  # every error is a problem document, not an HTML page or an empty body
        if 400 <= o.status:
            assert o.data.get("type", "").startswith("https://tutorconnect.dev/problems/"), (o.kind, o.status, o.data)


def check_exactly_once(stack: Stack, outcomes: list[Outcome]) -> None:
    """Every acknowledged command is in the log exactly once; every paid purchase granted its credit once."""
    acked = [o for o in outcomes if o.kind in PRIMARY and 200 <= o.status < 300]
    assert acked, f"no command was acknowledged: {summary(outcomes)}"
    recorded = stack.events_by_correlation([o.rid for o in acked])
    for o in acked:
        n = recorded[o.rid].count(PRIMARY[o.kind])
        assert n == 1, f"{o.kind} {o.rid} acknowledged ({o.status}) but recorded {n} times: {recorded[o.rid]}"
    paid = {o.data["purchase_id"] for o in outcomes if o.kind == "webhook" and 200 <= o.status < 300}
    with psycopg.connect(stack.dsn) as c:
        for pid in paid:
            assert stack.events_of(pid).count("Purchase.Paid") == 1, (pid, stack.events_of(pid))
            row = c.execute(
                "SELECT count(*) FROM tutorconnect_events WHERE topic LIKE %s"
                " AND convert_from(state, 'UTF8')::jsonb ->> 'lot_id' = %s",
                ("%CreditGranted", pid),
            ).fetchone()
            assert row is not None and row[0] == 1, f"purchase {pid}: {row} credit grants"


def check_recovered(stack: Stack, world: World, outcomes: list[Outcome], since: float) -> None:
    """After the fault every kind of command succeeds again, the worker does its scheduled work, the read models
    reach the head (none stopped) and the ledger reconciles."""
    after = Counter(o.kind for o in outcomes if o.at >= since and 200 <= o.status < 300)
    for kind in ("register", "book", "message", "attach", "purchase", "read"):
        assert after[kind] > 0, (
            f"no {kind} succeeded after the fault: {summary([o for o in outcomes if o.at >= since])}"
        )
    check_worker(stack, world)
    wait_until(stack.caught_up, 30, "every read model at the head of the log", every=0.3)
    from projections.reconcile import reconcile

    result = reconcile(stack.dsn)
    assert result["ok"], result


def check_worker(stack: Stack, world: World) -> None:
    """The worker and its sweeper work: a lesson of a tutor whose account is closed is withdrawn within seconds."""
    from uuid import UUID

    from application.money import Money
    from application.settings import Settings
    from application.store import close_all
    from tests.support.world import approve_tutor, grant

    settings = Settings.from_env(stack.env)
    student = world.students[0]
    with httpx.Client(base_url=stack.base + API, timeout=TIMEOUT_S) as http:
        r = http.post("/auth/register", json={"email": f"doomed-{secrets.token_hex(5)}@example.test",
                      "password": PASSWORD, "full_name": "Doomed Tutor", "role": "tutor"})  # fmt: skip
        assert r.status_code == 201, r.text
        tutor = r.json()["user"]["id"]
        try:
            approve_tutor(settings, UUID(tutor), subject_id=world.subject,
                          weekly=[{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)])  # fmt: skip
            grant(Money(settings), UUID(student["id"]), UUID(tutor), 600, 30_000)
        finally:
            close_all()
        start = (datetime.now(UTC) + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
        r = http.post("/bookings", headers=_bearer(student), json={
            "tutor_id": tutor, "subject_id": world.subject, "duration_minutes": 60,
            "start": start.isoformat().replace("+00:00", "Z")})  # fmt: skip
        assert r.status_code == 201, r.text
        booking = r.json()["id"]
        admin = {"Authorization": f"Bearer {world.admin}"}
        r = http.patch(f"/admin/users/{tutor}", json={"is_active": False}, headers=admin)
        assert r.status_code == 200, r.text

        def withdrawn() -> bool:
            got = http.get(f"/bookings/{booking}", headers=_bearer(student))
            return got.status_code == 200 and got.json()["status"] == "cancelled"

        wait_until(withdrawn, 30, "the worker withdrawing the lesson of a deactivated tutor", every=0.5)
