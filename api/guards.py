"""Who before what: Litestar guards decide the caller (401) and their role (403) before the body or parameters
are read. A guarded route's handler gets the caller from `deps.caller`, which only reads what the guard found.

Guards run on the event loop: a caller this process has checked since their account last changed is known
without any I/O (api/accounts.py); otherwise the account row is read on the async read pool."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from api.services import Services
from application import context
from application.identity import ACCOUNT_SQL, Account, account_of, require_role, token_subject
from domain.errors import Unauthenticated

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]
ACCOUNT = "account"  # the scope-state key the caller is kept under for the handler


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Account:
    """The caller of this request (checked once per request), stamped on the events it records."""
    state = connection.scope.setdefault("state", {})  # type: ignore[typeddict-item]
    known = state.get(ACCOUNT)
    if known is not None:
        return known  # type: ignore[no-any-return]
    auth = connection.headers.get("authorization", "")
    if not auth.lower().startswith("bearer ") or not auth[7:].strip():
        raise Unauthenticated("a bearer access token is required")
    svc: Services = connection.app.state["services"]
    user_id, session_id = token_subject(svc.settings.jwt_secret, auth[7:].strip())
    account = svc.accounts.get(user_id, session_id)
    if account is None:  # not seen by this process since it last changed (api/accounts.py): ask the database
        generation = svc.accounts.generation
        pool = await svc.async_reads()
        async with pool.connection() as conn:
            row = await (await conn.execute(ACCOUNT_SQL, (session_id, user_id), prepare=True)).fetchone()
        account = account_of(user_id, row)
        svc.accounts.put(account, generation, session_id)
    context.set_actor(str(account.user_id), account.role)
    state[ACCOUNT] = account
    return account


async def user(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Any signed-in, active user."""
    await authenticate(connection)


user.roles = ()  # type: ignore[attr-defined]  # read by the route-table test: no role restriction


def role(*roles: str) -> Guard:
    """A signed-in, active user holding one of `roles` (401 first, then 403)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        require_role(await authenticate(connection), *roles)

    guard.roles = roles  # type: ignore[attr-defined]
    guard.__name__ = f"role({', '.join(roles)})"
    return guard


STUDENT = [role("student")]
TUTOR = [role("tutor")]
ADMIN = [role("admin")]
MONEY_STAFF = [role("finance", "admin")]
BUYERS_AND_MONEY_STAFF = [role("student", "finance", "admin")]
PARTIES = [role("student", "tutor")]
USER = [user]
# The OpenAPI security requirement of every guarded route (the scheme itself is declared once, in api/app.py)
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
