"""Sign in, renew, sign out: the console's side of Identity's login, refresh and logout."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Redirect, Template

from api.console.render import form, in_thread, page
from api.console.session import ACCESS, REFRESH, ROOT, login_url, safe_next, with_tokens, without_tokens
from api.guards import account_of_token
from api.services import Services
from application.identity import Identity
from domain.errors import DomainError, Unauthenticated


@get("/login")
async def login_page(request: Request[Any, Any, Any], next: str | None = None) -> Template:  # noqa: A002
    """The sign-in form."""
    return page(request, "login.html", next=safe_next(next), error="")


@post("/login", status_code=303)
async def login(request: Request[Any, Any, Any], services: Services) -> Redirect | Template:
    """Email and password, checked by the same login as POST /auth/login (and rate limited with it)."""
    fields = await form(request)
    target = safe_next(fields.get("next"))
    try:
        o = await in_thread(services.identity.login, fields.get("email", ""), fields.get("password", ""))
    except Unauthenticated as e:
        return page(request, "login.html", status=401, next=target, error=e.detail, email=fields.get("email", ""))
    assert o.tokens is not None, "a login always opens a session"
    return with_tokens(Redirect(target, status_code=303), services.settings, o.tokens)


@get("/renew", sync_to_thread=True)
def renew(request: Request[Any, Any, Any], identity: Identity, next: str | None = None) -> Redirect:  # noqa: A002
    """An expired access token renewed from the refresh cookie (rotating it), then back to the page."""
    target = safe_next(next)
    token = request.cookies.get(REFRESH, "")
    try:
        o = identity.refresh(token) if token else None
    except DomainError:
        o = None
    if o is None or o.tokens is None:
        return without_tokens(Redirect(login_url(target), status_code=303), identity.settings)
    return with_tokens(Redirect(target, status_code=303), identity.settings, o.tokens)


@post("/logout", status_code=303)
async def logout(request: Request[Any, Any, Any], services: Services) -> Redirect:
    """Revoke the session (its refresh family) and clear the cookies."""
    await form(request)  # the CSRF token was checked by the middleware; nothing else is read
    token = request.cookies.get(REFRESH, "")
    access = request.cookies.get(ACCESS, "")
    if token and access:
        try:
            account = await account_of_token(request, access)
            await in_thread(services.identity.logout, account, token)
            services.accounts.forget(account.user_id)
        except DomainError:
            pass  # already signed out or expired: clearing the cookies is all that is left to do
    return without_tokens(Redirect(f"{ROOT}/login", status_code=303), services.settings)
