"""Helpers shared by the money tests: approved tutors, direct credit grants, projection catch-up, ledger reads,
signed Stripe webhooks and small HTTP assertions."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import redis
from eventsourcing.application import AggregateNotFoundError

from application.accounts import Account
from application.clock import Clock
from application.money import Money
from application.settings import Settings
from domain.credits import CreditAccount
from projections import follower, generations
from projections.runner import Projection, Runner
from tests.support.http import PROBLEMS, media_type, ok, problem, where  # noqa: F401  (re-exported for this folder's tests)
from tests.support.system import wait_until

API = "/api/v1"
WEBHOOK_SECRET = "whsec_money_tests_" + "s" * 24
STRIPE_KEY = "sk_test_x"


# ------------------------------------------------------------------------------------------------- clocks


class ManualClock(Clock):
    """Business time that only moves when the test moves it."""

    def __init__(self, start: datetime) -> None:
        super().__init__()
        self.t = start

    def now(self) -> datetime:
        return self.t

    def advance(self, delta: timedelta) -> None:
        self.t = self.t + delta


def redis_clock(settings: Settings) -> Clock:
    """The shared test clock the API processes use (no caching, so a PUT /admin/test-clock shows at once)."""
    return Clock(settings.redis_url, True, cache_s=0.0)


# ------------------------------------------------------------------------------------------------- tutors


def approve_tutor(settings: Settings, tutor_id: UUID, amount: int = 4000, currency: str = "USD") -> None:
    """Drive a tutor's profile to approved: builder steps (80 %), submit, admin approve."""
    from application.catalog import Catalog
    from application.tutoring import Tutoring

    subject, _ = Catalog(settings).create_subject(f"Maths {secrets.token_hex(3)}", "science")
    tutoring = Tutoring(settings)
    me = Account(tutor_id, "tutor")
    view, _ = tutoring.update_profile(
        me,
        {
            "personal": {"bio": "I teach maths.", "location": "Berlin", "languages": ["en"]},
            "experience": {"years": 7, "education": "MSc", "certifications": []},
            "subjects": [subject["id"]],
            "hourly_rate": {"amount": amount, "currency": currency},
            "availability": {"timezone": "Europe/Berlin", "weekly": [{"weekday": 1, "start": "09:00", "end": "17:00"}]},
        },
    )
    assert view["completeness"] == 80, view
    tutoring.submit(me)
    view, _ = tutoring.decide(tutor_id, "approve")
    assert view["status"] == "approved", view


# ------------------------------------------------------------------------------------------------ credits


def account(app: Money, student_id: UUID) -> CreditAccount:
    try:
        a: Any = app.repository.get(CreditAccount.create_id(student_id))
        return a  # type: ignore[no-any-return]
    except AggregateNotFoundError:
        return CreditAccount(student_id=student_id)


def grant(
    app: Money,
    student_id: UUID,
    tutor_id: UUID,
    minutes: int,
    amount: int,
    expires_at: datetime | None = None,
    lot_id: str | None = None,
    currency: str = "USD",
) -> tuple[str, int]:
    """Grant a lot the way the payment webhook does (CreditAccount.grant saved through the app)."""
    lot = lot_id or str(uuid.uuid4())
    acc = account(app, student_id)
    expires = expires_at or app.now() + timedelta(days=180)
    assert acc.grant(lot, lot, str(tutor_id), minutes, amount, currency, expires)
    return lot, app.record(acc)


def refund_lot(app: Money, student_id: UUID, lot_id: str, amount: int | None = None) -> tuple[int, int, int]:
    """CreditAccount.refund saved through the app; (minutes, amount, position)."""
    acc = account(app, student_id)
    minutes, value = acc.refund(lot_id, amount)
    return minutes, value, app.record(acc)


# ---------------------------------------------------------------------------------------------- projections
# The PostgreSQL server may be shared and short of connection slots: the helpers keep one connection per
# database (and one runner per projection generation) for the whole test, and retry a refused connect.

