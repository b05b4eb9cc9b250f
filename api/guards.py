"""Who before what: Litestar guards decide the caller (401) and their role (403) before the body or parameters
are read. The guard leaves the caller in the connection's `user` slot (Litestar's place for the authenticated
user), so a guarded handler reads it as `request.user`, typed by `Request[Account, Any, Any]`.

Guards run on the event loop: a caller this process has checked since their account last changed is known
without any I/O (api/accounts.py); otherwise the account row is read on the async read pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from api.deps import services
from application import context
from application.accounts import ACCOUNT_SQL, Account, account_of, require_role, token_subject
from domain.errors import Unauthenticated


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Account:
    """The caller of this request (checked once per request), stamped on the events it records."""
    known = connection.scope.get("user")
    if isinstance(known, Account):  # the route's guards ran before (the idempotency replay check runs them too)
        return known
    auth = connection.headers.get("authorization", "")
    if not auth.lower().startswith("bearer ") or not auth[7:].strip():
        raise Unauthenticated("a bearer access token is required")
    return await account_of_token(connection, auth[7:].strip())


async def account_of_token(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> Account:
    """The account an access token names, checked as every request is (the console's cookie carries the same
    token: api/console/session.py)."""
    svc = services(connection.app.state)
    user_id, session_id = token_subject(svc.settings.jwt_secret, token)
    account = svc.accounts.get(user_id, session_id)
    if account is None:  # not seen by this process since it last changed (api/accounts.py): ask the database
        generation = svc.accounts.generation
        pool = await svc.async_reads()
        async with pool.connection() as conn:
            row = await (await conn.execute(ACCOUNT_SQL, (session_id, user_id), prepare=True)).fetchone()
        account = account_of(user_id, row)
        svc.accounts.put(account, generation, session_id)
    context.set_actor(str(account.user_id), account.role)
    connection.scope["user"] = account
    return account


@dataclass(frozen=True)
class Role:
    """A guard: a signed-in, active user holding one of `roles`, or any signed-in user when `roles` is empty (401
    first, then 403). The route-table test reads `roles`."""

    roles: tuple[str, ...] = ()

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        account = await authenticate(connection)
        if self.roles:
            require_role(account, *self.roles)


STUDENT = [Role(("student",))]
TUTOR = [Role(("tutor",))]
ADMIN = [Role(("admin",))]
MONEY_STAFF = [Role(("finance", "admin"))]
BUYERS_AND_MONEY_STAFF = [Role(("student", "finance", "admin"))]
PARTIES = [Role(("student", "tutor"))]
USER = [Role()]
# The OpenAPI security requirement of every guarded route (the scheme itself is declared once, in api/app.py)
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
