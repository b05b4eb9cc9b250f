"""The back office in the browser: server-rendered pages under /console over the same applications, read models
and authorisation as the JSON API (docs/ARCHITECTURE.md "Console").

Every form carries a CSRF token (Litestar's CSRFMiddleware on this router only: the JSON API authenticates by
bearer token, which a browser never sends on its own); the session is the API's token pair in cookies
(api/console/session.py)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from litestar import Request, Router, get
from litestar.config.csrf import CSRFConfig
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from litestar.types import ControllerRouterHandler

from api import problems
from api.console import signin
from api.console.pages import PAGES
from api.console.render import page, refused
from api.console.session import ROOT, secure
from application.settings import Settings

HERE = Path(__file__).parent


def csrf_config(settings: Settings) -> CSRFConfig:
    """Double-submit tokens: an HttpOnly cookie and the same token, signed, in each form (`csrf_input`)."""
    secret = hmac.new(settings.jwt_secret.encode(), b"tutorconnect console csrf", hashlib.sha256).hexdigest()
    return CSRFConfig(
        secret=secret,
        cookie_name="tc_csrf",
        cookie_path=ROOT,
        cookie_httponly=True,
        cookie_samesite="strict",
        cookie_secure=secure(settings),
        header_name="x-csrftoken",
    )


def when(t: datetime | None) -> str:
    """An instant as the pages show it: UTC to the second."""
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if t else ""


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja templates (autoescaped) from api/console/templates, with the `when` filter."""
    return TemplateConfig(
        directory=HERE / "templates",
        engine=JinjaTemplateEngine,
        engine_callback=lambda engine: engine.engine.filters.update(when=when),
    )


@get("/", include_in_schema=False)
async def landing(request: Request[Any, Any, Any]) -> Template:
    """A small landing page linking the console and the API docs."""
    return page(request, "landing.html")


def console_routes(settings: Settings) -> list[ControllerRouterHandler]:
    """`/` and everything under /console (the pages, sign-in, and the console's own static files)."""
    return [
        landing,
        Router(
            path=ROOT,
            route_handlers=[
                signin.login_page,
                signin.login,
                signin.renew,
                signin.logout,
                *PAGES,
                create_static_files_router(path="/static", directories=[HERE / "static"], include_in_schema=False),
            ],
            middleware=[DefineMiddleware(CSRFMiddleware, config=csrf_config(settings))],
            # every key the app maps (the most specific class wins across layers), so each renders as a page here
            exception_handlers=dict.fromkeys(problems.HANDLERS, refused),
            include_in_schema=False,
        ),
    ]
