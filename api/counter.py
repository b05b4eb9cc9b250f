"""Rate-limit hits counted in Redis over one pipelined asyncio connection per event loop.

Why not redis-py's asyncio client here: every API request counts one hit, and that client spends ~136 us of CPU
per command (retry wrapper, connection pool checkout, command packing, reply parser): measured at ~20 % of an
API worker's CPU under bench/search.py. The hit needs one command whose reply is one line (an integer, or an
error), so this speaks exactly that much RESP over a plain asyncio Protocol, with requests of the same event
loop pipelined on one connection (replies arrive in order). URL parsing is redis-py's, everything else that
talks to Redis (the clock, presence, dramatiq) still uses redis-py.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from typing import Any, cast

from redis import ConnectionPool


class CounterError(ConnectionError):
    """Redis could not be reached or answered with an error."""


class ConnectionDropped(CounterError):
    """The connection closed before the reply came (Redis restarted, or the server dropped the client)."""


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)


class _Replies(asyncio.Protocol):
    """One-line RESP replies (`:n`, `+OK`, `-ERR ...`) handed to the waiting futures in order."""

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.buffer = bytearray()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n")) >= 0:
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            if not self.waiting:
                self._fail(CounterError(f"unexpected reply from Redis: {line[:80]!r}"))
                return
            fut = self.waiting.popleft()
            if fut.done():  # its request was cancelled; the reply is still consumed in order
                continue
            kind = line[:1]
            if kind == b":":
                fut.set_result(int(line[1:]))
            elif kind == b"+":
                fut.set_result(line[1:].decode())
            elif kind == b"-":
                fut.set_exception(CounterError(line[1:].decode(errors="replace")))
            else:  # a multi-line reply: not one this client asks for
                fut.set_exception(CounterError(f"unexpected reply from Redis: {line[:80]!r}"))
                self._fail(CounterError("unexpected reply from Redis"))
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionDropped(f"Redis connection lost: {exc}" if exc else "Redis connection closed"))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def send(self, command: bytes) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.closed or self.transport is None:
            fut.set_exception(ConnectionDropped("Redis connection closed"))
            return fut
        self.waiting.append(fut)
        self.transport.write(command)
        return fut


class HitCounter:
    """`await hit(key, ttl)`: INCR key, set its expiry on the first hit, return the count (one round trip)."""

    SCRIPT = b"local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n"
    # A rate limit must never hold a request up: a Redis that does not answer within these is treated as down
    # (the middleware then counts in the process, api/middleware.py RateLimit).
    CONNECT_TIMEOUT_S = 1.0
    REPLY_TIMEOUT_S = 1.0

    def __init__(self, url: str) -> None:
        self.options = ConnectionPool.from_url(url).connection_kwargs  # redis-py's reading of the URL; no connection
        self.sha = hashlib.sha1(self.SCRIPT).hexdigest().encode()  # noqa: S324 - Redis names scripts by SHA-1
        self.conn: _Replies | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lock: asyncio.Lock | None = None

    async def _connection(self) -> _Replies:
        loop = asyncio.get_running_loop()
        if self.conn is not None and not self.conn.closed and self.loop is loop:
            return self.conn
        if self.lock is None or self.loop is not loop:
            self.lock, self.loop, self.conn = asyncio.Lock(), loop, None
        async with self.lock:
            if self.conn is not None and not self.conn.closed:
                return self.conn
            o = self.options
            try:
                if o.get("path"):
                    connect = loop.create_unix_connection(_Replies, o["path"])
                else:
                    connect = loop.create_connection(_Replies, o.get("host", "localhost"), int(o.get("port", 6379)))
                _transport, conn = await asyncio.wait_for(connect, self.CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise CounterError(f"cannot reach Redis: {exc}") from exc
            setup = []
            if o.get("password"):
                auth = [o["username"].encode()] if o.get("username") else []
                setup.append(conn.send(_command(b"AUTH", *auth, str(o["password"]).encode())))
            if int(o.get("db") or 0):
                setup.append(conn.send(_command(b"SELECT", str(int(o["db"])).encode())))
            for fut in setup:
                await fut
            self.conn = conn
            return conn

    async def hit(self, key: str, ttl_seconds: int) -> int:
        try:
            return await self._hit(key, ttl_seconds)
        except ConnectionDropped:
            # Once more on a new connection (as redis-py retries): a hit lost with its connection may then count
            # twice, which a rate limit can afford; a second failure is Redis being away.
            return await self._hit(key, ttl_seconds)

    async def _hit(self, key: str, ttl_seconds: int) -> int:
        conn = await self._connection()
        k, ttl = key.encode(), str(ttl_seconds).encode()
        try:
            return int(await self._reply(conn, _command(b"EVALSHA", self.sha, b"1", k, ttl)))
        except CounterError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # The server does not know the script yet (first use, or after a restart / SCRIPT FLUSH): EVAL loads it.
        return int(await self._reply(conn, _command(b"EVAL", self.SCRIPT, b"1", k, ttl)))

    async def _reply(self, conn: _Replies, command: bytes) -> Any:
        """The reply to one command, or CounterError when Redis does not answer in time (the connection is then
        dropped: replies still owed on it would arrive out of step, and the next hit connects afresh)."""
        # A timer rather than asyncio.wait_for: 8 against 17 us of CPU per reply (uvloop), twice per command.
        reply = conn.send(command)
        timer = asyncio.get_running_loop().call_later(self.REPLY_TIMEOUT_S, _too_late, conn, reply)
        try:
            return await reply
        finally:
            timer.cancel()


def _too_late(conn: _Replies, reply: asyncio.Future[Any]) -> None:
    if not reply.done():  # fails every reply still owed on the connection, this one included
        conn._fail(CounterError("Redis did not answer in time"))
