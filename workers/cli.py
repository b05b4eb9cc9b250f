"""The `tutorconnect` command: serve, api, projectors, worker, mailer, projections, admin."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any


def _say(msg: str) -> None:
    print(f"[tutorconnect] {msg}", file=sys.stderr, flush=True)


def _env_for_tools() -> dict[str, str]:
    """Settings for one-shot commands: the environment, else the embedded database of `serve`."""
    from workers import embedded

    env = dict(os.environ)
    if not env.get("DATABASE_URL"):
        box = embedded.ensure(env, _say, need=("db",))
        env = box.env
        os.environ.update(env)
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    if not env.get("JWT_SECRET"):
        env["JWT_SECRET"] = embedded._secret(embedded.data_dir(env), "jwt_secret", lambda: os.urandom(32).hex())
    return env


def cmd_serve(a: argparse.Namespace) -> int:
    from workers.processes import serve

    return serve(a.host, a.port, _say)


def cmd_api(a: argparse.Namespace) -> int:
    from workers.processes import run_api

    run_api(a.host, a.port, a.workers, a.max_connections)
    return 0


def cmd_projectors(_: argparse.Namespace) -> int:
    from workers.processes import run_projectors

    run_projectors()
    return 0


def cmd_worker(a: argparse.Namespace) -> int:
    from workers.processes import run_worker

    run_worker(a.threads)
    return 0


def cmd_mailer(_: argparse.Namespace) -> int:
    from workers.processes import run_mailer

    run_mailer()
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from application.settings import Settings
    from projections import generations
    from workers.processes import prepare

    settings = Settings.from_env(_env_for_tools())
    prepare(settings)
    table = Table(title="projections")
    for col in ("name", "generation", "version", "state", "position", "head", "lag", "events"):
        table.add_column(col)
    for s in generations.status(settings.database_url):
        table.add_row(
            s.name,
            str(s.generation),
            str(s.version),
            "STOPPED" if s.stopped and s.state == "active" else s.state,
            str(s.position),
            str(s.head),
            str(s.lag),
            str(s.events_processed),
        )
    console = Console(width=200)
    console.print(table)
    failed = generations.failures(settings.database_url)
    if failed:
        problems = Table(title="events projections could not apply")
        for col in ("projection", "position", "event", "type", "state", "tries", "first seen", "last seen", "error"):
            problems.add_column(col, overflow="fold")
        for f in failed:
            problems.add_row(
                f.name,
                str(f.position),
                f"{f.aggregate_id}@{f.aggregate_version}",
                f.event_type,
                f.state,
                str(f.attempts),
                f.first_seen.isoformat(timespec="seconds"),
                f.last_seen.isoformat(timespec="seconds"),
                f.error,
            )
        console.print(problems)
        console.print("a stopped projection resumes with: tutorconnect projections retry NAME (after a fix)")
    return 0


def cmd_retry(a: argparse.Namespace) -> int:
    from application.settings import Settings
    from projections import by_name, failures
    from workers.processes import prepare

    settings = Settings.from_env(_env_for_tools())
    prepare(settings)
    try:
        by_name(a.name)
    except KeyError:
        _say(f"no projection named {a.name!r}")
        return 2
    if not failures.retry(settings.database_url, a.name):
        _say(f"{a.name} is not stopped")
        return 1
    _say(f"{a.name}: resumed; it tries its failing event again (see `tutorconnect projections status`)")
    return 0


def cmd_rebuild(a: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from application.settings import Settings
    from projections import by_name, generations
    from projections.failures import EventFailed
    from workers.processes import prepare

    settings = Settings.from_env(_env_for_tools())
    prepare(settings)
    try:
        projection = by_name(a.name)
    except KeyError:
        _say(f"no projection named {a.name!r}")
        return 2
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task(f"rebuilding {a.name}", total=None)

        def progress(position: int, head: int) -> None:
            bar.update(task, completed=position, total=max(head, position))

        try:
            generation = generations.rebuild(settings.database_url, projection, progress)
        except EventFailed as e:
            _say(f"rebuild of {a.name} abandoned (the live generation is untouched): {e}")
            return 1
    _say(f"{a.name}: generation {generation} is live")
    return 0


def cmd_ledger_replay(a: argparse.Namespace) -> int:
    from datetime import datetime

    import psycopg
    from psycopg.rows import dict_row
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from application.settings import Settings
    from projections import by_name, generations
    from projections.ledger import digest
    from projections.reconcile import live_entries
    from workers.processes import prepare

    settings = Settings.from_env(_env_for_tools())
    prepare(settings)
    as_of = datetime.fromisoformat(a.as_of.replace("Z", "+00:00")) if a.as_of else None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("replaying the ledger", total=None)

        def progress(position: int, head: int) -> None:
            bar.update(task, completed=position, total=max(head, position))

        generations.rebuild(settings.database_url, by_name("ledger"), progress)
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        row = conn.execute(
            "SELECT position FROM projection_tracking WHERE name = 'ledger' AND state = 'active'"
        ).fetchone()
        entries = live_entries(conn, int(row["position"]) if row else 0, as_of)
    postings = sum(len(e[2]) for e in entries)
    print(f"entries {len(entries)} postings {postings}" + (f" as of {as_of.isoformat()}" if as_of else ""))
    print(f"statement digest sha256:{digest(entries)}")
    return 0


def cmd_ledger_reconcile(_: argparse.Namespace) -> int:
    import json

    from application.settings import Settings
    from projections.reconcile import reconcile
    from workers.processes import prepare

    settings = Settings.from_env(_env_for_tools())
    prepare(settings)
    result = reconcile(settings.database_url)
    print(json.dumps(result, indent=2, default=str))
    return 0 if result["ok"] else 1


def cmd_admin_create(a: argparse.Namespace) -> int:
    from application import context
    from application.identity import Identity
    from application.settings import Settings
    from domain.errors import DomainError
    from workers.processes import prepare

    settings = Settings.from_env(_env_for_tools())
    prepare(settings)
    identity = Identity(settings)
    try:
        with context.acting(actor_id=None, actor_role="system", correlation_id=f"cli-admin-create-{os.getpid()}"):
            o = identity.register(a.email, a.password, a.full_name or a.email.split("@")[0], a.role, staff=True)
    except DomainError as e:
        _say(f"cannot create {a.email}: {e.detail}")
        return 1
    print(f"created {a.role} {o.user['email']} ({o.user['id']})")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tutorconnect", description="TutorConnect event-sourced marketplace core")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def host_port(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--host", default="127.0.0.1")
        sp.add_argument("--port", type=int, default=8000)

    s = sub.add_parser("serve", help="run the API with the projectors and workers it needs (embedded defaults)")
    host_port(s)
    s.set_defaults(func=cmd_serve)
    s = sub.add_parser("api", help="run the HTTP API only")
    host_port(s)
    s.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))
    s.add_argument(
        "--max-connections",
        type=int,
        default=int(os.environ.get("API_MAX_CONNECTIONS", "1000")),  # per worker: workers/processes.py run_api
        help="open connections (keep-alive, WebSockets) each worker holds at once (API_MAX_CONNECTIONS, 1000)",
    )
    s.set_defaults(func=cmd_api)
    s = sub.add_parser("projectors", help="run the projection followers only")
    s.set_defaults(func=cmd_projectors)
    s = sub.add_parser("worker", help="run the dramatiq worker and sweeper only")
    s.add_argument("--threads", type=int, default=4)
    s.set_defaults(func=cmd_worker)
    s = sub.add_parser("mailer", help="send the outbox's e-mails over SMTP_URL (nothing without it)")
    s.set_defaults(func=cmd_mailer)
    s = sub.add_parser("projections", help="operate the read models (status, rebuild, retry)")
    psub = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    ps = psub.add_parser("status", help="each projection's position and lag")
    ps.set_defaults(func=cmd_status)
    ps = psub.add_parser("rebuild", help="rebuild a projection beside the live one, then switch")
    ps.add_argument("name")
    ps.set_defaults(func=cmd_rebuild)
    ps = psub.add_parser("retry", help="resume a projection stopped at an event it could not apply")
    ps.add_argument("name")
    ps.set_defaults(func=cmd_retry)
    s = sub.add_parser("ledger", help="finance: replay and reconcile the ledger")
    lsub = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    lr = lsub.add_parser("replay", help="rebuild the ledger from the event store and print its statement digest")
    lr.add_argument("--as-of", default="", help="digest only entries recorded at or before this instant")
    lr.set_defaults(func=cmd_ledger_replay)
    lc = lsub.add_parser("reconcile", help="check every ledger invariant (exit 1 if one breaks)")
    lc.set_defaults(func=cmd_ledger_reconcile)
    s = sub.add_parser("admin", help="staff accounts")
    asub = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    ac = asub.add_parser("create", help="create an admin (or finance) account")
    ac.add_argument("--email", required=True)
    ac.add_argument("--password", required=True)
    ac.add_argument("--role", choices=("admin", "finance"), default="admin")
    ac.add_argument("--full-name", default="")
    ac.set_defaults(func=cmd_admin_create)
    return p


def main(argv: list[str] | None = None) -> Any:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
