"""Text PostgreSQL cannot store (U+0000, unpaired surrogates) is refused at the edge, in one place.

`refuse_unstorable` is the app's `before_request` hook: Litestar runs it after the route's guards (so the caller
is known first) and before it parses the body and parameters. It checks every path parameter, every query
parameter and every string (and key) of a JSON body, and answers 422 `validation-failed` naming each field.

Why here and not per Struct field: such text decodes fine (JSON allows `\\u0000`, Python strings hold lone
surrogates), and msgspec refuses lone surrogates as malformed JSON (400) rather than naming the field; a check
per route would be forgotten on the next one. A JSON body can carry such text only as a `\\u` escape (raw control
characters and invalid UTF-8 are malformed JSON, 400), so bodies without one cost a substring search."""

from __future__ import annotations

import json
import re
from typing import Any

from litestar import Request

from domain.errors import ValidationFailed

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MESSAGE = "contains text that cannot be stored (U+0000 or an unpaired surrogate)"
# Form bodies are checked field by field where they are read (api/console/render.py `fields`); reading one here
# again would wait forever for a multipart body the CSRF middleware has already consumed.
FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
RAW_BODY = "raw_body"  # a handler's opt flag: its body is bytes checked by the handler itself (signed webhooks)


def unstorable(text: str) -> bool:
    """True for text PostgreSQL cannot hold."""
    return UNSTORABLE.search(text) is not None


def bad_fields(value: Any, path: str = "") -> list[str]:
    """The paths (`full_name`, `weekly[0].start`) of every string or key in a decoded JSON value that is unstorable."""
    out: list[str] = []
    if isinstance(value, str):
        if unstorable(value):
            out.append(path or "body")
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if unstorable(str(key)):
                out.append(where)
            else:
                out.extend(bad_fields(item, where))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(bad_fields(item, f"{path}[{i}]"))
    return out


async def refuse_unstorable(request: Request[Any, Any, Any]) -> None:
    """422 `validation-failed` naming each path parameter, query parameter or body field with unstorable text."""
    fields = [name for name, v in request.path_params.items() if isinstance(v, str) and unstorable(v)]
    for key, v in request.query_params.multi_items():
        if unstorable(key) or unstorable(v):
            fields.append(key if not unstorable(key) else "query")
    form = request.headers.get("content-type", "").startswith(FORMS)  # the console's forms: api/console/render.py
    if (
        request.method in ("POST", "PUT", "PATCH", "DELETE")
        and not request.route_handler.opt.get(RAW_BODY)
        and not form
    ):
        body = await request.body()
        if b"\\u" in body:
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None  # not JSON: the body's own parsing answers 400
            fields.extend(bad_fields(doc))
    if fields:
        raise ValidationFailed([(f, MESSAGE) for f in dict.fromkeys(fields)])
