"""messaging: threads, messages and read positions for inboxes and history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from domain.messaging import Thread
from projections.runner import Envelope, Projection, topic_of

# who shares a thread with a user (params: the user's id twice), for presence frames (api/realtime.py Counterparts)
COUNTERPARTS_SQL = (
    "SELECT DISTINCT p AS user_id FROM threads, unnest(participant_ids) AS p"
    " WHERE %s::uuid = ANY(participant_ids) AND p <> %s::uuid"
)


class Messaging(Projection):
    """One row per thread and per message; unread counts come from read positions."""

    name = "messaging"
    version = 1
    # one message row per event: at worst one message is missing from the history (and recorded)
    skippable = True
    tables = ("threads", "thread_messages", "thread_reads")
    topics = tuple(
        topic_of(c)
        for c in (Thread.Opened, Thread.MessagePosted, Thread.MessageEdited, Thread.MessageDeleted, Thread.ReadUpTo)
    )

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        threads, messages, reads = t["threads"], t["thread_messages"], t["thread_reads"]
        for e in events:
            d, tid, kind = e.data, e.aggregate_id, e.type
            if kind == "Thread.Opened":
                cur.execute(
                    f"INSERT INTO {threads} (thread_id, participant_ids, last_position) VALUES (%s, %s, %s)",
                    (tid, d["participant_ids"], e.position),
                )
            elif kind == "Thread.MessagePosted":
                atts = [{k: a[k] for k in ("id", "filename", "content_type", "size", "key")} for a in d["attachments"]]
                cur.execute(
                    f"INSERT INTO {messages} (message_id, thread_id, sender_id, body, created_at, attachments, position)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (d["message_id"], tid, d["sender_id"], d["body"], d["sent_at"], Jsonb(atts), e.position),
                )
                last = {
                    "id": d["message_id"],
                    "sender_id": d["sender_id"],
                    "body": d["body"],
                    "created_at": d["sent_at"],
                }
                cur.execute(
                    f"UPDATE {threads} SET last_message = %s, last_position = %s WHERE thread_id = %s",
                    (Jsonb(last), e.position, tid),
                )
                cur.execute(
                    f"INSERT INTO {reads} (thread_id, user_id, read_position) VALUES (%s, %s, %s)"
                    f" ON CONFLICT (thread_id, user_id) DO UPDATE SET read_position ="
                    f" greatest({reads}.read_position, EXCLUDED.read_position)",
                    (tid, d["sender_id"], e.position),
                )
            elif kind == "Thread.MessageEdited":
                cur.execute(
                    f"UPDATE {messages} SET body = %s, edited_at = %s WHERE message_id = %s",
                    (d["body"], d["edited_at"], d["message_id"]),
                )
                cur.execute(
                    f"UPDATE {threads} SET last_message = last_message || jsonb_build_object('body', %s::text)"
                    " WHERE thread_id = %s AND last_message->>'id' = %s",
                    (d["body"], tid, d["message_id"]),
                )
            elif kind == "Thread.MessageDeleted":
                cur.execute(
                    f"UPDATE {messages} SET body = NULL, deleted = true WHERE message_id = %s", (d["message_id"],)
                )
                cur.execute(
                    f"UPDATE {threads} SET last_message = last_message || '{{\"body\": null}}'::jsonb"
                    " WHERE thread_id = %s AND last_message->>'id' = %s",
                    (tid, d["message_id"]),
                )
            elif kind == "Thread.ReadUpTo":
                cur.execute(
                    f"INSERT INTO {reads} (thread_id, user_id, read_position) SELECT %s, %s, position FROM {messages}"
                    f" WHERE message_id = %s ON CONFLICT (thread_id, user_id) DO UPDATE SET read_position ="
                    f" greatest({reads}.read_position, EXCLUDED.read_position)",
                    (tid, d["user_id"], d["message_id"]),
                )
