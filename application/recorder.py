"""The event store's recorder: eventsourcing's PostgreSQL recorder with our one-round-trip append, side writes
and each writer's last write (read-your-writes, ADR 0004)."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
import psycopg.sql
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry

from application.pg_arrays import ByteaArray, Int4Array, TextArray, UuidArray


class Recorder(PostgresApplicationRecorder):
    """eventsourcing's recorder, plus `side_writes`: SQL run in the same transaction as the events, and a
    one-round-trip append.

    Every save calls `tutorconnect_append` (created with the table): the EXCLUSIVE table lock, NOTIFY and INSERT
    done by the server in one statement, its own transaction in autocommit. Side writes are for the few things
    that must change atomically with events but may not enter the log (password hashes, refresh-token digests)
    and for command-side lookup rows (the account table the auth check reads): such a save runs them and then the
    append in one plain transaction. The library's own path is not used: it pipelines BEGIN, lock, NOTIFY,
    side writes, INSERT and COMMIT with prepared statements, and once, in the contract tests right after 20
    concurrent registrations of one email (19 refused in the pipeline), later requests on a connection failed
    with "prepared statement _pg3_N does not exist" (not reproduced in isolation; no pipeline is used now).
    The library's optional "DB functions" mode is not used either: its function takes no table lock, so ids
    would no longer be issued in commit order and followers that pass over gaps would skip events (ADR 0002).
    """

    APPEND = "SELECT tutorconnect_append(%s::uuid[], %s::int4[], %s::text[], %s::bytea[], %s, %s::uuid) AS id"
    # In the calling statement's own transaction: the EXCLUSIVE table lock that keeps ids in commit order, the
    # NOTIFY that wakes followers (delivered at commit), the INSERT; ids come back in order. With a writer (the
    # user whose command this is), their last write moves to the new head in the same transaction: their next
    # query waits for it (read-your-writes, ADR 0004). The head is the last id this statement drew from the
    # sequence (rows draw ids in order); under the lock every later append draws higher ones, so the newest
    # write simply replaces the row.
    APPEND_FUNCTION = """
        CREATE OR REPLACE FUNCTION tutorconnect_append(
            ids uuid[], versions int4[], topics text[], states bytea[], lock_timeout text, writer uuid
        ) RETURNS SETOF bigint LANGUAGE plpgsql AS $body$
        BEGIN
            PERFORM set_config('lock_timeout', lock_timeout, true);
            LOCK TABLE {table} IN EXCLUSIVE MODE;
            NOTIFY {channel};
            RETURN QUERY
                INSERT INTO {table} (originator_id, originator_version, topic, state)
                SELECT * FROM unnest(ids, versions, topics, states)
                RETURNING notification_id;
            IF writer IS NOT NULL THEN
                INSERT INTO {last_writes} (user_id, position) VALUES (writer, currval({sequence}))
                ON CONFLICT (user_id) DO UPDATE SET position = excluded.position;
            END IF;
        END
        $body$"""
    # Each user's newest written position, read by their queries (api/deps.py `reading`). Made with the function
    # that writes it, so that every database holding the log has it. Updated in place (no indexed column
    # changes, room left on each page): HOT updates.
    LAST_WRITES = """
        CREATE TABLE IF NOT EXISTS {last_writes} (
            user_id uuid PRIMARY KEY,
            position bigint NOT NULL
        ) WITH (fillfactor = 50)"""
    LAST_WRITES_TABLE = "tutorconnect_last_writes"
    CREATE_LOCK = 7_301_552_003  # serialises concurrent starters' table and function creation

    def create_table(self) -> None:
        # Processes starting together (granian's workers, `serve`'s children) each create the table: the
        # library's statements include a CREATE OR REPLACE FUNCTION, and two of those at once fail with "tuple
        # concurrently updated". One at a time, under a session advisory lock.
        with self.datastore.get_connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (self.CREATE_LOCK,))
            try:
                super().create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.CREATE_LOCK,))

    def _create_table(self, curs: Any) -> None:
        super()._create_table(curs)
        last_writes = psycopg.sql.Identifier(self.LAST_WRITES_TABLE)
        curs.execute(psycopg.sql.SQL(self.LAST_WRITES).format(last_writes=last_writes))
        statement = psycopg.sql.SQL(self.APPEND_FUNCTION).format(
            table=psycopg.sql.Identifier(self.events_table_name),
            channel=psycopg.sql.Identifier(self.channel_name),
            last_writes=last_writes,
            sequence=psycopg.sql.Literal(f"{self.events_table_name}_notification_id_seq"),  # the bigserial's
        )
        body = statement.as_string(curs.connection).split("$body$")[1]
        curs.execute("SELECT prosrc FROM pg_proc WHERE proname = 'tutorconnect_append'")
        # Replaced only when it differs (every process start would replace it otherwise). The five-argument
        # version of earlier releases (no writer) is left in place: processes of the old release still running
        # during an upgrade go on calling it.
        if body not in [r["prosrc"] for r in curs.fetchall()]:
            curs.execute(statement)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)  # as the library's insert_events
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Append (and run the side writes) in one transaction; `writer`: the user whose last write this is."""
        side_writes = kwargs.get("side_writes") or ()
        writer: UUID | None = kwargs.get("writer")
        with self.datastore.get_connection() as conn:
            if not side_writes:  # autocommit: the one statement is the transaction
                return self._append(conn, stored_events, writer) if stored_events else None
            with conn.transaction():
                with conn.cursor() as curs:
                    for sql, params in side_writes:
                        curs.execute(sql, params)
                return self._append(conn, stored_events, writer) if stored_events else None

    def _append(self, conn: Any, stored_events: Sequence[StoredEvent], writer: UUID | None) -> list[int]:
        params = (
            UuidArray([typing.cast(UUID, e.originator_id) for e in stored_events]),
            Int4Array([e.originator_version for e in stored_events]),
            TextArray([e.topic for e in stored_events]),
            ByteaArray([e.state for e in stored_events]),
            f"{self.datastore.lock_timeout}s",
            writer,
        )
        with conn.cursor(binary=True) as curs:
            curs.execute(self.APPEND, params, prepare=True)
            return [row["id"] for row in curs.fetchall()]
