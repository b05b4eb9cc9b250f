"""Health, readiness and the test clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Controller, Response, delete, get, put
from litestar.openapi.datastructures import ResponseSpec

from api.guards import ADMIN, BEARER
from api.schemas.identity import (
    HealthOut,
    ProjectionFailureOut,
    Readiness,
    ReadinessChecks,
    ReadinessOut,
    TestClockOut,
)
from api.services import Services, connect_check
from application.clock import Clock
from domain.errors import NotFound
from projections import generations


class ClockIn(msgspec.Struct):
    """PUT /admin/test-clock."""

    now: datetime


@get("/healthz", tags=["system"])
async def healthz() -> HealthOut:
    """The process is up."""
    return HealthOut("ok")


@get(
    "/readyz",
    tags=["system"],
    sync_to_thread=True,
    responses={503: ResponseSpec(ReadinessOut, description="Not ready: what is unreachable (the same shape)")},
)
def readyz(services: Services) -> Response[ReadinessOut]:
    """Store, broker and storage reachable; projection lag per projection, and each projection held back by an
    event it cannot apply (position, event, error)."""
    dsn = services.settings.database_url
    storage = services.extras.get("storage_check")
    checks = ReadinessChecks(
        store=_reachable(lambda: connect_check(dsn)),
        broker=_reachable(services.redis.ping),
        storage=_reachable(storage) if storage is not None else "not configured",
    )
    lag: dict[str, int] = {}
    failed: list[ProjectionFailureOut] = []
    if checks.store == "ok":
        lag = {s.name: s.lag for s in generations.status(dsn) if s.state == "active"}
        failed = [ProjectionFailureOut.of(f) for f in generations.failures(dsn, include_skipped=False)]
    ready = checks.store == checks.broker == "ok" and (storage is None or checks.storage == "ok")
    # A projection stopped at an event does not make the process unready (a balancer would then take every API
    # process out for one read model); it is reported here, and its queries answer 503 naming it.
    status: Readiness = ("degraded" if failed else "ready") if ready else "not ready"
    return Response(ReadinessOut(status, checks, lag, failed), status_code=200 if ready else 503)


def _reachable(check: Callable[[], Any]) -> str:
    """The check's outcome: ok, or why its service is unreachable."""
    try:
        check()
    except Exception as e:  # readiness reports any failure as not ready
        return f"unreachable: {type(e).__name__}"
    return "ok"


class TestClockController(Controller):
    """Moves business time for acceptance tests; exists only with TUTORCONNECT_TEST_CLOCK=1."""

    path = "/admin/test-clock"
    guards = ADMIN
    tags = ["admin"]
    security = BEARER

    @put("/", sync_to_thread=True)
    def set_clock(self, clock: Clock, data: ClockIn) -> TestClockOut:
        """Set the server's notion of now."""
        _enabled(clock).set(data.now if data.now.tzinfo else data.now.replace(tzinfo=UTC))
        return TestClockOut(clock.now(), test_clock=True)

    @delete("/", status_code=200, sync_to_thread=True)
    def reset_clock(self, clock: Clock) -> TestClockOut:
        """Return to real time."""
        _enabled(clock).reset()
        return TestClockOut(clock.now(), test_clock=False)


def _enabled(clock: Clock) -> Clock:
    """The clock, when the test clock is enabled (404 otherwise: the route does not exist)."""
    if not clock.enabled:
        raise NotFound("the test clock is not enabled")
    return clock
