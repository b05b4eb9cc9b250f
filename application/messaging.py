"""Messaging context: threads per pair, masked messages until a confirmed booking, attachments on S3."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.identity import Account
from application.storage import UPLOAD_TTL, Storage
from application.store import EventStoreApp, Turns, retrying
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

    _storage: Storage | None = None
    # A thread is one stream that both participants (and their several devices) write at once: posts take turns
    # per thread in this process and retry against other processes (application/store.py Turns).
    turns = Turns()
    THREAD_ATTEMPTS = 20

    @property
    def storage(self) -> Storage:
        """S3 for attachments."""
        if self._storage is None:
            self._storage = Storage(self.settings)
        return self._storage

    def _thread(self, thread_id: UUID, actor: Account) -> Thread:
        try:
            t: Any = self.repository.get(thread_id)
        except AggregateNotFoundError:
            raise NotFound("no such thread") from None
        if not isinstance(t, Thread) or str(actor.user_id) not in t.participant_ids:
            raise NotFound("no such thread")
        return t  # type: ignore[no-any-return]

    def pair_thread(self, a: UUID, b: UUID) -> Thread:
        """The pair's thread, new (unsaved) if they never wrote."""
        try:
            t: Any = self.repository.get(thread_id_for(a, b))
            return t  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            return Thread(participant_ids=[str(a), str(b)])

    def open_thread(self, actor: Account, participant_id: UUID) -> tuple[Thread, int, bool]:
        """The caller's one thread with another user (created on first use)."""
        if participant_id == actor.user_id:
            raise ValidationFailed([("participant_id", "someone other than yourself")])
        try:
            other: Any = self.repository.get(participant_id)
        except AggregateNotFoundError:
            raise NotFound("no such user") from None
        if not isinstance(other, User) or other.deleted:
            raise NotFound("no such user")

        def attempt() -> tuple[Thread, int, bool]:
            t = self.pair_thread(actor.user_id, participant_id)
            created = bool(t.pending_events)
            return t, (self.record(t) if created else self.head()), created

        return retrying(attempt)

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

        def attempt() -> tuple[dict[str, Any], int]:
            t = self._thread(thread_id, actor)
            msg = t.post(str(uuid.uuid4()), actor.user_id, body, attachments, self.now())
            return msg, self.record(t)

        with self.turns.of(thread_id):
            return retrying(attempt, self.THREAD_ATTEMPTS)

    def checked_attachment(self, actor: Account, attachment_id: UUID) -> Attachment:
        """The caller's attachment, checked: the first time a message carries it, its upload is copied to a key the
        sender cannot write, and that copy must be the announced file (domain/files.py); recipients get the copy."""

        def attempt() -> Attachment:
            try:
                att: Any = self.repository.get(attachment_id)
            except AggregateNotFoundError:
                raise ValidationFailed([("attachment_ids", f"unknown attachment {attachment_id}")]) from None
            if not isinstance(att, Attachment) or att.owner_id != actor.user_id:
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

        return retrying(attempt)

    def edit(self, actor: Account, thread_id: UUID, message_id: UUID, body: str) -> tuple[dict[str, Any], int]:
        """The author edits within 15 minutes (the history keeps every version)."""

        def attempt() -> tuple[dict[str, Any], int]:
            t = self._thread(thread_id, actor)
            t.edit(actor.user_id, str(message_id), body, self.now())
            return t.messages[str(message_id)], self.record(t)

        with self.turns.of(thread_id):
            return retrying(attempt, self.THREAD_ATTEMPTS)

    def delete(self, actor: Account, thread_id: UUID, message_id: UUID) -> tuple[dict[str, Any], int]:
        """Soft delete by the author."""

        def attempt() -> tuple[dict[str, Any], int]:
            t = self._thread(thread_id, actor)
            t.delete(actor.user_id, str(message_id))
            return t.messages[str(message_id)], self.record(t)

        with self.turns.of(thread_id):
            return retrying(attempt, self.THREAD_ATTEMPTS)

    def read(self, actor: Account, thread_id: UUID, message_id: UUID) -> int:
        """Read receipt."""

        def attempt() -> int:
            t = self._thread(thread_id, actor)
            t.read(actor.user_id, str(message_id))
            return self.record(t)

        with self.turns.of(thread_id):
            return retrying(attempt, self.THREAD_ATTEMPTS)

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
