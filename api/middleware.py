"""ASGI middleware: request id and security headers, rate limits, and Idempotency-Key replay."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from typing import Any

import psycopg
from Crypto.Cipher import AES
from litestar import Request
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from psycopg_pool import AsyncConnectionPool

from api.counter import CounterError, HitCounter, PositionKeeper
from api.services import Breaker
from application import context
from application.settings import Settings
from application.tokens import verify_access
from domain.errors import Unauthenticated

Headers = list[tuple[bytes, bytes]]
PREFIX = "/api/v1"
COMMAND_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Token-issuing routes are not replayed: a replay would need the tokens stored, and secrets stay out of storage.
TOKEN_ROUTES = PREFIX + "/auth/"
NOT_REPLAYED = (TOKEN_ROUTES,)
UNLIMITED = (PREFIX + "/webhooks/",)


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return v.decode("latin-1")
    return None


def _client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def _problem(status: int, slug: str, title: str, detail: str, extra_headers: Headers = ()) -> tuple[Headers, bytes]:
    body = json.dumps(
        {"type": f"https://tutorconnect.dev/problems/{slug}", "title": title, "status": status, "detail": detail}
    ).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    return headers, body


async def _send_problem(
    scope: Scope, send: Send, status: int, slug: str, title: str, detail: str, extra: Headers = ()
) -> None:
    headers, body = _problem(status, slug, title, detail, extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _bearer_subject(scope: Scope, secret: str) -> str | None:
    auth = _header(scope, b"authorization")
    if not auth or not auth.lower().startswith("bearer "):
        return None
    try:
        return verify_access(secret, auth[7:].strip()).user_id or None
    except Unauthenticated:
        return None


def _request_id(scope: Scope) -> str:
    """The request's id: the one already chosen for this scope, else the client's if usable, else a new one."""
    state = scope.setdefault("state", {})
    if not state.get("request_id"):
        rid = _header(scope, b"x-request-id") or ""
        if not rid or len(rid) > 200 or not rid.isprintable():
            rid = str(uuid.uuid4())
        state["request_id"] = rid
    return str(state["request_id"])


# What every response says about itself (OWASP secure headers, as they fit a JSON API and its docs page):
# JSON and problems may run nothing and be framed by nobody; the page (/schema) runs only its own scripts.
API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
PAGE_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
    b" font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
STAMPED = (
    b"x-request-id",
    b"x-content-type-options",
    b"referrer-policy",
    b"content-security-policy",
    b"x-frame-options",
)


async def stamp_headers(message: Message, scope: Scope) -> None:
    """`before_send` hook: on every response, including the router's own 404/405, which never pass through the
    middleware stack: X-Request-ID, nosniff, no referrer, a Content-Security-Policy (strict for JSON, own scripts
    only for pages), no framing, and `Cache-Control: no-store` on anything answered to a signed-in caller (or
    carrying tokens), so that no shared or browser cache keeps what was meant for one person."""
    if message["type"] != "http.response.start":
        return
    kept = [h for h in message.get("headers", []) if h[0].lower() not in STAMPED]
    html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in kept)
    kept += [
        (b"x-request-id", _request_id(scope).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", PAGE_CSP if html else API_CSP),
        (b"x-frame-options", b"DENY"),
    ]
    if _header(scope, b"authorization") is not None or scope.get("path", "").startswith(TOKEN_ROUTES):
        kept = [h for h in kept if h[0].lower() != b"cache-control"] + [(b"cache-control", b"no-store")]
    message["headers"] = kept


# scope state: (user id, position of the last event) a command wrote, set by api/deps.py `command`
WRITTEN = "tutorconnect.written"
_QUERIES = frozenset(("GET", "HEAD", "OPTIONS"))


class RequestContext:
    """X-Request-ID in: the correlation id of the events this request records (`stamp_headers` sends it back). For a
    command, the caller's last write is kept in Redis before the answer leaves (ADR 0004: their next query waits
    for it); while Redis is away this is skipped, and a later query reflects what X-Min-Position asks for."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.positions = PositionKeeper(settings.redis_url)
        self.breaker = Breaker()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        token = context.begin(correlation_id=rid, causation_id=rid)
        try:
            query = scope.get("method") in _QUERIES
            await self.app(scope, receive, send if query else self._keeping(scope, send))
        finally:
            context.end(token)

    def _keeping(self, scope: Scope, send: Send) -> Send:
        async def send_after_keeping(message: Message) -> None:
            if message["type"] == "http.response.start":
                written = scope["state"].pop(WRITTEN, None)
                if written is not None:
                    await self._remember(*written)
            await send(message)

        return send_after_keeping

    async def _remember(self, user_id: str, position: int) -> None:
        if self.breaker.open:
            return
        try:
            await self.positions.remember(user_id, position)
        except CounterError as e:
            self.breaker.failed("Redis (session positions)", e)


