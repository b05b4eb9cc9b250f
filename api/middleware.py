"""ASGI middleware: request id and security headers, and rate limits (Idempotency-Key replay: api/idempotency.py)."""

from __future__ import annotations

import json
import time
import uuid

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.counter import CounterError, HitCounter
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
NOT_REPLAYED = (TOKEN_ROUTES, PREFIX + "/me/calendar-feed")
UNLIMITED = (PREFIX + "/webhooks/",)
CONSOLE_LOGIN = "/console/login"  # counted with POST /auth/login: one password-guessing budget per IP


def header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return v.decode("latin-1")
    return None


def client_ip(scope: Scope) -> str:
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


async def send_problem(
    scope: Scope, send: Send, status: int, slug: str, title: str, detail: str, extra: Headers = ()
) -> None:
    headers, body = _problem(status, slug, title, detail, extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def bearer_subject(scope: Scope, secret: str) -> str | None:
    auth = header(scope, b"authorization")
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
        rid = header(scope, b"x-request-id") or ""
        if not rid or len(rid) > 200 or not rid.isprintable():
            rid = str(uuid.uuid4())
        state["request_id"] = rid
    return str(state["request_id"])


# What every response says about itself (OWASP secure headers, as they fit a JSON API and its docs page):
# JSON and problems may run nothing and be framed by nobody; the page (/schema) runs only its own scripts.
API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
PAGE_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
    b" font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)  # pages post their forms to this origin only (the console: api/console)
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
    if header(scope, b"authorization") is not None or scope.get("path", "").startswith(TOKEN_ROUTES):
        kept = [h for h in kept if h[0].lower() != b"cache-control"] + [(b"cache-control", b"no-store")]
    message["headers"] = kept


class RequestContext:
    """X-Request-ID in: the correlation id of the events this request records (`stamp_headers` sends it back). (A
    command's caller's last write is kept by the append itself: application/recorder.py, ADR 0004.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        token = context.begin(correlation_id=rid, causation_id=rid)
        try:
            await self.app(scope, receive, send)
        finally:
            context.end(token)


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
        console_login = path == CONSOLE_LOGIN and scope["method"] == "POST"
        if scope["type"] != "http" or not (path.startswith(PREFIX) or console_login) or path.startswith(UNLIMITED):
            await self.app(scope, receive, send)
            return
        if path == PREFIX + "/auth/register" and scope["method"] == "POST":
            rule, who = "register", "ip:" + client_ip(scope)
        elif (path == PREFIX + "/auth/login" and scope["method"] == "POST") or console_login:
            rule, who = "login", "ip:" + client_ip(scope)
        else:
            sub = bearer_subject(scope, self.settings.jwt_secret)
            rule, who = "default", ("user:" + sub) if sub else ("ip:" + client_ip(scope))
        limit = self.settings.rate_limits[rule]
        now = time.time()
        window = int(now // limit.seconds)
        key = f"tutorconnect:rl:{rule}:{who}:{window}"
        count = await self._hit(key, limit.seconds + 1, window)
        if count > limit.count:
            retry = max(1, int((window + 1) * limit.seconds - now + 0.999))
            await send_problem(
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
