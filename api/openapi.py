"""OpenAPI touch-ups: every operation documents its problem+json errors (4XX/5XX) with one Problem schema."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin  # the plugin that owns the generated spec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Reference, Schema

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


def document_problems(app: Litestar) -> None:
    """Add the Problem schema and 4XX/5XX problem responses to every operation of the generated spec."""
    openapi = app.plugins.get(OpenAPIPlugin).provide_openapi()
    schemas: dict[str, Any] = dict(openapi.components.schemas or {})
    schemas["Problem"] = PROBLEM
    openapi.components.schemas = schemas
    for item in (openapi.paths or {}).values():
        for method in METHODS:
            op = getattr(item, method, None)
            if op is None:
                continue
            responses = dict(op.responses or {})
            for code in list(responses):
                if code[0] in "45":
                    responses[code] = _problem_response(getattr(responses[code], "description", "") or "Problem")
            responses.setdefault("4XX", _problem_response("Client error (RFC 9457 problem)"))
            responses.setdefault("5XX", _problem_response("Server error or projection lagging (RFC 9457 problem)"))
            op.responses = responses
