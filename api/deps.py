"""Request helpers shared by controllers: the injected parts of the process, read-your-writes, command responses,
cursors."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.datastructures import State
from litestar.di import Provide

from api.problems import ProjectionLagging
from api.services import Services
from application.accounts import Account
from domain.errors import ValidationFailed
from projections.waiting import wait_for, wait_for_async

MAX_WAIT_S = 5.0
T = TypeVar("T")


def services(state: State) -> Services:
    """The process's Services (api/app.py keeps them in the app state)."""
    svc = state.get("services")
    if not isinstance(svc, Services):  # an app built without them: a bug, not the client's fault
        raise RuntimeError("the app state holds no Services (build the app with api.app.create_app)")
    return svc


def providers(svc: Services) -> dict[str, Provide]:
    """The process's parts by name, for the app's `dependencies`: a handler declares what it uses
    (`scheduling: Scheduling`, `clock: Clock`) and Litestar passes it in.

    Each provider hands back an object built once per process: no arguments (Litestar then parses nothing for it),
    sync and not sent to a thread. A handler declares at most one of them: Litestar 2 resolves two dependencies of
    one level in an anyio task group (litestar#4563), measured at half again the time of a trivial route; a handler
    that needs several parts declares `services: Services`. The caller is not one of them: the guard leaves it in
    `request.user` (api/guards.py)."""
    parts: dict[str, object] = {
        "services": svc,
        "settings": svc.settings,
        "clock": svc.clock,
        "identity": svc.identity,
        "catalog": svc.catalog,
        "audit": svc.audit,
        "exports": svc.exports,
        "tutoring": svc.tutoring,
        "money": svc.money,
        "scheduling": svc.scheduling,
        "messaging": svc.messaging,
    }
    return {name: Provide(_given(part), sync_to_thread=False) for name, part in parts.items()}


def _given(part: T) -> Callable[[], T]:
    def provide() -> T:
        return part

    return provide


def min_position(request: Request[Any, Any, Any]) -> int:
    """The position a query must reflect by the client's word: X-Min-Position (0 without it)."""
    raw = request.headers.get("x-min-position")
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed([("X-Min-Position", "an integer event position")]) from None


@contextlib.contextmanager
def reading(
    request: Request[Any, Any, Any], names: tuple[str, ...], account: Account | None = None
) -> Iterator[tuple[Any, int]]:
    """A read-model connection once `names` have reached the wanted position -- X-Min-Position, and the caller's
    own last write (ADR 0004) -- else 503 projection-lagging."""
    svc = services(request.app.state)
    wanted = min_position(request)
    with svc.reads.connection() as conn:
        writer = account.user_id if account is not None else None
        reached = wait_for(conn, names, wanted, MAX_WAIT_S, writer)
        if reached is None:
            raise ProjectionLagging(f"read models {', '.join(names)} have not reached the position asked for yet")
        yield conn, reached


@contextlib.asynccontextmanager
async def reading_async(
    request: Request[Any, Any, Any], names: tuple[str, ...]
) -> AsyncIterator[tuple[Any, int | None]]:
    """`reading` for async handlers (anonymous reads: X-Min-Position only), on the async read pool.

    Without X-Min-Position there is nothing to wait for, and the position is not read here (None): the handler
    reads it in its first statement (POSITION_SQL as a column), one round trip fewer, and as of the very snapshot
    its rows come from."""
    svc = services(request.app.state)
    wanted = min_position(request)
    pool = await svc.async_reads()
    async with pool.connection() as conn:
        reached = await wait_for_async(conn, names, wanted, MAX_WAIT_S) if wanted > 0 else None
        if wanted > 0 and reached is None:
            raise ProjectionLagging(f"read models {', '.join(names)} have not reached position {wanted} yet")
        yield conn, reached


def query(body: T, position: int, status: int = 200) -> Response[T]:
    """A query response with X-Projection-Position."""
    return Response(body, status_code=status, headers={"X-Projection-Position": str(position)})


def command(body: T, position: int, status: int = 200) -> Response[T]:
    """A command response with X-Event-Position (the append kept it as the caller's last write, which their later
    queries wait for: ADR 0004)."""
    return Response(body, status_code=status, headers={"X-Event-Position": str(position)})


def limit_of(raw: int | None) -> int:
    """`?limit=` with the contract's default (20) and maximum (100)."""
    if raw is None:
        return 20
    if raw < 1 or raw > 100:
        raise ValidationFailed([("limit", "between 1 and 100")])
    return raw


def encode_cursor(value: Any) -> str:
    """An opaque keyset cursor."""
    return base64.urlsafe_b64encode(msgspec.json.encode(value)).decode().rstrip("=")


def decode_cursor(cursor: str | None, shape: Any = Any) -> Any:
    """Read a cursor made by `encode_cursor` for this list, as `shape` (422 for anything else: a tampered
    cursor or another list's)."""
    if not cursor:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return msgspec.convert(value, shape)
    except (ValueError, msgspec.ValidationError):
        raise ValidationFailed([("cursor", "not a cursor this API issued")]) from None


def like_pattern(q: str) -> str:
    """A literal, case-insensitive substring pattern (`%` and `_` match themselves)."""
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
