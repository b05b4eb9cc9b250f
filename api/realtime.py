"""GET /ws?token=: live frames for a user (message.*, booking.updated, notification.created, presence).

Each API process runs one hub that follows the event log (LISTEN/NOTIFY on the events table, like the
projectors) and fans frames out to its own connections, so any number of API processes can serve sockets.
`presence` frames (`{user_id, online}`) come from Redis instead (api/presence.py: presence is not in the log):
every process hears each user's first socket opening and last one closing, on whichever process, and sends the
frame to its own sockets of the other party of each of that user's threads (`Counterparts`).

Sessions end here too: the hub reads the identity events of its users in the same pass, so a socket whose user
is deactivated or deleted, or whose session is logged out (`User.SessionRevoked` of the token's `sid`), is
closed with 4401 by every API process within about a second (the hub wakes at least once a second), and at its
token's expiry; once its session has ended no further frame is sent to it, since frames are sent in log order and
the sender checks before each one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from litestar import WebSocket, websocket
from psycopg import sql

from api.deps import services
from api.presence import Presence
from application.tokens import verify_access
from domain.errors import DomainError
from projections.messaging import COUNTERPARTS_SQL
from projections.runner import CHANNEL, EVENTS_TABLE, event_type

log = logging.getLogger("tutorconnect.ws")
_decode = msgspec.json.Decoder().decode
THREAD_FRAMES = {
    "Thread.MessagePosted": "message.created",
    "Thread.MessageEdited": "message.edited",
    "Thread.MessageDeleted": "message.deleted",
    "Thread.ReadUpTo": "message.read",
}
FOLLOW_WAIT_S = 5.0  # how long a connecting socket waits for the hub to follow the log (the database is away)
ENDS_EVERY_SESSION = ("User.Deactivated", "User.Deleted")
ENDS_ONE_SESSION = "User.SessionRevoked"
SESSION_TOPICS = [f"domain.user:{kind}" for kind in (*ENDS_EVERY_SESSION, ENDS_ONE_SESSION)]


class Subscription:
    """One socket's frames, and whether its session has ended (then nothing more is sent to it)."""

    def __init__(self, user_id: str, session_id: str | None) -> None:
        self.user_id = user_id
        self.session_id = UUID(session_id) if session_id else None
        self.frames: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1000)
        self.ended = False

    def end(self) -> None:
        """The session is over: mark it (the sender checks before every frame) and wake the sender."""
        self.ended = True
        with contextlib.suppress(asyncio.QueueFull):
            self.frames.put_nowait(None)


