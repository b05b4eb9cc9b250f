"""GET /ws?token=: live frames for a user (message.*, booking.updated, notification.created).

Each API process runs one hub that follows the event log (LISTEN/NOTIFY on the events table, like the
projectors) and fans frames out to its own connections, so any number of API processes can serve sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from litestar import WebSocket, websocket
from psycopg import sql

from api.deps import services
from domain.errors import DomainError
from projections.runtime import CHANNEL, EVENTS_TABLE, event_type

log = logging.getLogger("tutorconnect.ws")
_decode = msgspec.json.Decoder().decode
THREAD_FRAMES = {
    "Thread.MessagePosted": "message.created",
    "Thread.MessageEdited": "message.edited",
    "Thread.MessageDeleted": "message.deleted",
    "Thread.ReadUpTo": "message.read",
}


class Hub:
    """Connections by user id, and the task that follows the log for them."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.queues: dict[str, set[asyncio.Queue[bytes]]] = defaultdict(set)
        self.task: asyncio.Task[None] | None = None
        self.parties: dict[UUID, list[str]] = {}

    def subscribe(self, user_id: str) -> asyncio.Queue[bytes]:
        q: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)
        self.queues[user_id].add(q)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._follow())
        return q

    def unsubscribe(self, user_id: str, q: asyncio.Queue[bytes]) -> None:
        self.queues[user_id].discard(q)
        if not self.queues[user_id]:
            del self.queues[user_id]

    def _send(self, user_id: str, frame_type: str, data: dict[str, Any]) -> None:
        frame = msgspec.json.encode({"type": frame_type, "data": data})
        for q in list(self.queues.get(user_id, ())):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(frame)

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
                    while self.queues:
                        last, last_note = await self._pump(conn, last, last_note)
                        gen = conn.notifies(timeout=1.0, stop_after=1)
                        async for _ in gen:
                            pass
            except Exception:
                log.exception("websocket hub lost its connection; reconnecting")
                await asyncio.sleep(1)

    async def _pump(self, conn: psycopg.AsyncConnection[Any], last: int, last_note: int) -> tuple[int, int]:
        # The head first, then the rows up to it: read the other way round, an event committed between the two
        # statements would lie below the new position without having been read, and its frame would be lost.
        head = await (await conn.execute(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}")).fetchone()
        top = int(head[0]) if head else last
        rows = await (
            await conn.execute(
                f"SELECT notification_id, originator_id, topic, state FROM {EVENTS_TABLE} WHERE notification_id > %s"
                " AND notification_id <= %s"
                " AND (topic LIKE 'domain.messaging:Thread.%%' OR topic LIKE 'domain.booking:Booking.%%')"
                " ORDER BY notification_id LIMIT 1000",
                (last, top),
            )
        ).fetchall()
        for _pos, oid, topic, state in rows:
            kind = event_type(topic)
            d = _decode(state)
            d.pop("_meta", None)
            people = await self._parties_of(conn, oid)
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
    """Authenticate with ?token=<access token>; an invalid or missing token closes with code 4401."""
    svc = services(socket.app.state)
    token = socket.query_params.get("token") or ""
    try:
        account = await asyncio.to_thread(svc.identity.authenticate, token) if token else None
    except DomainError:
        account = None
    if account is None:
        await socket.close(code=4401, reason="invalid or missing token")
        return
    hub: Hub = svc.extras.setdefault("hub", Hub(svc.settings.database_url))
    await socket.accept()
    user = str(account.user_id)
    q = hub.subscribe(user)

    async def send_frames() -> None:
        while True:
            frame = await q.get()
            await socket.send_text(frame.decode())

    async def await_close() -> None:
        # Read what the client sends (nothing is expected) so that its going away is noticed at once, not only
        # when the next frame for this user fails to send.
        while (await socket.receive())["type"] != "websocket.disconnect":
            pass

    tasks = {asyncio.create_task(send_frames()), asyncio.create_task(await_close())}
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        for t in done:
            if not t.cancelled() and t.exception() is not None:  # the socket broke: stop serving it
                log.debug("websocket for %s closed: %s", user, type(t.exception()).__name__)
    finally:
        for t in tasks:
            t.cancel()
        hub.unsubscribe(user, q)
