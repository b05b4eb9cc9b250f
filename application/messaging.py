"""Messaging context: threads per pair, masked messages until a confirmed booking, attachments on S3."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from application.accounts import Account
from application.storage import UPLOAD_TTL
from application.store import EventStoreApp, Loaded, Turns
from domain.errors import DomainError, NotFound, ValidationFailed
from domain.files import FileTooLarge, UnsupportedFile
from domain.messaging import Attachment, Thread, thread_id_for
from domain.user import User

ATTACHMENT_TYPES = ("application/pdf", "image/jpeg", "image/png", "image/gif", "image/webp", "text/plain")
MAX_ATTACHMENT_BYTES = 25 * 1_048_576


@dataclass(frozen=True)
class AttachmentUpload:
    """An announced attachment and where its owner uploads it."""

    attachment_id: UUID
    upload_url: str
    expires_at: datetime


class Messaging(EventStoreApp):
    """Threads, messages and attachments."""

    # A thread is one stream that both participants (and their several devices) write at once: posts take turns
    # per thread in this process and retry against other processes (application/store.py Turns).
    turns = Turns()
    THREAD_ATTEMPTS = 20

    def open_thread(self, actor: Account, participant_id: UUID) -> tuple[Thread, int, bool]:
        """The caller's one thread with another user (created on first use)."""
        if participant_id == actor.user_id:
            raise ValidationFailed([("participant_id", "someone other than yourself")])
        thread_id = thread_id_for(actor.user_id, participant_id)

        def open_pair(got: Loaded) -> tuple[Thread, int, bool]:
            other = got.get(User, participant_id)
            if other is None or other.deleted:
                raise NotFound("no such user")
            t = got.get(Thread, thread_id)
            if t is not None:
                return t, self.head(), False
            t = Thread(participant_ids=[str(actor.user_id), str(participant_id)])
            return t, self.record(t), True

        # the other user is only read (this application never changes users)
        return self.command(open_pair, changes=[thread_id], reads=[participant_id])

    def post(
        self, actor: Account, thread_id: UUID, body: str, attachment_ids: list[UUID]
    ) -> tuple[dict[str, Any], int]:
        """Send a message; attachments must be the sender's own uploads, checked (`checked_attachment`). Returns the
        message as the thread keeps it (domain/messaging.py)."""
        attachments = []
        for aid in dict.fromkeys(attachment_ids):
            att = self.checked_attachment(actor, aid)
            attachments.append(
                {
                    "id": str(aid),
                    "filename": att.filename,
                    "content_type": att.content_type,
                    "size": att.stored_size,
                    "key": att.checked_key,
                }
            )

        def post(got: Loaded) -> tuple[dict[str, Any], int]:
            t = _thread(got, thread_id, actor)
            msg = t.post(str(uuid.uuid4()), actor.user_id, body, attachments, self.now())
            return dict(msg), self.record(t)

        with self.turns.of(thread_id):
            return self.command(post, changes=[thread_id], attempts=self.THREAD_ATTEMPTS)

    def attachment_url(self, attachment: Mapping[str, Any]) -> str | None:
        """A 24-hour download URL of a message's attachment as the thread or its read model keeps it (none while it
        has no checked copy)."""
        key = attachment.get("key")
        return self.storage.download_url(key, attachment["filename"], attachment["content_type"]) if key else None

    def checked_attachment(self, actor: Account, attachment_id: UUID) -> Attachment:
        """The caller's attachment, checked: the first time a message carries it, its upload is copied to a key the
        sender cannot write, and that copy must be the announced file (domain/files.py); recipients get the copy."""

        def check(got: Loaded) -> Attachment:
            att = got.get(Attachment, attachment_id)
            if att is None or att.owner_id != actor.user_id:
                raise ValidationFailed([("attachment_ids", f"unknown attachment {attachment_id}")])
            if att.checked_key is not None:
                return att
            checked_key = f"checked/attachments/{attachment_id}"
            stored = self.storage.copy_to_check(att.key, checked_key)
            try:
                att.check_stored(stored, checked_key)
            except DomainError:
                if stored is not None:
                    self.storage.remove(checked_key)
                raise
            self.record(att)
            return att

        return self.command(check, changes=[attachment_id])

    def edit(self, actor: Account, thread_id: UUID, message_id: UUID, body: str) -> tuple[dict[str, Any], int]:
        """The author edits within 15 minutes (the history keeps every version)."""

        def edit(got: Loaded) -> tuple[dict[str, Any], int]:
            t = _thread(got, thread_id, actor)
            t.edit(actor.user_id, str(message_id), body, self.now())
            return dict(t.messages[str(message_id)]), self.record(t)

        with self.turns.of(thread_id):
            return self.command(edit, changes=[thread_id], attempts=self.THREAD_ATTEMPTS)

    def delete(self, actor: Account, thread_id: UUID, message_id: UUID) -> tuple[dict[str, Any], int]:
        """Soft delete by the author."""

        def delete(got: Loaded) -> tuple[dict[str, Any], int]:
            t = _thread(got, thread_id, actor)
            t.delete(actor.user_id, str(message_id))
            return dict(t.messages[str(message_id)]), self.record(t)

        with self.turns.of(thread_id):
            return self.command(delete, changes=[thread_id], attempts=self.THREAD_ATTEMPTS)

    def read(self, actor: Account, thread_id: UUID, message_id: UUID) -> int:
        """Read receipt."""

        def read(got: Loaded) -> int:
            t = _thread(got, thread_id, actor)
            t.read(actor.user_id, str(message_id))
            return self.record(t)

        with self.turns.of(thread_id):
            return self.command(read, changes=[thread_id], attempts=self.THREAD_ATTEMPTS)

    def request_attachment(
        self, actor: Account, filename: str, content_type: str, size: int
    ) -> tuple[AttachmentUpload, int]:
        """Announce an attachment upload: type and size checked, presigned PUT returned."""
        if content_type not in ATTACHMENT_TYPES:
            raise UnsupportedFile(f"attachments must be one of {', '.join(ATTACHMENT_TYPES)}")
        if size <= 0:
            raise ValidationFailed([("size", "a positive number of bytes")])
        if size > MAX_ATTACHMENT_BYTES:
            raise FileTooLarge("attachments are at most 25 MB")
        if not filename.strip() or len(filename) > 255:
            raise ValidationFailed([("filename", "1 to 255 characters")])
        aid = uuid.uuid4()
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", filename.strip())[-100:] or "file"
        key = f"users/{actor.user_id}/attachments/{aid}/{safe}"
        att = Attachment(
            attachment_id=aid,
            owner_id=actor.user_id,
            filename=filename.strip(),
            content_type=content_type,
            size=size,
            key=key,
        )
        upload = AttachmentUpload(aid, self.storage.upload_url(key), self.clock.now() + UPLOAD_TTL)
        return upload, self.record(att)


def _thread(got: Loaded, thread_id: UUID, actor: Account) -> Thread:
    """The thread a command loaded, for its participants (404 for anyone else)."""
    t = got.get(Thread, thread_id)
    if t is None or str(actor.user_id) not in t.participant_ids:
        raise NotFound("no such thread")
    return t
