"""Messaging: a thread per pair, messages with masking, read receipts, attachments."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.openapi.datastructures import ResponseSpec

from api.deps import command, decode_cursor, encode_cursor, limit_of, query, reading, services
from api.guards import BEARER, USER
from api.presence import Presence
from api.schemas.messaging import (
    MessageAttachmentUploadOut,
    MessageOut,
    MessagePage,
    ReadReceiptOut,
    ThreadPage,
    ThreadParticipantsOut,
    attachment_upload_out,
    message_out,
    other_of,
    other_party_out,
    sent_message_out,
    thread_out,
    thread_participants_out,
)
from application.accounts import Account
from application.messaging import Messaging
from domain.errors import NotFound


class ThreadIn(msgspec.Struct):
    """POST /threads."""

    participant_id: UUID


class MessageIn(msgspec.Struct):
    """POST /threads/{id}/messages."""

    body: Annotated[str, msgspec.Meta(max_length=5000)] = ""
    attachment_ids: list[UUID] = msgspec.field(default_factory=list)


class MessageEdit(msgspec.Struct):
    """PATCH /threads/{id}/messages/{mid}."""

    body: Annotated[str, msgspec.Meta(min_length=1, max_length=5000)]


class ReadIn(msgspec.Struct):
    """POST /threads/{id}/read."""

    up_to_message_id: UUID


class AttachmentIn(msgspec.Struct):
    """POST /attachments."""

    filename: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    content_type: str
    size: int


class MessagingController(Controller):
    """Participants only: a stranger gets 404 for a thread."""

    path = "/"
    guards = USER
    tags = ["messaging"]
    security = BEARER

    @post(
        "/threads",
        status_code=201,
        sync_to_thread=True,
        responses={200: ResponseSpec(ThreadParticipantsOut, generate_examples=False, description="The thread existed")},
    )
    def open_thread(
        self, request: Request[Account, Any, Any], messaging: Messaging, data: ThreadIn
    ) -> Response[ThreadParticipantsOut]:
        """The pair's one thread (201 when created, 200 when it existed)."""
        actor = request.user
        thread, position, created = messaging.open_thread(actor, data.participant_id)
        body = thread_participants_out(thread.id, thread.participant_ids)
        return command(body, position, 201 if created else 200)

    @get("/threads", sync_to_thread=True)
    def threads(
        self, request: Request[Account, Any, Any], limit: int | None = None, cursor: str | None = None
    ) -> Response[ThreadPage]:
        """The caller's threads, most recent activity first, with unread counts, the last message and the other
        party (online: they have a WebSocket open; api/presence.py)."""
        actor = request.user
        n = limit_of(limit)
        where: list[str] = ["%s = ANY(t.participant_ids)"]
        params: list[Any] = [actor.user_id]
        after = decode_cursor(cursor, int)
        if after is not None:
            where.append("t.last_position < %s")
            params.append(int(after))
        with reading(request, ("messaging", "users_directory"), actor) as (conn, pos):
            rows = conn.execute(
                "SELECT t.thread_id, t.participant_ids, t.last_message, t.last_position, (SELECT count(*) FROM"
                " thread_messages m WHERE m.thread_id = t.thread_id AND m.sender_id <> %s AND m.position >"
                " coalesce((SELECT r.read_position FROM thread_reads r WHERE r.thread_id = t.thread_id AND"
                " r.user_id = %s), 0)) AS unread, (SELECT u.full_name FROM users_directory u WHERE u.user_id ="
                " (SELECT p FROM unnest(t.participant_ids) AS p WHERE p <> %s LIMIT 1)) AS other_name"
                f" FROM threads t WHERE {' AND '.join(where)} ORDER BY t.last_position DESC LIMIT %s",
                (actor.user_id, actor.user_id, actor.user_id, *params, n + 1),
            ).fetchall()
        others = {r["thread_id"]: other_of(r["participant_ids"], actor.user_id) for r in rows[:n]}
        presence: Presence = services(request.app.state).extras["presence"]
        seen = presence.seen(str(o) for o in others.values())
        items = [
            thread_out(
                r["thread_id"],
                r["participant_ids"],
                int(r["unread"]),
                r["last_message"],
                other_party_out(others[r["thread_id"]], r["other_name"], seen[str(others[r["thread_id"]])]),
            )
            for r in rows[:n]
        ]
        nxt = encode_cursor(rows[n - 1]["last_position"]) if len(rows) > n else None
        return query(ThreadPage(items, nxt), pos)

    @get("/threads/{thread_id:uuid}/messages", sync_to_thread=True)
    def history(
        self,
        request: Request[Account, Any, Any],
        messaging: Messaging,
        thread_id: UUID,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Response[MessagePage]:
        """Messages newest first (deleted ones keep their place with body null)."""
        actor = request.user
        n = limit_of(limit)
        after = decode_cursor(cursor, int)
        with reading(request, ("messaging",), actor) as (conn, pos):
            t = conn.execute("SELECT participant_ids FROM threads WHERE thread_id = %s", (thread_id,)).fetchone()
            if t is None or actor.user_id not in t["participant_ids"]:
                raise NotFound("no such thread")
            rows = conn.execute(
                "SELECT message_id, sender_id, body, created_at, edited_at, deleted, attachments, position"
                " FROM thread_messages WHERE thread_id = %s AND position < %s ORDER BY position DESC LIMIT %s",
                (thread_id, int(after) if after is not None else 2**62, n + 1),
            ).fetchall()
        items = [
            message_out(
                thread_id,
                r["message_id"],
                r["sender_id"],
                r["body"],
                r["created_at"],
                r["edited_at"],
                r["deleted"],
                r["attachments"],
                messaging,
            )
            for r in rows[:n]
        ]
        nxt = encode_cursor(rows[n - 1]["position"]) if len(rows) > n else None
        return query(MessagePage(items, nxt), pos)

    @post("/threads/{thread_id:uuid}/messages", status_code=201, sync_to_thread=True)
    def send(
        self, request: Request[Account, Any, Any], messaging: Messaging, thread_id: UUID, data: MessageIn
    ) -> Response[MessageOut]:
        """Send a message; contact details are masked until the pair has a confirmed booking."""
        actor = request.user
        message, position = messaging.post(actor, thread_id, data.body, data.attachment_ids)
        return command(sent_message_out(thread_id, message, messaging), position, 201)

    @patch("/threads/{thread_id:uuid}/messages/{message_id:uuid}", sync_to_thread=True)
    def edit(
        self,
        request: Request[Account, Any, Any],
        messaging: Messaging,
        thread_id: UUID,
        message_id: UUID,
        data: MessageEdit,
    ) -> Response[MessageOut]:
        """Edit your message within 15 minutes."""
        actor = request.user
        message, position = messaging.edit(actor, thread_id, message_id, data.body)
        return command(sent_message_out(thread_id, message, messaging), position)

    @delete("/threads/{thread_id:uuid}/messages/{message_id:uuid}", status_code=200, sync_to_thread=True)
    def remove(
        self, request: Request[Account, Any, Any], messaging: Messaging, thread_id: UUID, message_id: UUID
    ) -> Response[MessageOut]:
        """Delete your message (it keeps its place)."""
        actor = request.user
        message, position = messaging.delete(actor, thread_id, message_id)
        return command(sent_message_out(thread_id, message, messaging), position)

    @post("/threads/{thread_id:uuid}/read", status_code=200, sync_to_thread=True)
    def read(
        self, request: Request[Account, Any, Any], messaging: Messaging, thread_id: UUID, data: ReadIn
    ) -> Response[ReadReceiptOut]:
        """Read receipt up to a message."""
        actor = request.user
        position = messaging.read(actor, thread_id, data.up_to_message_id)
        return command(ReadReceiptOut(thread_id, data.up_to_message_id), position)

    @post("/attachments", status_code=201, sync_to_thread=True)
    def attachment(
        self, request: Request[Account, Any, Any], messaging: Messaging, data: AttachmentIn
    ) -> Response[MessageAttachmentUploadOut]:
        """Announce an upload (pdf, jpeg, png, gif, webp, text; at most 25 MB) and get a presigned PUT URL."""
        actor = request.user
        upload, position = messaging.request_attachment(actor, data.filename, data.content_type, data.size)
        return command(attachment_upload_out(upload), position, 201)
