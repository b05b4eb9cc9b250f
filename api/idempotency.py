"""ASGI middleware: Idempotency-Key replay of commands (its own module: the request-id, header and rate-limit layers
are in api/middleware.py)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import psycopg
from Crypto.Cipher import AES
from litestar import Request
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from psycopg_pool import AsyncConnectionPool

from api.middleware import COMMAND_METHODS, NOT_REPLAYED, PREFIX, bearer_subject, client_ip, header, send_problem
from application.settings import Settings


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
        key = header(scope, b"idempotency-key") if scope["type"] == "http" else None
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
            await send_problem(
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
        sub = bearer_subject(scope, self.settings.jwt_secret)
        scope_id = ("user:" + sub) if sub else ("ip:" + client_ip(scope))
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
            await send_problem(
                scope, send, 422, "idempotency-key-reused", "Idempotency key reused",
                "this Idempotency-Key was used with a different request",
            )  # fmt: skip
        elif row[1] is None:
            await send_problem(
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
