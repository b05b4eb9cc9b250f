"""The contract's OpenAPI rule: every JSON success response has a named, typed schema (no `{}`), and no two
response shapes share a name. Read from the app's generated document."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.cloned_database

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture
def spec(client: Any) -> dict[str, Any]:
    """The document as served (with the touch-ups api/openapi.py makes at startup)."""
    r = client.get("/schema/openapi.json")
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def success_schemas(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path, item in spec["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            for code, response in op["responses"].items():
                if not code.startswith("2"):
                    continue
                for media, content in (response.get("content") or {}).items():
                    if "json" in media:
                        out.append((f"{method.upper()} {path} {code}", content.get("schema") or {}))
    return out


def test_every_json_success_response_names_its_schema(spec: dict[str, Any]) -> None:
    untyped = [where for where, schema in success_schemas(spec) if "$ref" not in schema]
    assert untyped == [], f"{len(untyped)} JSON success responses without a named schema:\n" + "\n".join(untyped)


def test_named_schemas_are_typed_objects(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    loose = [
        name
        for name, s in schemas.items()
        if s.get("type") == "object" and not s.get("properties") and name != "Problem"
    ]
    assert loose == []
    assert not [n for n in schemas if "." in n], "two shapes share a class name: Litestar qualified them by module"


def test_operation_ids_are_unique_and_readable(spec: dict[str, Any]) -> None:
    """Generated clients name their functions after operation ids (`bookings_confirm`)."""
    ids = [item[m]["operationId"] for item in spec["paths"].values() for m in METHODS if m in item]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert all(i.islower() and "api_v1" not in i for i in ids), ids


def test_no_two_shapes_share_a_class_name(spec: dict[str, Any]) -> None:
    """Litestar renames a second class of the same name after its module (`tutor_profile_MoneyIn`), and generated
    clients then refuse the duplicate model: every component is named after its own class."""
    schemas = spec["components"]["schemas"]
    renamed = [name for name, s in schemas.items() if s.get("title", name) != name]
    assert renamed == []


def test_every_error_response_is_documented_as_the_problem_we_send(spec: dict[str, Any], client: Any) -> None:
    """Errors are RFC 9457 problems: no operation documents Litestar's own error body (`status_code`, `detail`,
    `extra` as application/json), which the app never sends. A malformed body is answered 400 as the document says."""
    wrong = []
    for path, item in spec["paths"].items():
        for method in METHODS:
            for code, response in (item.get(method) or {}).get("responses", {}).items():
                for media, content in (response.get("content") or {}).items() if code[0] in "45" else ():
                    if media != "application/problem+json" and (path, code) != ("/readyz", "503"):
                        wrong.append(f"{method.upper()} {path} {code} {media}: {content.get('schema')}")
    assert wrong == [], f"{len(wrong)} error responses that are not problems:\n" + "\n".join(wrong[:5])
    answer = client.post("/api/v1/auth/login", content=b"{not json", headers={"content-type": "application/json"})
    documented = spec["paths"]["/api/v1/auth/login"]["post"]["responses"]
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert list(documented.get("400", documented["4XX"])["content"]) == ["application/problem+json"]
