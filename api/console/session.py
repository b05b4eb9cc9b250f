"""The console's session: the API's own token pair, kept in HttpOnly, SameSite=Strict cookies scoped to /console.

Signing in calls the same `Identity.login` as POST /auth/login, and every page is checked by the same account
check as a bearer request (api/guards.py `account_of_token`), so a deactivated, deleted or logged-out user loses
the console at once, as they lose the API. An expired access token is renewed once from the refresh cookie
(`Identity.refresh`, which rotates it); a spent or revoked one sends the browser back to the sign-in page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect

from api.guards import account_of_token
from application.accounts import Account, require_role
from application.settings import Settings
from application.tokens import Tokens
from domain.errors import Unauthenticated

ROOT = "/console"
ACCESS = "tc_access"
REFRESH = "tc_refresh"


class SignInNeeded(Unauthenticated):
    """No valid console session: the browser goes to the sign-in page (or renews its access token first)."""

    def __init__(self, path: str, renewable: bool) -> None:
        super().__init__("sign in to use the console")
        self.path = path
        self.renewable = renewable


def secure(settings: Settings) -> bool:
    """Cookies are Secure unless CONSOLE_INSECURE_COOKIES=1 (plain HTTP to a host other than localhost, where a
    browser would drop a Secure cookie; browsers accept Secure cookies from http://localhost and 127.0.0.1)."""
    return not settings.console_insecure_cookies


def cookie_options(settings: Settings, max_age: int | None) -> dict[str, Any]:
    return {"path": ROOT, "httponly": True, "samesite": "strict", "secure": secure(settings), "max_age": max_age}


def with_tokens(response: Redirect, settings: Settings, tokens: Tokens) -> Redirect:
    """`response` carrying the session cookies of a fresh token pair."""
    response.set_cookie(ACCESS, tokens.access_token, **cookie_options(settings, tokens.expires_in))
    response.set_cookie(REFRESH, tokens.refresh_token, **cookie_options(settings, 30 * 24 * 3600))
    return response


def without_tokens(response: Redirect, settings: Settings) -> Redirect:
    """`response` clearing the session cookies."""
    for name in (ACCESS, REFRESH):
        response.delete_cookie(name, path=ROOT)
    return response


def safe_next(raw: str | None) -> str:
    """Where to go after signing in: a console path only (never another site: an open redirect)."""
    if raw and raw.startswith(ROOT + "/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return ROOT + "/"


def login_url(path: str) -> str:
    return f"{ROOT}/login?next={quote(path, safe='/')}"


@dataclass(frozen=True)
class ConsoleRole:
    """A page guard: a signed-in console user holding one of `roles` (all signed-in users when empty). Without a
    session the page redirects to the sign-in page; with the wrong role it answers 403, as the API does."""

    roles: tuple[str, ...] = ()

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        token = connection.cookies.get(ACCESS)
        target = connection.url.path + (f"?{connection.url.query}" if connection.url.query else "")
        if not token:
            raise SignInNeeded(target, bool(connection.cookies.get(REFRESH)))
        try:
            account: Account = await account_of_token(connection, token)
        except Unauthenticated:
            raise SignInNeeded(target, bool(connection.cookies.get(REFRESH))) from None
        if self.roles:
            require_role(account, *self.roles)


ADMIN_PAGE = [ConsoleRole(("admin",))]
MONEY_PAGE = [ConsoleRole(("finance", "admin"))]
STAFF_PAGE = [ConsoleRole(("admin", "finance"))]
