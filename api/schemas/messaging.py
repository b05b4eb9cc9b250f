"""Messaging's answers: threads, messages with their attachments, read receipts, attachment uploads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from api.presence import Seen
from application.messaging import AttachmentUpload, Messaging


class ThreadParticipantsOut(msgspec.Struct):
    """The pair's one thread (the answer of POST /threads)."""

    id: UUID
    participant_ids: list[UUID]


def thread_participants_out(thread_id: UUID, participant_ids: list[str]) -> ThreadParticipantsOut:
    """From a Thread's id and its participants (user id strings)."""
    return ThreadParticipantsOut(thread_id, [UUID(p) for p in participant_ids])


class ThreadLastMessageOut(msgspec.Struct):
    """The newest message of a thread (`body` null once deleted)."""

    id: UUID
    sender_id: UUID
    body: str | None
    created_at: datetime


class OtherPartyOut(msgspec.Struct):
    """The other participant of a thread: `online` while they have a WebSocket open on any API process;
    `last_seen_at` is the time of this answer while they are online, else when their last socket closed (null if
    never seen, or while presence cannot be asked)."""

    id: UUID
    full_name: str
    online: bool
    last_seen_at: datetime | None


def other_of(participant_ids: list[UUID], me: UUID) -> UUID:
    """The participant of a pair's thread who is not `me`."""
    return next((p for p in participant_ids if p != me), me)


def other_party_out(user_id: UUID, full_name: str | None, seen: Seen) -> OtherPartyOut:
    """From the user's id, name (users_directory; empty until it has them) and presence."""
    return OtherPartyOut(user_id, full_name or "", seen.online, seen.last_seen_at)


class ThreadOut(msgspec.Struct):
    """A thread in the caller's inbox: unread messages from the other party, the last message (null before the
    first) and the other party."""

    id: UUID
    participant_ids: list[UUID]
    unread_count: int
    last_message: ThreadLastMessageOut | None
    other_party: OtherPartyOut


class ThreadPage(msgspec.Struct):
    """The caller's threads, most recent activity first."""

    items: list[ThreadOut]
    next_cursor: str | None


def thread_out(
    thread_id: UUID,
    participant_ids: list[UUID],
    unread: int,
    last: Mapping[str, Any] | None,
    other_party: OtherPartyOut,
) -> ThreadOut:
    """A thread from its read-model row (`last` is the row's last_message JSON)."""
    last_message = (
        ThreadLastMessageOut(
            UUID(last["id"]), UUID(last["sender_id"]), last["body"], datetime.fromisoformat(last["created_at"])
        )
        if last is not None
        else None
    )
    return ThreadOut(thread_id, participant_ids, unread, last_message, other_party)


class MessageAttachmentOut(msgspec.Struct):
    """A file a message carries; `url` is a download link valid 24 h (null while there is no checked copy)."""

    id: UUID
    filename: str
    content_type: str
    size: int
    url: str | None


class MessageOut(msgspec.Struct):
    """A message: a deleted one keeps its place with `body` null; `edited_at` is null until it is edited."""

    id: UUID
    thread_id: UUID
    sender_id: UUID
    body: str | None
    created_at: datetime
    edited_at: datetime | None
    deleted: bool
    attachments: list[MessageAttachmentOut]


def message_out(
    thread_id: UUID,
    message_id: UUID,
    sender_id: UUID,
    body: str | None,
    created_at: datetime,
    edited_at: datetime | None,
    deleted: bool,
    attachments: Sequence[Mapping[str, Any]],
    messaging: Messaging,
) -> MessageOut:
    """The message shape, built here only: from a thread_messages row (the history, api/messaging.py) and from a
    Thread's own record of a message (`sent_message_out`: the answers of send, edit and delete). `attachments` as
    both keep them (id, filename, content_type, size, key); each is given with its download URL, and a deleted
    message carries none."""
    files = [] if deleted else [_attachment(a, messaging) for a in attachments]
    return MessageOut(message_id, thread_id, sender_id, body, created_at, edited_at, deleted, files)


def _attachment(a: Mapping[str, Any], messaging: Messaging) -> MessageAttachmentOut:
    return MessageAttachmentOut(UUID(a["id"]), a["filename"], a["content_type"], a["size"], messaging.attachment_url(a))


def sent_message_out(thread_id: UUID, m: Mapping[str, Any], messaging: Messaging) -> MessageOut:
    """The answer of a send, edit or delete, from the message as the Thread keeps it (domain/messaging.py)."""
    return message_out(
        thread_id,
        UUID(m["id"]),
        UUID(m["sender_id"]),
        m["body"],
        m["sent_at"],
        m["edited_at"],
        m["deleted"],
        m["attachments"],
        messaging,
    )


class MessagePage(msgspec.Struct):
    """A thread's messages, newest first."""

    items: list[MessageOut]
    next_cursor: str | None


class ReadReceiptOut(msgspec.Struct):
    """The caller has read the thread up to this message."""

    thread_id: UUID
    up_to_message_id: UUID


class MessageAttachmentUploadOut(msgspec.Struct):
    """An announced attachment: PUT its bytes to `upload_url` (with the announced Content-Type) before `expires_at`."""

    id: UUID
    upload_url: str
    upload_method: Literal["PUT"]
    expires_at: datetime


def attachment_upload_out(upload: AttachmentUpload) -> MessageAttachmentUploadOut:
    """From the application's announced attachment."""
    return MessageAttachmentUploadOut(upload.attachment_id, upload.upload_url, "PUT", upload.expires_at)
