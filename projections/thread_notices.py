"""notifications' `message.created`: one unread notice per (recipient, thread), folded per batch.

A message tells the thread's other participant once: while they have an unread `message.created` notification
for that thread, further messages add none. The notice is done with (and the next message makes a new one) when
its recipient reads it (`Inbox.Read`, POST /notifications/{id}/read), reads the thread (`Thread.ReadUpTo`, POST
/threads/{id}/read: the notification is then marked read too, as a user who has opened the conversation
expects), or posts in the thread themselves (the messaging read model counts their own post as read as well).

State: `notification_threads` (each thread's participants, from `Thread.Opened`) and `notification_unread_threads`
(the unread notice of each (user, thread) that has one). A batch reads the rows of its threads and of the notices
its read receipts name with two SELECTs, folds its events in memory in order, and writes the difference back, so
one batch, chunks and one event at a time (and a rebuild) leave the same rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import psycopg

from projections.runner import Envelope

Key = tuple[UUID, UUID]  # (user, thread)


class ThreadNotices:
    """One batch's message notices. `add(event, user, kind, data)` writes a notification (Inboxes.add), `name_of`
    gives a user's name as of the event, `read` marks notifications read at the end of the batch."""

    def __init__(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        self.cur, self.threads_t, self.unread_t = cur, t["notification_threads"], t["notification_unread_threads"]
        threads = list({e.aggregate_id for e in events if e.type in THREAD_TYPES and e.type != "Thread.Opened"})
        asked = [UUID(str(n)) for e in events if e.type == "Inbox.Read" for n in e.data["notification_ids"]]
        self.born: dict[UUID, list[UUID]] = {}
        self.participants: dict[UUID, list[UUID]] = {}
        self.stored: dict[Key, UUID] = {}
        if threads:
            rows = cur.execute(
                f"SELECT thread_id, participant_ids FROM {self.threads_t} WHERE thread_id = ANY(%s)", (threads,)
            ).fetchall()
            self.participants = {r[0]: list(r[1]) for r in rows}
        if threads or asked:
            rows = cur.execute(
                f"SELECT user_id, thread_id, notification_id FROM {self.unread_t}"
                " WHERE thread_id = ANY(%s) OR notification_id = ANY(%s)",
                (threads, asked),
            ).fetchall()
            self.stored = {(r[0], r[1]): r[2] for r in rows}
        self.unread: dict[Key, UUID] = dict(self.stored)
        self.read: list[UUID] = []

    def opened(self, e: Envelope) -> None:
        people = [UUID(str(p)) for p in e.data["participant_ids"]]
        self.born[e.aggregate_id] = self.participants[e.aggregate_id] = people

    def posted(self, e: Envelope, add: Callable[[Envelope, UUID, str, dict[str, Any]], UUID], name: str | None) -> None:
        """Tell each other participant once per unread notice; the sender has seen the thread."""
        d = e.data
        sender = UUID(str(d["sender_id"]))
        self._seen((sender, e.aggregate_id))
        for who in self.participants.get(e.aggregate_id, ()):
            if who == sender or (who, e.aggregate_id) in self.unread:
                continue
            data = {
                "thread_id": str(e.aggregate_id),
                "message_id": str(d["message_id"]),
                "sender_id": str(sender),
                "sender_name": name,
            }  # never the body: it may be a masked thread's, and a notification outlives the masking
            self.unread[(who, e.aggregate_id)] = add(e, who, "message.created", data)

    def thread_read(self, e: Envelope) -> None:
        self._seen((UUID(str(e.data["user_id"])), e.aggregate_id))

    def inbox_read(self, e: Envelope) -> None:
        """POST /notifications/{id}/read of a message notice: the next message in its thread makes a new one."""
        user = UUID(str(e.data["user_id"]))
        ids = {UUID(str(n)) for n in e.data["notification_ids"]}
        for key, nid in list(self.unread.items()):
            if key[0] == user and nid in ids:
                del self.unread[key]

    def _seen(self, key: Key) -> None:
        if (nid := self.unread.pop(key, None)) is not None:
            self.read.append(nid)

    def write(self, inbox: str) -> None:
        """Participants of new threads, then the changed unread notices, then what reading a thread marked read
        (after the batch's notifications are written: it may name one of them)."""
        if self.born:
            with self.cur.copy(f"COPY {self.threads_t} (thread_id, participant_ids) FROM STDIN") as copy:
                for tid, people in self.born.items():
                    copy.write_row((tid, people))
        gone = [k for k, nid in self.stored.items() if self.unread.get(k) != nid]
        if gone:
            self.cur.execute(
                f"DELETE FROM {self.unread_t} WHERE (user_id, thread_id) IN (SELECT * FROM unnest(%s::uuid[], %s::uuid[]))",
                ([k[0] for k in gone], [k[1] for k in gone]),
            )
        new = [(k, nid) for k, nid in self.unread.items() if self.stored.get(k) != nid]
        if new:
            with self.cur.copy(f"COPY {self.unread_t} (user_id, thread_id, notification_id) FROM STDIN") as copy:
                for (user, thread), nid in new:
                    copy.write_row((user, thread, nid))
        if self.read:
            self.cur.execute(f"UPDATE {inbox} SET read = true WHERE notification_id = ANY(%s)", (self.read,))


THREAD_TYPES = frozenset(("Thread.Opened", "Thread.MessagePosted", "Thread.ReadUpTo"))
