"""The per-process container the API hands to controllers: settings, applications, pools, Redis, clock."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psycopg
import redis
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from api.accounts import AccountCache
from application.audit import Audit
from application.catalog import Catalog
from application.clock import Clock
from application.exports import Exports
from application.identity import Identity
from application.messaging import Messaging
from application.money import Money
from application.scheduling import Scheduling
from application.settings import Settings
from application.tutoring import Tutoring

log = logging.getLogger("tutorconnect.api")


async def _fast_json_async(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_loads(_decode_json, conn)


def _fast_json(conn: psycopg.Connection[Any]) -> None:
    """Read-model json/jsonb columns decoded by msgspec (same Python values as the json module, several times
    faster; search decodes a tutor's availability per row)."""
    set_json_loads(_decode_json, conn)


_decode_json = msgspec.json.Decoder().decode


class Breaker:
    """Skips a dependency for a while after it failed, so that while it is down requests are not each held up by
    its timeouts (Redis here: rate-limit counts and presence degrade, requests go on)."""

    def __init__(self, pause_s: float = 2.0) -> None:
        self.pause_s = pause_s
        self._until = 0.0

    @property
    def open(self) -> bool:
        """True while the dependency is being skipped."""
        return time.monotonic() < self._until

    def failed(self, what: str, error: BaseException) -> None:
        if not self.open:
            log.warning("%s unavailable (%s: %s); skipped for %.0f s", what, type(error).__name__, error, self.pause_s)
        self._until = time.monotonic() + self.pause_s


@dataclass
class Services:
    """What request handlers use; built once per API process."""

    settings: Settings
    clock: Clock
    identity: Identity
    catalog: Catalog
    audit: Audit
    exports: Exports
    tutoring: Tutoring
    money: Money
    scheduling: Scheduling
    messaging: Messaging
    reads: ConnectionPool[Any]
    redis: redis.Redis
    accounts: AccountCache
    extras: dict[str, Any] = field(default_factory=dict)
    _areads: AsyncConnectionPool[Any] | None = None
    _areads_loop: Any = None
    _areads_open: Any = None

    async def async_reads(self) -> AsyncConnectionPool[Any]:
        """The read-model pool for async handlers, opened on first use in this process's event loop.

        Handlers that answer a query with a few short statements and a little Python (search) run on the event
        loop with this pool instead of in Litestar's thread pool: handing each request to a thread and back, and
        the two threads taking turns at the GIL, cost about 30 % of a search request's CPU and most of its tail
        latency (docs/PERFORMANCE.md)."""
        loop = asyncio.get_running_loop()
        if self._areads is None or self._areads_loop is not loop:
            pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                self.settings.database_url,
                min_size=1,
                max_size=self.settings.pool_size,  # a request holds one for a few statements; more wait their turn
                kwargs={"autocommit": True, "row_factory": dict_row},
                configure=_fast_json_async,
                open=False,
            )
            # requests arriving while it opens wait for the same opening
            self._areads, self._areads_loop, self._areads_open = pool, loop, loop.create_task(pool.open())
        try:
            await self._areads_open
        except BaseException:
            self._areads = None  # the next request tries again
            raise
        return self._areads

    async def aclose(self) -> None:
        """Release the async pool (on shutdown, in its loop)."""
        if self._areads is not None:
            pool, self._areads = self._areads, None
            await pool.close()

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Connect everything (the event store tables are created on first use)."""
        clock = Clock(settings.redis_url, settings.test_clock)
        reads: ConnectionPool[Any] = ConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=settings.pool_size * 3,
            kwargs={"autocommit": True, "row_factory": dict_row},
            configure=_fast_json,
            open=True,
        )
        return cls(
            settings=settings,
            clock=clock,
            identity=Identity(settings, clock),
            catalog=Catalog(settings, clock),
            audit=Audit(settings, clock),
            exports=Exports(settings, clock),
            tutoring=Tutoring(settings, clock),
            money=Money(settings, clock),
            scheduling=Scheduling(settings, clock),
            messaging=Messaging(settings, clock),
            reads=reads,
            redis=redis.Redis.from_url(settings.redis_url, socket_timeout=1, socket_connect_timeout=1),
            accounts=AccountCache(settings.database_url),
        )

    def close(self) -> None:
        """Release pools."""
        self.accounts.close()
        self.reads.close()
        self.redis.close()


def connect_check(dsn: str) -> None:
    """Raise if the database is unreachable."""
    with psycopg.connect(dsn, connect_timeout=3) as c:
        c.execute("SELECT 1")
