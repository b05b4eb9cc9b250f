"""PostgreSQL for the tests: which server to use, and databases made (empty or cloned from a template) and dropped
on it."""

from __future__ import annotations

import contextlib
import os
import secrets

import psycopg

PG_URL = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _url(admin_url: str, name: str) -> str:
    """`admin_url` pointed at database `name` (its query string kept)."""
    base, _, rest = admin_url.rpartition("/")
    query = ("?" + rest.split("?", 1)[1]) if "?" in rest else ""
    return f"{base}/{name}{query}"


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


def make_database(admin_url: str) -> str:
    """A new, empty database; its URL."""
    name = "tc_test_" + secrets.token_hex(6)
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return _url(admin_url, name)


def clone_database(admin_url: str, template_url: str) -> str:
    """A new database copied from `template_url` (nobody may be connected to it); its URL."""
    name = "tc_test_" + secrets.token_hex(6)
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_name(template_url)}"')
    return _url(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database at `url`, whoever is still connected."""
    with contextlib.suppress(psycopg.Error), psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{_name(url)}" WITH (FORCE)')
