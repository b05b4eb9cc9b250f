"""OpenAPI touch-ups: every operation documents its problem+json errors (4XX/5XX) with one Problem schema."""

from __future__ import annotations

import html
from typing import Any

from litestar import Litestar, Request
from litestar._openapi.plugin import OpenAPIPlugin  # the plugin that owns the generated spec
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Reference, Schema
from litestar.types.internal_types import PathParameterDefinition

PROBLEM = Schema(
    type=OpenAPIType.OBJECT,
    required=["type", "title", "status"],
    properties={
        "type": Schema(type=OpenAPIType.STRING, description="stable problem type URI"),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING),
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(
                type=OpenAPIType.OBJECT,
                properties={"field": Schema(type=OpenAPIType.STRING), "message": Schema(type=OpenAPIType.STRING)},
            ),
        ),
    },
)
METHODS = ("get", "put", "post", "delete", "patch")


def _problem_response(description: str) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=description,
        content={"application/problem+json": OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Problem"))},
    )


# Litestar documents a 400 for every route with parameters or a body, as its own error body (`status_code`, `detail`,
# `extra`); the app answers a malformed request with a problem (api/problems.py), as every other error.
_ERROR_TEXT = {"400": "Malformed request (RFC 9457 problem)"}


def _no_body_of_ours(response: Any) -> bool:
    """An error response with no body, or with Litestar's own error body, rather than one a route declared."""
    content = getattr(response, "content", None) or {}
    if not content:
        return True
    schema = getattr(content.get("application/json"), "schema", None)
    return len(content) == 1 and isinstance(schema, Schema) and {"status_code", "extra"} <= set(schema.properties or {})


def document_problems(app: Litestar) -> None:
    """Add the Problem schema and 4XX/5XX problem responses to every operation of the generated spec (a route that
    declares its own body for an error status, such as /readyz's 503, keeps it), and name titled arrays."""
    openapi = app.plugins.get(OpenAPIPlugin).provide_openapi()
    schemas: dict[str, Any] = dict(openapi.components.schemas or {})
    schemas["Problem"] = PROBLEM
    openapi.components.schemas = schemas
    name_titled_arrays(openapi)
    for item in (openapi.paths or {}).values():
        for method in METHODS:
            op = getattr(item, method, None)
            if op is None:
                continue
            responses = dict(op.responses or {})
            for code in list(responses):
                if code[0] in "45" and _no_body_of_ours(responses[code]):
                    text = _ERROR_TEXT.get(code) or getattr(responses[code], "description", "") or "Problem"
                    responses[code] = _problem_response(text)
            responses.setdefault("4XX", _problem_response("Client error (RFC 9457 problem)"))
            responses.setdefault("5XX", _problem_response("Server error or projection lagging (RFC 9457 problem)"))
            op.responses = responses


def operation_id(handler: HTTPRouteHandler, method: Any, path: list[str | PathParameterDefinition]) -> str:
    """`<first tag>_<handler name>` (e.g. `bookings_confirm`): the names generated clients give their functions.
    tests/platform/edge/test_openapi_types.py checks that they are unique."""
    tags = handler.resolve_tags()
    return f"{tags[0]}_{handler.handler_name}" if tags else handler.handler_name


def name_titled_arrays(openapi: Any) -> None:
    """Litestar names objects only: a JSON success answer that is a titled array (an export's rows) becomes the
    component of that title, so that clients get a named type for it too."""
    schemas: dict[str, Any] = dict(openapi.components.schemas or {})
    for item in (openapi.paths or {}).values():
        for op in filter(None, (getattr(item, m, None) for m in METHODS)):
            for code, response in (op.responses or {}).items():
                for media in (getattr(response, "content", None) or {}).values() if code.startswith("2") else ():
                    s = media.schema
                    if isinstance(s, Schema) and s.type == OpenAPIType.ARRAY and s.title:
                        schemas[s.title] = s
                        media.schema = Reference(ref=f"#/components/schemas/{s.title}")
    openapi.components.schemas = schemas


class LocalSwaggerPage(SwaggerRenderPlugin):
    """Swagger UI from this origin only: the stock page starts Swagger UI with an inline script (and inlines the whole
    spec into it), which a strict Content-Security-Policy would refuse; this page loads `static`'s
    swagger-init.js instead, which fetches /schema/openapi.json."""

    def __init__(self, assets: str, static: str, **kwargs: Any) -> None:
        self.static = static
        super().__init__(
            js_url=f"{assets}/swagger-ui-bundle.js",
            css_url=f"{assets}/swagger-ui.css",
            standalone_preset_js_url=f"{assets}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{assets}/favicon-32x32.png'>",
            **kwargs,
        )

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        """The page: scripts by URL only (no inline script)."""
        title = html.escape(str(openapi_schema["info"]["title"]))
        return (
            "<!DOCTYPE html><html><head>"
            f"<title>{title}</title>{self.favicon}<meta charset='utf-8'/>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<link href='{self.css_url}' rel='stylesheet'>{self.style}"
            f"<script src='{self.js_url}'></script><script src='{self.standalone_preset_js_url}'></script>"
            "</head><body><div id='swagger-container'></div>"
            f"<script src='{self.static}/swagger-init.js'></script>"
            "</body></html>"
        ).encode()
