"""Finance: balances as of any instant, the journal export, reconciliation, payouts; platform settings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
import psycopg
from litestar import Controller, Request, Response, get, patch, post
from litestar.response import Stream

from api import csvout
from api.deps import caller, command, query, reading, services
from api.guards import ADMIN, MONEY_STAFF
from api.params import instant
from domain.errors import ValidationFailed
from projections.reconcile import reconcile

BEARER = [{"bearer": []}]
ACCOUNT_KINDS = (
    "payment_clearing",
    "student_credit",
    "booking_hold",
    "tutor_payable",
    "platform_commission",
    "breakage",
    "refund_writeoff",
)


class MoneyIn(msgspec.Struct):
    """Money in minor units."""

    amount: int
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]


class PayoutIn(msgspec.Struct):
    """POST /finance/payouts."""

    tutor_id: UUID
    amount: MoneyIn
    reference: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


def balance(conn: Any, account: str, as_of: datetime) -> list[tuple[str, int]]:
    """(currency, balance) of an account at an instant: daily deltas before that day plus that day's postings."""
    day = as_of.astimezone(UTC).date()
    start = datetime.combine(day, time(), UTC)
    rows = conn.execute(
        "SELECT currency, sum(v) AS balance FROM ("
        " SELECT currency, delta AS v FROM ledger_daily WHERE account = %s AND day < %s"
        " UNION ALL SELECT currency, signed AS v FROM ledger_postings WHERE account = %s AND recorded_at >= %s"
        " AND recorded_at <= %s) x GROUP BY currency ORDER BY currency",
        (account, day, account, start, as_of),
    ).fetchall()
    return [(r["currency"], int(r["balance"])) for r in rows]


class FinanceController(Controller):
    """Finance and admins read and replay money; finance records payouts."""

    path = "/finance"
    guards = MONEY_STAFF
    tags = ["finance"]
    security = BEARER

    @get("/accounts/{account:str}/balance", sync_to_thread=True)
    def account_balance(self, request: Request[Any, Any, Any], account: str) -> Response[Any]:
        """Balance of a ledger account at `as_of` (default now), positive in its normal direction."""
        actor = caller(request)
        if account.split(":", 1)[0] not in ACCOUNT_KINDS or len(account) > 200:
            raise ValidationFailed([("account", f"one of {', '.join(ACCOUNT_KINDS)} (with :id where needed)")])
        as_of = instant("as_of", request.query_params.get("as_of")) or services(request.app.state).clock.now()
        with reading(request, ("ledger",), actor) as (conn, pos):
            found = balance(conn, account, as_of)
        currency, amount = found[0] if found else ("USD", 0)
        body: dict[str, Any] = {"account": account, "as_of": as_of, "balance": {"amount": amount, "currency": currency}}
        if len(found) > 1:
            body["balances"] = [{"amount": a, "currency": c} for c, a in found]
        return query(body, pos)

    @get("/journal", sync_to_thread=True)
    def journal(self, request: Request[Any, Any, Any], format: Literal["json", "csv"] = "json") -> Response[Any]:  # noqa: A002
        """Every entry with its postings in [from, to), streamed as JSON or CSV (one row per posting)."""
        actor = caller(request)
        frm = instant("from", request.query_params.get("from"))
        to = instant("to", request.query_params.get("to"))
        dsn = services(request.app.state).settings.database_url
        with reading(request, ("ledger",), actor) as (_conn, pos):
            pass
        rows = _journal_rows(dsn, frm, to, pos)
        if format == "csv":
            return Stream(_csv(rows), media_type="text/csv", headers={"X-Projection-Position": str(pos)})
        return Stream(_json(rows), media_type="application/json", headers={"X-Projection-Position": str(pos)})

    @post("/reconciliation", status_code=200, sync_to_thread=True)
    def reconciliation(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        """Replay the ledger from the event store and check every invariant."""
        return reconcile(services(request.app.state).settings.database_url)

    @post("/payouts", status_code=201, sync_to_thread=True)
    def payout(self, request: Request[Any, Any, Any], data: PayoutIn) -> Response[Any]:
        """Record a payout to a tutor; never more than payable."""
        body, position = services(request.app.state).money.pay_out(
            data.tutor_id, data.amount.amount, data.amount.currency, data.reference
        )
        return command(request, body, position, 201)


def _journal_rows(dsn: str, frm: datetime | None, to: datetime | None, until: int) -> Iterator[dict[str, Any]]:
    """Entries in position order, read with a server-side cursor (constant memory for any size)."""
    where, params = ["e.position <= %s"], [until]  # type: ignore[var-annotated]
    if frm:
        where.append("e.recorded_at >= %s")
        params.append(frm)
    if to:
        where.append("e.recorded_at < %s")
        params.append(to)
    with psycopg.connect(dsn) as conn, conn.cursor(name="journal") as cur:
        cur.itersize = 2000
        cur.execute(
            "SELECT e.entry_id, e.position, e.recorded_at, e.description, p.account, p.side, p.amount,"
            f" p.currency FROM ledger_entries e JOIN ledger_postings p USING (position)"
            f" WHERE {' AND '.join(where)} ORDER BY e.position, p.seq",
            params,
        )
        current: dict[str, Any] | None = None
        for entry_id, position, at, desc, account, side, amount, currency in cur:
            if current is None or current["position"] != position:
                if current is not None:
                    yield current
                current = {
                    "entry_id": entry_id,
                    "position": position,
                    "recorded_at": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                    "description": desc,
                    "postings": [],
                }
            current["postings"].append(
                {"account": account, "side": side, "amount": {"amount": amount, "currency": currency}}
            )
        if current is not None:
            yield current


def _json(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    yield b'{"items":['
    first = True
    for row in rows:
        yield (b"" if first else b",") + msgspec.json.encode(row)
        first = False
    yield b'],"next_cursor":null}'


def _csv(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    header = ["entry_id", "position", "recorded_at", "description", "account", "side", "amount", "currency"]
    return csvout.stream(
        header,
        (
            (row["entry_id"], row["position"], row["recorded_at"], row["description"], *_posting(p))
            for row in rows
            for p in row["postings"]
        ),
    )


def _posting(p: dict[str, Any]) -> tuple[Any, ...]:
    return p["account"], p["side"], p["amount"]["amount"], p["amount"]["currency"]


class SettingsController(Controller):
    """Admins read and change the versioned platform settings."""

    path = "/admin/settings"
    guards = ADMIN
    tags = ["admin"]
    security = BEARER

    @get("/", sync_to_thread=True)
    def get_settings(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        """The settings in force, with their version."""
        return services(request.app.state).money.platform().view()

    @patch("/", sync_to_thread=True)
    def change_settings(self, request: Request[Any, Any, Any], data: dict[str, Any]) -> Response[Any]:
        """Change any subset; returns the whole new settings with the next version."""
        view, position = services(request.app.state).money.change_settings(data)
        return command(request, view, position)