class Counterparts:
    """Who shares a thread with a user (the messaging read model), remembered for `keep_s`: a presence change is
    relayed by every API process, and most users change often (each reconnect) while their threads seldom do. The
    hub forgets a pair when it reads their `Thread.Opened`, and everything when it starts following the log."""

    def __init__(self, pool: Callable[[], Awaitable[Any]], keep_s: float = 10.0) -> None:
        self.pool, self.keep_s = pool, keep_s
        self.known: dict[str, tuple[float, frozenset[str]]] = {}

    async def of(self, user_id: str) -> frozenset[str]:
        """The other participants of `user_id`'s threads (user id strings)."""
        hit = self.known.get(user_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pool = await self.pool()
        async with pool.connection() as conn:
            rows = await (await conn.execute(COUNTERPARTS_SQL, (user_id, user_id))).fetchall()
        found = frozenset(str(r["user_id"]) for r in rows)
        if len(self.known) > 100_000:
            self.known.clear()
        self.known[user_id] = (time.monotonic() + self.keep_s, found)
        return found

    def forget(self, user_ids: list[str]) -> None:
        for u in user_ids:
            self.known.pop(u, None)


class Hub:
    """Connections by user id, and the task that follows the log for them."""

    def __init__(self, dsn: str, counterparts: Counterparts | None = None) -> None:
        self.dsn = dsn
        self.counterparts = counterparts
        self.queues: dict[str, set[Subscription]] = defaultdict(set)
        self.task: asyncio.Task[None] | None = None
        self.parties: dict[UUID, list[str]] = {}
        # set once the follower listens and knows where the log stands: what is recorded from then on reaches the
        # subscribers (a socket is accepted only then, so a client's connect means "live from here")
        self.following = asyncio.Event()

    def subscribe(self, user_id: str, session_id: str | None = None) -> Subscription:
        sub = Subscription(user_id, session_id)
        self.queues[user_id].add(sub)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._follow())
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.queues[sub.user_id].discard(sub)
        if not self.queues[sub.user_id]:
            del self.queues[sub.user_id]

    def _send(self, user_id: str, frame_type: str, data: dict[str, Any]) -> None:
        frame = msgspec.json.encode({"type": frame_type, "data": data})
        for sub in list(self.queues.get(user_id, ())):
            with contextlib.suppress(asyncio.QueueFull):
                sub.frames.put_nowait(frame)

    async def presence_changed(self, user_id: str, online: bool) -> None:
        """A user's first socket opened or last one closed (on any process): tell our sockets of the other party of
        each of their threads."""
        if not self.queues or self.counterparts is None:
            return
        for uid in await self.counterparts.of(user_id) & self.queues.keys():
            self._send(uid, "presence", {"user_id": user_id, "online": online})

    def _end_sessions(self, user_id: str, kind: str, data: dict[str, Any]) -> None:
        for sub in list(self.queues.get(user_id, ())):
            if kind in ENDS_EVERY_SESSION or sub.session_id is None or str(sub.session_id) == data.get("family_id"):
                sub.end()

    async def _parties_of(self, conn: psycopg.AsyncConnection[Any], aggregate_id: UUID) -> list[str]:
        if aggregate_id not in self.parties:
            row = await (
                await conn.execute(
                    f"SELECT topic, state FROM {EVENTS_TABLE} WHERE originator_id = %s AND originator_version = 1",
                    (aggregate_id,),
                )
            ).fetchone()
            people: list[str] = []
            if row:
                d = _decode(row[1])
                people = d.get("participant_ids") or [str(d.get("student_id")), str(d.get("tutor_id"))]
            self.parties[aggregate_id] = people
        return self.parties[aggregate_id]

    async def _follow(self) -> None:
        while self.queues:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    head = await (
                        await conn.execute(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}")
                    ).fetchone()
                    last = int(head[0]) if head else 0
                    note = await (await conn.execute("SELECT coalesce(max(position), 0) FROM notifications")).fetchone()
                    last_note = int(note[0]) if note else 0
                    if self.counterparts is not None:
                        self.counterparts.known.clear()  # threads opened while nobody listened
                    self.following.set()
                    while self.queues:
                        last, last_note = await self._pump(conn, last, last_note)
                        gen = conn.notifies(timeout=1.0, stop_after=1)
                        async for _ in gen:
                            pass
            except Exception:
                self.following.clear()
                log.exception("websocket hub lost its connection; reconnecting")
                await asyncio.sleep(1)
        self.following.clear()

    async def _pump(self, conn: psycopg.AsyncConnection[Any], last: int, last_note: int) -> tuple[int, int]:
        # The head first, then the rows up to it: read the other way round, an event committed between the two
        # statements would lie below the new position without having been read, and its frame would be lost.
        head = await (await conn.execute(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}")).fetchone()
        top = int(head[0]) if head else last
        rows = await (
            await conn.execute(
                f"SELECT notification_id, originator_id, topic, state FROM {EVENTS_TABLE} WHERE notification_id > %s"
                " AND notification_id <= %s"
                " AND (topic LIKE 'domain.messaging:Thread.%%' OR topic LIKE 'domain.booking:Booking.%%'"
                " OR topic = ANY(%s))"
                " ORDER BY notification_id LIMIT 1000",
                (last, top, SESSION_TOPICS),
            )
        ).fetchall()
        for _pos, oid, topic, state in rows:
            kind = event_type(topic)
            d = _decode(state)
            d.pop("_meta", None)
            if kind.startswith("User."):
                self._end_sessions(str(oid), kind, d)
                continue
            people = await self._parties_of(conn, oid)
            if kind == "Thread.Opened" and self.counterparts is not None:
                self.counterparts.forget(people)
            if kind in THREAD_FRAMES:
                payload = {
                    "thread_id": str(oid),
                    **{k: v for k, v in d.items() if k not in ("attachments", "timestamp")},
                }
                for uid in people:
                    self._send(uid, THREAD_FRAMES[kind], payload)
            elif kind.startswith("Booking."):
                for uid in people:
                    self._send(uid, "booking.updated", {"booking_id": str(oid), "event": kind.split(".", 1)[1]})
        notes = await (
            await conn.execute(
                "SELECT notification_id, user_id, type, created_at, data, position FROM notifications WHERE position > %s"
                " AND user_id = ANY(%s) ORDER BY position",
                (last_note, [UUID(u) for u in self.queues]),
            )
        ).fetchall()
        for nid, uid, ntype, created, data, position in notes:
            self._send(
                str(uid),
                "notification.created",
                {"id": str(nid), "type": ntype, "created_at": created.isoformat(), "read": False, "data": data},
            )
            last_note = max(last_note, position)
        new_last = rows[-1][0] if len(rows) == 1000 else max(last, top)
        return new_last, last_note


@websocket("/ws")
async def ws(socket: WebSocket[Any, Any, Any]) -> None:
    """Authenticate with ?token=<access token>; an invalid or missing token closes with code 4401, and so does the
    end of the session (deactivation, deletion, logout, the token's expiry)."""
    svc = services(socket.app.state)
    token = socket.query_params.get("token") or ""
    try:
        claims = verify_access(svc.settings.jwt_secret, token)
    except DomainError:
        await socket.close(code=4401, reason="invalid or missing token")
        return
    hub: Hub = svc.extras.setdefault("hub", Hub(svc.settings.database_url))
    presence: Presence | None = svc.extras.get("presence")
    # Listen before checking the account: a deactivation committed after the check is then heard by the hub.
    sub = hub.subscribe(claims.user_id, claims.session_id)
    try:
        await asyncio.to_thread(svc.identity.authenticate, token)
    except DomainError:
        hub.unsubscribe(sub)
        await socket.close(code=4401, reason="invalid or missing token")
        return
    try:  # accepted once the hub follows the log, so nothing recorded after the client's connect is missed
        await asyncio.wait_for(hub.following.wait(), FOLLOW_WAIT_S)
    except TimeoutError:
        hub.unsubscribe(sub)
        await socket.close(code=1013, reason="live updates unavailable; try again")  # 1013: try again later
        return
    await socket.accept()
    if presence is not None:
        presence.connected(claims.user_id)
    try:
        await _serve(socket, sub, claims.user_id, claims.expires)
    finally:
        hub.unsubscribe(sub)
        if presence is not None:
            presence.disconnected(claims.user_id)


async def _serve(socket: WebSocket[Any, Any, Any], sub: Any, user_id: Any, expires: float) -> None:
    """Send the subscription's frames until the client goes, the session ends (4401) or the token expires."""

    async def send_frames() -> None:
        while True:
            frame = await sub.frames.get()
            if frame is None or sub.ended:
                return
            await socket.send_text(frame.decode())

    async def await_close() -> None:
        # Read what the client sends (nothing is expected) so that its going away is noticed at once, not only
        # when the next frame for this user fails to send.
        while (await socket.receive())["type"] != "websocket.disconnect":
            pass

    async def expire() -> None:
        await asyncio.sleep(max(0.0, expires - time.time()))

    sender, reader = asyncio.create_task(send_frames()), asyncio.create_task(await_close())
    tasks = {sender, reader, asyncio.create_task(expire())}
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        for t in done:
            if not t.cancelled() and t.exception() is not None:  # the socket broke: stop serving it
                log.debug("websocket for %s closed: %s", user_id, type(t.exception()).__name__)
                return
        if reader not in done:  # the session ended (or the token expired) while the client was still there
            sub.ended = True
            with contextlib.suppress(Exception):
                await socket.close(code=4401, reason="session ended")
    finally:
        for t in tasks:
            t.cancel()
