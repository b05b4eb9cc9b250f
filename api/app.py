"""The Litestar application: commands in, queries out, problem+json for every failure."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme, Server
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from api import idempotency, middleware, problems
from api.admin_users import AdminUsersController
from api.analytics import AnalyticsController
from api.audit import AuditController
from api.bookings import BookingsController, NotificationsController, TutorCalendarController
from api.calendar import CalendarFeedController, calendar_feed
from api.console import console_routes, template_config
from api.deps import providers
from api.finance import FinanceController, SettingsController
from api.identity import IdentityController
from api.messaging import MessagingController
from api.money import MoneyController
from api.openapi import LocalSwaggerPage, document_problems, operation_id
from api.presence import Presence
from api.realtime import Counterparts, Hub, ws
from api.services import Services
from api.students import StudentController
from api.subjects import AdminSubjectsController, SubjectsController
from api.system import TestClockController, healthz, readyz
from api.text import refuse_unstorable
from api.tutor_profile import TutorProfileController
from api.tutors import AdminTutorsController, PublicTutorsController
from application.settings import Settings
from application.storage import s3_client

ASSETS = "/schema/assets"  # Swagger UI's own files
STATIC = "/schema/static"  # ours
MAX_BODY = 1_048_576


def storage_check(settings: Settings) -> Any:
    """A callable that raises unless the S3 bucket is reachable (None when S3 is not configured)."""
    if not settings.s3_endpoint_url:
        return None
    client = s3_client(settings)

    def check() -> None:
        if not client.bucket_exists(settings.s3_bucket):
            client.make_bucket(settings.s3_bucket)

    return check


ROUTES: list[ControllerRouterHandler] = [
    IdentityController,
    AdminUsersController,
    AuditController,
    SubjectsController,
    AdminSubjectsController,
    TestClockController,
    TutorProfileController,
    PublicTutorsController,
    AdminTutorsController,
    StudentController,
    MoneyController,
    FinanceController,
    SettingsController,
    BookingsController,
    NotificationsController,
    TutorCalendarController,
    CalendarFeedController,
    calendar_feed,
    AnalyticsController,
    MessagingController,
    ws,
]


def routes(settings: Settings) -> list[ControllerRouterHandler]:
    """The versioned API, the probes, the files Swagger UI needs, and the console (with `/`)."""
    return [
        Router(path="/api/v1", route_handlers=ROUTES),
        *console_routes(settings),
        healthz,
        readyz,
        create_static_files_router(
            path=ASSETS, directories=[Path(swagger_ui_bundle.swagger_ui_path)], include_in_schema=False
        ),
        create_static_files_router(
            path=STATIC, directories=[Path(__file__).parent / "static"], include_in_schema=False
        ),
    ]


def openapi_config() -> OpenAPIConfig:
    """/schema: the document, with the bearer scheme declared once (routes name it: api/guards.py BEARER)."""
    return OpenAPIConfig(
        title="TutorConnect API",
        version="1.0.0",
        path="/schema",
        servers=[Server(url="/")],
        components=Components(
            security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")}
        ),
        render_plugins=[LocalSwaggerPage(assets=ASSETS, static=STATIC, path=["/", "/swagger"])],
        operation_id_creator=operation_id,
    )


def tune_gc() -> None:
    """Request handling allocates many short-lived objects; with the default gen-0 threshold (700) the collector
    runs often and its older-generation passes over everything imported stall requests: a p99 about 4x the p50
    under load. Freezing what startup built and collecting gen 0 less often halved the p99 of bench/search.py at 8
    clients (docs/PERFORMANCE.md). API_GC_THRESHOLD=0 keeps Python's defaults."""
    threshold = int(os.environ.get("API_GC_THRESHOLD", "50000"))
    if threshold:
        gc.freeze()
        gc.set_threshold(threshold, 20, 100)


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app (reads the environment when no settings are given)."""
    settings = settings or Settings.from_env()
    svc = Services.build(settings)
    svc.extras["storage_check"] = storage_check(settings)
    hub = svc.extras["hub"] = Hub(settings.database_url, Counterparts(svc.async_reads))
    presence = svc.extras["presence"] = Presence(settings.redis_url, settings.presence_ttl_s, hub.presence_changed)

    async def shutdown() -> None:
        await presence.stop()
        await svc.aclose()
        svc.close()

    return Litestar(
        route_handlers=routes(settings),
        template_config=template_config(),
        state=State({"services": svc}),
        dependencies=providers(svc),
        exception_handlers=problems.HANDLERS,
        middleware=[
            DefineMiddleware(middleware.RequestContext),
            DefineMiddleware(middleware.RateLimit, settings=settings),
            DefineMiddleware(idempotency.Idempotency, settings=settings),
        ],
        openapi_config=openapi_config(),
        request_max_body_size=MAX_BODY,
        before_send=[middleware.stamp_headers],
        before_request=refuse_unstorable,
        on_startup=[document_problems, tune_gc, presence.start],
        on_shutdown=[shutdown],
        debug=False,
    )