class RateLimit:
    """Fixed-window limits in Redis (shared by every API process): register/login per IP, the rest per user."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        # One round trip per request (EVALSHA): count the hit and, on the window's first, set the key's expiry.
        self.counter = HitCounter(settings.redis_url)
        # While Redis is away each process counts on its own (limits then apply per process): failing closed would
        # make Redis an outage of the whole API, failing open would drop the login and registration limits.
        self.breaker = Breaker()
        self.local: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX) or path.startswith(UNLIMITED):
            await self.app(scope, receive, send)
            return
        if path == PREFIX + "/auth/register" and scope["method"] == "POST":
            rule, who = "register", "ip:" + _client_ip(scope)
        elif path == PREFIX + "/auth/login" and scope["method"] == "POST":
            rule, who = "login", "ip:" + _client_ip(scope)
        else:
            sub = _bearer_subject(scope, self.settings.jwt_secret)
            rule, who = "default", ("user:" + sub) if sub else ("ip:" + _client_ip(scope))
        limit = self.settings.rate_limits[rule]
        now = time.time()
        window = int(now // limit.seconds)
        key = f"tutorconnect:rl:{rule}:{who}:{window}"
        count = await self._hit(key, limit.seconds + 1, window)
        if count > limit.count:
            retry = max(1, int((window + 1) * limit.seconds - now + 0.999))
            await _send_problem(
                scope,
                send,
                429,
                "rate-limited",
                "Too many requests",
                f"limit {limit.count} per {limit.seconds}s for {rule}",
                [(b"retry-after", str(retry).encode())],
            )
            return
        await self.app(scope, receive, send)

    async def _hit(self, key: str, ttl: int, window: int) -> int:
        if not self.breaker.open:
            try:
                return await self.counter.hit(key, ttl)
            except CounterError as e:
                self.breaker.failed("Redis (rate limits)", e)
        if len(self.local) > 100_000:  # keys of past windows: drop them all rather than grow without bound
            self.local = {k: v for k, v in self.local.items() if k.endswith(f":{window}")}
        self.local[key] = self.local.get(key, 0) + 1
        return self.local[key]


class Idempotency:
    """Idempotency-Key on commands: a repeat with the same body replays the first response (kept 24 h+)."""

    KEEP = ("content-type", "x-event-position", "location")

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.pool: AsyncConnectionPool[Any] | None = None
        self.sealer = Sealer(settings.jwt_secret)

    async def _pool(self) -> AsyncConnectionPool[Any]:
        if self.pool is None:
            self.pool = AsyncConnectionPool(
                self.settings.database_url, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False
            )
            await self.pool.open()
        return self.pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _header(scope, b"idempotency-key") if scope["type"] == "http" else None
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if (
            not key
            or scope["method"] not in COMMAND_METHODS
            or not path.startswith(PREFIX)
            or path.startswith(NOT_REPLAYED)
        ):
            await self.app(scope, receive, send)
            return
        if len(key) > 200:
            await _send_problem(
                scope, send, 422, "validation-failed", "Validation failed", "Idempotency-Key is at most 200 characters"
            )
            return
        # A replay is authorised like a new request: the route's own guards (401, then 403) run before anything is
        # claimed or replayed, so a deactivated account cannot fetch what it once got (the guards run again inside
        # the route, answered from the request's scope state).
        handler = scope.get("route_handler")
        if handler is not None and handler.resolve_guards():
            await handler.authorize_connection(Request(scope))
        body = await _read_body(receive)
        sub = _bearer_subject(scope, self.settings.jwt_secret)
        scope_id = ("user:" + sub) if sub else ("ip:" + _client_ip(scope))
        digest = hashlib.sha256(
            b"\n".join([scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""), body])
        ).digest()
        if await self._answered_before(scope, send, scope_id, key, digest, body):
            return
        await self._run_and_keep(scope, send, scope_id, key, body)

    async def _answered_before(
        self, scope: Scope, send: Send, scope_id: str, key: str, digest: bytes, body: bytes
    ) -> bool:
        """Claim the key; if it was claimed before, answer from it (a replay, 422 for another request, 409 while
        the first still runs) and say so."""
        pool = await self._pool()
        async with pool.connection() as conn:
            claimed = await (
                await conn.execute(
                    "INSERT INTO idempotency_keys (scope, key, request_hash) VALUES (%s, %s, %s)"
                    " ON CONFLICT (scope, key) DO NOTHING RETURNING 1",
                    (scope_id, key, digest),
                )
            ).fetchone()
            if claimed:
                return False
            row = await (
                await conn.execute(
                    "SELECT request_hash, status, headers, body FROM idempotency_keys WHERE scope = %s AND key = %s",
                    (scope_id, key),
                )
            ).fetchone()
        if row is None:  # expired between the two statements: run as new, unrecorded
            await self.app(scope, _replay(body), send)
        elif bytes(row[0]) != digest:
            await _send_problem(
                scope, send, 422, "idempotency-key-reused", "Idempotency key reused",
                "this Idempotency-Key was used with a different request",
            )  # fmt: skip
        elif row[1] is None:
            await _send_problem(
                scope, send, 409, "idempotency-key-in-flight", "Request in progress",
                "a request with this Idempotency-Key is still running", [(b"retry-after", b"1")],
            )  # fmt: skip
        else:
            headers = [(k.encode(), v.encode()) for k, v in (row[2] or {}).items()]
            headers.append((b"idempotent-replayed", b"true"))
            await send({"type": "http.response.start", "status": row[1], "headers": headers})
            await send({"type": "http.response.body", "body": self.sealer.open(scope_id, key, bytes(row[3] or b""))})
        return True

    async def _run_and_keep(self, scope: Scope, send: Send, scope_id: str, key: str, body: bytes) -> None:
        """Run the request, passing its response on, and keep the response (sealed) for replays; a 5xx or a crash
        recorded nothing, so the key is released for the client's retry."""
        captured: dict[str, Any] = {"status": None, "headers": {}, "body": []}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = {
                    k.decode().lower(): v.decode()
                    for k, v in message.get("headers", [])
                    if k.decode().lower() in self.KEEP
                }
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, _replay(body), capture)
        finally:
            status = captured["status"]
            async with (await self._pool()).connection() as conn:
                if status is not None and status < 500:
                    await conn.execute(
                        "UPDATE idempotency_keys SET status = %s, headers = %s, body = %s WHERE scope = %s AND key = %s",
                        (
                            status,
                            psycopg.types.json.Jsonb(captured["headers"]),
                            self.sealer.seal(scope_id, key, b"".join(captured["body"])),
                            scope_id,
                            key,
                        ),
                    )
                else:  # a failure that recorded nothing: let the client retry with the same key
                    await conn.execute("DELETE FROM idempotency_keys WHERE scope = %s AND key = %s", (scope_id, key))


