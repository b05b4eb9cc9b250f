"""Health, readiness and the test clock."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, put

from api.deps import services
from api.guards import ADMIN
from api.services import connect_check
from domain.errors import NotFound
from projections import runtime


class ClockIn(msgspec.Struct):
    """PUT /admin/test-clock."""

    now: datetime


@get("/healthz", tags=["system"])
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/readyz", tags=["system"], sync_to_thread=True)
def readyz(request: Request[Any, Any, Any]) -> Response[Any]:
    """Store, broker and storage reachable; projection lag per projection, and each projection held back by an
    event it cannot apply (position, event, error)."""
    svc = services(request.app.state)
    checks: dict[str, Any] = {}
    try:
        connect_check(svc.settings.database_url)
        checks["store"] = "ok"
    except Exception as e:  # readiness reports any failure as not ready
        checks["store"] = f"unreachable: {type(e).__name__}"
    try:
        svc.redis.ping()
        checks["broker"] = "ok"
    except Exception as e:  # readiness reports any failure as not ready
        checks["broker"] = f"unreachable: {type(e).__name__}"
    storage = svc.extras.get("storage_check")
    if storage is not None:
        try:
            storage()
            checks["storage"] = "ok"
        except Exception as e:  # readiness reports any failure as not ready
            checks["storage"] = f"unreachable: {type(e).__name__}"
    else:
        checks["storage"] = "not configured"
    lag: dict[str, int] = {}
    failed: list[dict[str, Any]] = []
    if checks["store"] == "ok":
        lag = {s.name: s.lag for s in runtime.status(svc.settings.database_url) if s.state == "active"}
        failed = [f.as_dict() for f in runtime.failures(svc.settings.database_url, include_skipped=False)]
    ready = all(v in ("ok",) for k, v in checks.items() if k != "storage" or storage is not None)
    # A projection stopped at an event does not make the process unready (a balancer would then take every API
    # process out for one read model); it is reported here, and its queries answer 503 naming it.
    status = ("degraded" if failed else "ready") if ready else "not ready"
    body = {"status": status, "checks": checks, "projection_lag": lag, "projection_failures": failed}
    return Response(body, status_code=200 if ready else 503)


class TestClockController(Controller):
    """Moves business time for acceptance tests; exists only with TUTORCONNECT_TEST_CLOCK=1."""

    path = "/admin/test-clock"
    guards = ADMIN
    tags = ["admin"]
    security = [{"bearer": []}]

    @put("/", sync_to_thread=True)
    def set_clock(self, request: Request[Any, Any, Any], data: ClockIn) -> dict[str, Any]:
        """Set the server's notion of now."""
        svc = services(request.app.state)
        if not svc.clock.enabled:
            raise NotFound("the test clock is not enabled")
        when = data.now if data.now.tzinfo else data.now.replace(tzinfo=__import__("datetime").UTC)
        svc.clock.set(when)
        return {"now": svc.clock.now(), "test_clock": True}

    @delete("/", status_code=200, sync_to_thread=True)
    def reset_clock(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        """Return to real time."""
        svc = services(request.app.state)
        if not svc.clock.enabled:
            raise NotFound("the test clock is not enabled")
        svc.clock.reset()
        return {"now": svc.clock.now(), "test_clock": False}
