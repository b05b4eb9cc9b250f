"""The domain imports only the standard library, `eventsourcing.domain` and itself.

import-linter's forbidden contract cannot forbid the other subpackages of an allowed external package
(`eventsourcing.application`, `eventsourcing.postgres`), so this scan backs it up."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[2] / "domain"
ALLOWED_EXTERNAL = {"eventsourcing.domain"}
DYNAMIC_IMPORTERS = {"__import__", "import_module"}


def allowed(module: str) -> bool:
    top = module.split(".", 1)[0]
    return top == "domain" or top in sys.stdlib_module_names or module in ALLOWED_EXTERNAL


def offending_imports(source: str, package: str = "domain") -> list[str]:
    """Every import in `source` (at any depth, TYPE_CHECKING blocks included) that the domain may not use."""
    bad: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names if not allowed(a.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside the domain package unless it climbs out of it
                if node.level > package.count(".") + 1:
                    bad.append("." * node.level + (node.module or ""))
                continue
            module = node.module or ""
            if allowed(module):
                continue
            # `from eventsourcing import domain` names the allowed module through its parent.
            bad += [f"{module}.{a.name}" for a in node.names if not allowed(f"{module}.{a.name}")]
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            if name in DYNAMIC_IMPORTERS:
                bad.append(f"{name}(...)")
    return bad


MODULES = sorted(DOMAIN.rglob("*.py"))


def test_there_are_domain_modules_to_scan() -> None:
    assert {p.name for p in MODULES} >= {"__init__.py", "user.py", "subject.py", "errors.py", "ids.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(DOMAIN)))
def test_domain_module_imports_only_stdlib_and_eventsourcing_domain(path: Path) -> None:
    package = ".".join(("domain", *path.relative_to(DOMAIN).parent.parts))
    assert offending_imports(path.read_text(), package) == []


@pytest.mark.parametrize(
    ("source", "offender"),
    [
        ("import psycopg", "psycopg"),
        ("import eventsourcing", "eventsourcing"),
        ("import eventsourcing.postgres", "eventsourcing.postgres"),
        ("from eventsourcing.application import Application", "eventsourcing.application.Application"),
        ("from eventsourcing import persistence", "eventsourcing.persistence"),
        ("from eventsourcing.domain import Aggregate\nfrom msgspec import Struct", "msgspec.Struct"),
        ("def f():\n    import redis", "redis"),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from application.store import X",
            "application.store.X",
        ),
        ("from .. import application", ".."),
        ("import importlib\nm = importlib.import_module('psycopg')", "import_module(...)"),
        ("m = __import__('jwt')", "__import__(...)"),
    ],
)
def test_the_scan_catches_forbidden_imports(source: str, offender: str) -> None:
    assert offending_imports(source) == [offender]


def test_the_scan_allows_what_the_domain_may_use() -> None:
    source = (
        "from __future__ import annotations\nimport re, zoneinfo\nfrom datetime import UTC\n"
        "from eventsourcing.domain import Aggregate, event\nfrom eventsourcing import domain\n"
        "import eventsourcing.domain\nfrom domain.errors import NotFound\nfrom .ids import derived_id\n"
    )
    assert offending_imports(source) == []