async def _read_body(receive: Receive) -> bytes:
    """The whole request body (bounded by the 1 MB limit below us), to hash it and then replay it to the app."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > 1_048_576 or not message.get("more_body"):
            break
    return b"".join(chunks)


class Sealer:
    """Stored responses are sealed (AES-GCM) under a key derived from the server's secret, the caller's scope and
    the Idempotency-Key, so that the idempotency table keeps no readable secret (a purchase's `client_secret`):
    the database alone cannot open it, and one key's row cannot be opened with another's."""

    MARK = b"TCS1"  # bodies stored before sealing (plain JSON) never begin with it

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()

    def _key(self, scope_id: str, key: str) -> bytes:
        return hmac.new(self.secret, b"idempotency\0" + scope_id.encode() + b"\0" + key.encode(), "sha256").digest()

    def seal(self, scope_id: str, key: str, body: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        cipher = AES.new(self._key(scope_id, key), AES.MODE_GCM, nonce=nonce)
        sealed, tag = cipher.encrypt_and_digest(body)
        return self.MARK + nonce + tag + sealed

    def open(self, scope_id: str, key: str, stored: bytes) -> bytes:
        if not stored.startswith(self.MARK):
            return stored
        nonce, tag, sealed = stored[4:16], stored[16:32], stored[32:]
        cipher = AES.new(self._key(scope_id, key), AES.MODE_GCM, nonce=nonce)
        plain: bytes = cipher.decrypt_and_verify(sealed, tag)
        return plain


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
