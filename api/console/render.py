"""Rendering console pages: the common context, forms in, errors out as pages.

A page's handler reads with the same query functions as the JSON API and commands through the same
applications; only the rendering differs. Refusals keep their problem type: the handler's DomainError becomes the
API's problem document (api/problems.py), shown as a page with the same status."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

import msgspec
from anyio import to_thread
from litestar import Request, Response
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException
from litestar.params import Body
from litestar.response import Redirect, Template

from api import problems
from api.console.session import ROOT, SignInNeeded, login_url
from api.text import MESSAGE, unstorable
from application import context
from application.accounts import Account
from domain.errors import DomainError, ValidationFailed

T = TypeVar("T")

# (path, label, roles that see it) -- the navigation bar
NAV: list[tuple[str, str, tuple[str, ...]]] = [
    (ROOT + "/", "Dashboard", ("admin",)),
    (ROOT + "/users", "Users", ("admin",)),
    (ROOT + "/tutors", "Tutor approval", ("admin",)),
    (ROOT + "/subjects", "Subjects", ("admin",)),
    (ROOT + "/settings", "Settings", ("admin",)),
    (ROOT + "/events", "Event explorer", ("admin",)),
    (ROOT + "/finance", "Finance", ("admin", "finance")),
]


def page(request: Request[Any, Any, Any], template: str, status: int = 200, **context: Any) -> Template:
    """A console page: `template` with the signed-in user, the navigation and any notice carried by ?done=."""
    user = request.scope.get("user")
    role = user.role if isinstance(user, Account) else None
    nav = [(path, label) for path, label, roles in NAV if role in roles]
    return Template(
        template_name=template,
        status_code=status,
        context={
            "user": user,
            "nav": nav,
            "path": request.url.path,
            "done": request.query_params.get("done", ""),
            "recorded": request.query_params.get("recorded", ""),
            **context,
        },
        headers={"Cache-Control": "no-store"},
    )


def back(path: str, done: str = "", **params: str) -> Redirect:
    """POST/redirect/GET: back to `path` with a notice of what was done."""
    query = {k: v for k, v in {"done": done, **params}.items() if v}
    return Redirect(path + (("?" + urlencode(query)) if query else ""), status_code=303)


# A sync handler's posted form (`data: Form`): Litestar parses it (the CSRF middleware has read it already)
Form = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]


def fields(data: Mapping[str, Any]) -> dict[str, str]:
    """A posted form's text fields, without the CSRF token; unstorable text is refused as in a JSON body."""
    found = {k: v for k, v in data.items() if isinstance(v, str) and k != "_csrf_token"}
    bad = [k for k, v in found.items() if unstorable(k) or unstorable(v)]
    if bad:
        raise ValidationFailed([(k, MESSAGE) for k in bad])
    return found


async def form(request: Request[Any, Any, Any]) -> dict[str, str]:
    """An async handler's posted form (`fields` of it)."""
    return fields(await request.form())


def convert(fields: dict[str, Any], shape: type[T]) -> T:
    """A form's fields as a command's Struct (strings to numbers and booleans as msgspec converts them); 422
    naming the field otherwise."""
    try:
        return msgspec.convert(fields, shape, strict=False)
    except msgspec.ValidationError as e:
        text = str(e)
        at = re.search(r"at `\$\.([^`]+)`", text) or re.search(r"missing required field `([^`]+)`", text)
        raise ValidationFailed([(at.group(1) if at else "form", text.split(" - at ")[0])]) from None


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """A blocking call (the event store, Stripe, argon2, the ledger replay) off the event loop, in the request's
    context (actor, correlation id)."""
    return await to_thread.run_sync(fn, *args)


def refused(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Every error on a console route: sign-in redirects for a missing session, otherwise the API's problem
    (status, type, title, detail, errors) rendered as a page."""
    if isinstance(exc, SignInNeeded):
        if exc.renewable:
            return Redirect(f"{ROOT}/renew?{urlencode({'next': exc.path})}", status_code=303)
        return Redirect(login_url(exc.path), status_code=303)
    if isinstance(exc, DomainError):
        doc = problems.domain_error(request, exc)
    elif isinstance(exc, HTTPException):
        doc = problems.http_error(request, exc)
    elif isinstance(exc, problems.ProjectionLagging):
        doc = problems.lagging(request, exc)
    elif isinstance(exc, problems.UNAVAILABLE):
        doc = problems.unavailable(request, exc)
    else:
        doc = problems.unexpected(request, exc)
    body = doc.content if isinstance(doc.content, dict) else {}
    status = int(body.get("status", 500))
    return page(request, "error.html", status=status, problem=body)


def done(request: Request[Any, Any, Any], path: str, notice: str, **params: str) -> Redirect:
    """After a command, redirect to `path` with a notice and the request's correlation id (the page links what it
    recorded in the event explorer). The next page waits for the command's events: the append kept them as the
    caller's last write (read-your-writes, ADR 0004)."""
    return back(path, notice, recorded=context.current().correlation_id, **params)
