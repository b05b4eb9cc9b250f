"""The accounts the guards have checked, kept per API process until identity says they changed.

Why: the guards decide 401/403 before a body is read, on the event loop; an account lookup there (async
psycopg) while the sync handlers run in threads made the loop and the threads take turns at the GIL, and cost
authenticated GETs ~0.4 ms of CPU each (bench/api_get.py: /admin/users 1.0 -> 1.5 ms). With this cache a known
caller is a dict lookup; the database is asked once per caller and process, and again after any change.

How it stays right: every change of an account's role, activity or existence is saved with `pg_notify` on
ACCOUNTS_CHANNEL in the same transaction (application/identity.py), delivered at commit. A listener thread drops
the named entry; the process that made the change drops it at once (`forget`). An entry is only stored if no
change was heard since the lookup began (`generation`), and nothing is cached while the listener is not
connected (it then starts from an empty cache), so a missed notification cannot leave a stale entry. Only
active accounts are cached: a refused one is looked up again on its next request."""

from __future__ import annotations

import logging
import threading
from uuid import UUID

import psycopg

from application.accounts import ACCOUNTS_CHANNEL, Account

log = logging.getLogger("tutorconnect.api")


class AccountCache:
    """Active accounts by user id, valid while the listener is connected."""

    MAX = 100_000

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._lock = threading.Lock()
        self._entries: dict[UUID, dict[UUID | None, Account]] = {}  # by user, then by session
        self._generation = 0
        self._live = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, user_id: UUID, session_id: UUID | None = None) -> Account | None:
        """The cached account as seen through one session, or None (look it up)."""
        self._start()
        sessions = self._entries.get(user_id)
        return sessions.get(session_id) if sessions else None

    @property
    def generation(self) -> int:
        """Read before a lookup, handed to `put` after it."""
        return self._generation

    def put(self, account: Account, generation: int, session_id: UUID | None = None) -> None:
        """Keep an account just read through a session, unless a change was heard meanwhile or the listener is
        down."""
        with self._lock:
            if self._live and generation == self._generation:
                if len(self._entries) >= self.MAX:
                    self._entries.clear()
                self._entries.setdefault(account.user_id, {})[session_id] = account

    def forget(self, user_id: UUID) -> None:
        """The account (or one of its sessions) changed: drop it (and make lookups in flight not store what they
        read)."""
        with self._lock:
            self._entries.pop(user_id, None)
            self._generation += 1

    def _reset(self, live: bool) -> None:
        with self._lock:
            self._entries.clear()
            self._generation += 1
            self._live = live

    def close(self) -> None:
        self._stop.set()

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._listen, name="account-changes", daemon=True)
                    self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                # TCP keepalives and a query each second: a connection that died silently is noticed within
                # seconds (a closed one at once), and then nothing is trusted
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5, keepalives=1,
                                     keepalives_idle=5, keepalives_interval=2, keepalives_count=2) as conn:  # fmt: skip
                    conn.execute(f"LISTEN {ACCOUNTS_CHANNEL}")
                    self._reset(live=True)  # whatever was missed before LISTEN took effect is forgotten
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            try:
                                self.forget(UUID(note.payload))
                            except ValueError:
                                self._reset(live=True)
                        conn.execute("SELECT 1")
            except Exception as e:  # any failure of the connection: cache nothing until listening again
                log.warning("account-change listener lost its connection (%s); not caching accounts", e)
            finally:
                self._reset(live=False)
            self._stop.wait(1.0)
