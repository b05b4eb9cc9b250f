"""Numbered read-model and runtime SQL, applied in order, once, under an advisory lock."""

from __future__ import annotations

from pathlib import Path

import psycopg

HERE = Path(__file__).parent
LOCK_KEY = 7_301_552_001


def files() -> list[Path]:
    """The numbered migration files, in order."""
    return sorted(p for p in HERE.glob("[0-9][0-9][0-9][0-9]_*.sql"))


def apply(dsn: str) -> list[str]:
    """Apply every migration not yet applied; safe to call from several processes at once."""
    applied: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
            for path in files():
                if path.name in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())  # type: ignore[call-overload]
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
                applied.append(path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied
