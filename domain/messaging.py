"""Messaging context: one Thread per pair of users. Contact details are masked before a message is recorded
until the pair has a confirmed booking (the unmasked text never enters the log); edits only within 15 minutes."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, Forbidden, NotFound, ValidationFailed, WrongStatus
from domain.files import StoredFile, check_stored
from domain.ids import derived_id

EDIT_WINDOW = timedelta(minutes=15)
MAX_BODY = 5000
_EMAIL = re.compile(
    r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9])[A-Za-z0-9-]*((?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"
)
_URL = re.compile(
    r"(?i)\b(?:https?://|www\.)[^\s<>\"']+|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|co|me|"
    r"info|biz|app|dev|ly|gg|to|us|uk|de|fr|es|ru|cn)(?:/[^\s<>\"']*)?\b"
)
_PHONE = re.compile(r"(?<![\w*])\+?\d[\d\s().-]{5,}\d(?![\w*])")


class EditWindowClosed(DomainError):
    """Messages can be edited only within 15 minutes of sending."""


def mask(text: str) -> str:
    """Hide contact details: john@example.com -> j***@e***.com, phone digits -> *, outside links removed."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}***{m.group(3)[m.group(3).rfind('.') :]}", text)
    text = _URL.sub("[external link removed]", text)
    return _PHONE.sub(lambda m: re.sub(r"\d", "*", m.group(0)), text)


def thread_id_for(a: UUID, b: UUID) -> UUID:
    """The one thread of a pair of users, whoever opens it."""
    x, y = sorted((str(a), str(b)))
    return derived_id("thread", x, y)


class Thread(Aggregate):
    """Messages between two users."""

    @event("Opened")
    def __init__(self, participant_ids: list[str]) -> None:
        self.participant_ids = sorted(participant_ids)
        self.unlocked = False
        self.messages: dict[str, dict[str, Any]] = {}
        self.read_up_to: dict[str, str] = {}

    @staticmethod
    def create_id(participant_ids: list[str]) -> UUID:
        """Derived from the pair."""
        return thread_id_for(UUID(participant_ids[0]), UUID(participant_ids[1]))

    def _member(self, user_id: UUID) -> str:
        uid = str(user_id)
        if uid not in self.participant_ids:
            raise Forbidden("not a participant of this thread")
        return uid

    def unlock_contacts(self) -> None:
        """The pair has a confirmed booking: later messages are no longer masked."""
        if not self.unlocked:
            self._unlocked()

    @event("ContactsUnlocked")
    def _unlocked(self) -> None:
        self.unlocked = True

    def post(
        self, message_id: str, sender_id: UUID, body: str, attachments: list[dict[str, Any]], now: datetime
    ) -> dict[str, Any]:
        """Send a message (masked unless unlocked)."""
        sender = self._member(sender_id)
        if not body.strip() and not attachments:
            raise ValidationFailed([("body", "a message needs text or an attachment")])
        if len(body) > MAX_BODY:
            raise ValidationFailed([("body", f"at most {MAX_BODY} characters")])
        text = body if self.unlocked else mask(body)
        self._posted(
            message_id=message_id,
            sender_id=sender,
            body=text,
            masked=text != body,
            attachments=attachments,
            sent_at=now,
        )
        return self.messages[message_id]

    @event("MessagePosted")
    def _posted(
        self,
        message_id: str,
        sender_id: str,
        body: str,
        masked: bool,
        attachments: list[dict[str, Any]],
        sent_at: datetime,
    ) -> None:
        self.messages[message_id] = {
            "id": message_id,
            "sender_id": sender_id,
            "body": body,
            "sent_at": sent_at,
            "edited_at": None,
            "deleted": False,
            "attachments": attachments,
        }

    def _own(self, user_id: UUID, message_id: str) -> dict[str, Any]:
        self._member(user_id)
        msg = self.messages.get(message_id)
        if msg is None:
            raise NotFound("no such message")
        if msg["sender_id"] != str(user_id):
            raise Forbidden("only the author may change a message")
        if msg["deleted"]:
            raise WrongStatus("message is deleted")
        return msg

    def edit(self, user_id: UUID, message_id: str, body: str, now: datetime) -> None:
        """The author edits within 15 minutes; the earlier text stays in the history."""
        msg = self._own(user_id, message_id)
        if now - msg["sent_at"] > EDIT_WINDOW:
            raise EditWindowClosed("the 15-minute edit window has passed")
        if not body.strip() or len(body) > MAX_BODY:
            raise ValidationFailed([("body", f"1 to {MAX_BODY} characters")])
        text = body if self.unlocked else mask(body)
        self._edited(message_id=message_id, body=text, edited_at=now)

    @event("MessageEdited")
    def _edited(self, message_id: str, body: str, edited_at: datetime) -> None:
        self.messages[message_id].update(body=body, edited_at=edited_at)

    def delete(self, user_id: UUID, message_id: str) -> None:
        """Soft delete: the message keeps its place with no body."""
        self._own(user_id, message_id)
        self._deleted(message_id=message_id)

    @event("MessageDeleted")
    def _deleted(self, message_id: str) -> None:
        self.messages[message_id].update(deleted=True, body=None)

    def read(self, user_id: UUID, message_id: str) -> None:
        """Read receipt up to a message."""
        uid = self._member(user_id)
        if message_id not in self.messages:
            raise NotFound("no such message")
        if self.read_up_to.get(uid) != message_id:
            self._read(user_id=uid, message_id=message_id)

    @event("ReadUpTo")
    def _read(self, user_id: str, message_id: str) -> None:
        self.read_up_to[user_id] = message_id


class Attachment(Aggregate):
    """A file announced for upload by its owner, referenced by messages."""

    @event("Requested")
    def __init__(
        self, attachment_id: UUID, owner_id: UUID, filename: str, content_type: str, size: int, key: str
    ) -> None:
        self.owner_id = owner_id
        self.filename = filename
        self.content_type = content_type
        self.size = size
        self.key = key
        self.checked_key: str | None = None  # where the checked copy is, once a message carried it

    @staticmethod
    def create_id(attachment_id: UUID) -> UUID:
        """Chosen by the application before the upload URL is signed."""
        return attachment_id

    def check_stored(self, stored: StoredFile | None, key: str) -> None:
        """A message may carry the attachment only once the object its owner uploaded, copied by the server to `key`
        (which the owner cannot write), is the announced file (domain/files.py); recipients are then given `key`."""
        if self.checked_key is not None:
            return
        checked = check_stored(f"attachment {self.id}", self.content_type, self.size, stored)
        self._checked(key=key, size=checked.size)

    @event("Checked")
    def _checked(self, key: str, size: int) -> None:
        self.checked_key = key
        self.stored_size = size