_CONNS: dict[str, psycopg.Connection[Any]] = {}
_RUNNERS: dict[tuple[str, str, int], Runner] = {}


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """psycopg.connect, waiting a little when the server has no free connection slot."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return psycopg.connect(dsn, **kwargs)
        except psycopg.OperationalError as e:
            if "too many clients" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # the shared server's connection slots are few: retry until one frees, bounded above


def conn_for(dsn: str) -> psycopg.Connection[Any]:
    c = _CONNS.get(dsn)
    if c is None or c.closed or c.broken:
        c = _CONNS[dsn] = connect(dsn, autocommit=True)
    return c


def close_helpers() -> None:
    for r in _RUNNERS.values():
        r.close()
    _RUNNERS.clear()
    for c in _CONNS.values():
        c.close()
    _CONNS.clear()


def active_generation(dsn: str, name: str) -> int:
    gen = generations.active_generation(conn_for(dsn), name)
    assert gen is not None, f"projection {name} has no active generation"
    return gen[0]


def catch_up(dsn: str, *projections: Projection) -> None:
    """Bring the active generation of each projection up to the head of the log."""
    for p in projections:
        key = (dsn, p.name, active_generation(dsn, p.name))
        runner = _RUNNERS.get(key)
        if runner is None:
            for old in [k for k in _RUNNERS if k[:2] == key[:2]]:  # a rebuild retired that generation
                _RUNNERS.pop(old).close()
            runner = _RUNNERS[key] = Runner(dsn, p, key[2])
            runner._conn = connect(dsn, row_factory=psycopg.rows.dict_row)
        runner.catch_up()


def wait_projected(dsn: str, names: tuple[str, ...] = ("ledger", "student_credits"), timeout: float = 15.0) -> int:
    """With projector threads running (never run a Runner beside them on the same generation): wait until the
    active generations of `names` have reached the head of the log; return that head."""

    def reached() -> int | None:
        h = head(dsn)
        low = scalar(
            dsn,
            "SELECT min(position) FROM projection_tracking WHERE state = 'active' AND name = ANY(%s)",
            (list(names),),
        )
        return h if low is not None and low >= h else None

    return wait_until(reached, timeout=timeout, what=f"projections {names} at the head")  # type: ignore[no-any-return]


def scalar(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn_for(dsn).execute(sql, params).fetchone()
    return row[0] if row else None


def rows(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return list(conn_for(dsn).execute(sql, params).fetchall())


def head(dsn: str) -> int:
    return int(scalar(dsn, "SELECT coalesce(max(notification_id), 0) FROM tutorconnect_events"))


def count_events(dsn: str, event: str, needle: str | None = None, aggregate_id: str | UUID | None = None) -> int:
    """How many stored events of a type (`CreditAccount.CreditGranted`), optionally whose JSON mentions `needle`
    or of one aggregate."""
    sql = "SELECT count(*) FROM tutorconnect_events WHERE topic LIKE %s"
    params: list[Any] = ["%:" + event]
    if needle is not None:
        sql += " AND convert_from(state, 'UTF8') LIKE %s"
        params.append(f"%{needle}%")
    if aggregate_id is not None:
        sql += " AND originator_id = %s"
        params.append(UUID(str(aggregate_id)))
    return int(scalar(dsn, sql, tuple(params)))


def ledger_balance(dsn: str, account_name: str) -> int:
    """The live ledger balance of an account in its normal direction (0 if it has no postings)."""
    return int(scalar(dsn, "SELECT coalesce(sum(signed), 0) FROM ledger_postings WHERE account = %s", (account_name,)))


# ------------------------------------------------------------------------------------------ module stacks


@contextlib.contextmanager
def module_database(pg_admin_url: str, redis_server: str, redis_db: int, **overrides: Any) -> Iterator[Settings]:
    """A prepared database of its own, a Redis db of its own and the projector threads, for a whole module."""
    from application.store import close_all
    from projections import all_projections
    from tests.support.system import make_settings
    from workers.processes import prepare

    name = "tc_test_money_mod_" + secrets.token_hex(4)
    with connect(pg_admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_admin_url.rsplit("/", 1)[0] + "/" + name
    redis_url = f"{redis_server}/{redis_db}"
    redis.Redis.from_url(redis_url).flushdb()
    settings = make_settings(dsn, redis_url, **{"pool_size": 3, "stripe_webhook_secret": WEBHOOK_SECRET, **overrides})
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        prepare(settings)
        threads = follower.follow_all(dsn, all_projections(), stop)
        yield settings
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        close_helpers()
        close_all()
        with contextlib.suppress(psycopg.Error), connect(pg_admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        redis.Redis.from_url(redis_url).flushdb()


@contextlib.contextmanager
def paid_api(settings: Settings, localstripe: str, log: Path, hook_name: str) -> Iterator[str]:
    """A real `tutorconnect api` process over `settings` with payments through localstripe, which posts its signed
    webhooks to this server (registered under `hook_name`, replaced by the next module that registers it)."""
    from tests.support.system import server_env, spawn, stop_process
    from workers.embedded import free_port, wait_http

    port = free_port()
    env = server_env(
        settings, STRIPE_API_KEY=STRIPE_KEY, STRIPE_API_BASE=localstripe, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        DB_POOL_SIZE="3",
    )  # fmt: skip
    proc = spawn(["api", "--host", "127.0.0.1", "--port", str(port)], env, log)
    root = f"http://127.0.0.1:{port}"
    try:
        wait_http(root, proc, log)
        httpx.post(
            f"{localstripe}/_config/webhooks/{hook_name}",
            data={"url": root + f"{API}/webhooks/stripe", "secret": WEBHOOK_SECRET},
        ).raise_for_status()
        yield root
    finally:
        stop_process(proc)


# ---------------------------------------------------------------------------------------------- webhooks


def signed_webhook(
    payload: dict[str, Any] | bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """A body and headers signed like Stripe: `t=<ts>,v1=<hex hmac_sha256(secret, "<ts>.<body>")>`."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    sig = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={ts},v1={sig}", "Content-Type": "application/json"}


def stripe_event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": kind,
        "data": {"object": obj},
    }


def succeeded_event(payment_intent_id: str, amount: int, currency: str = "usd") -> dict[str, Any]:
    return stripe_event(
        "payment_intent.succeeded",
        {
            "id": payment_intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount,
            "currency": currency,
            "status": "succeeded",
        },
    )


def failed_event(payment_intent_id: str, amount: int) -> dict[str, Any]:
    return stripe_event(
        "payment_intent.payment_failed",
        {
            "id": payment_intent_id,
            "object": "payment_intent",
            "amount": amount,
            "status": "requires_payment_method",
            "last_payment_error": {"message": "Your card was declined."},
        },
    )


def refunded_event(payment_intent_id: str, amount: int, amount_refunded: int) -> dict[str, Any]:
    return stripe_event(
        "charge.refunded",
        {
            "id": "ch_" + secrets.token_hex(10),
            "object": "charge",
            "amount": amount,
            "amount_refunded": amount_refunded,
            "payment_intent": payment_intent_id,
            "refunded": amount_refunded >= amount,
        },
    )


# ------------------------------------------------------------------------------------------------- http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
