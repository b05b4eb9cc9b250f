"""Finance: balances as of any instant, the journal export, reconciliation, payouts; platform settings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
import psycopg
from litestar import Controller, Request, Response, get, patch, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.response import Stream

from api import csvout
from api.deps import command, query, reading
from api.guards import ADMIN, BEARER, MONEY_STAFF
from api.params import instant
from api.schemas.common import MoneyOut
from api.schemas.money import (
    AccountBalanceOut,
    JournalEntryOut,
    JournalPage,
    JournalPostingOut,
    PayoutOut,
    PlatformSettingsOut,
    ReconciliationOut,
    account_balance_out,
    payout_out,
    platform_settings_out,
    reconciliation_out,
)
from api.services import Services
from application.accounts import Account
from application.clock import Clock
from application.money import Money
from application.settings import Settings
from domain.errors import ValidationFailed
from projections.reconcile import reconcile

ACCOUNT_KINDS = (
    "payment_clearing",
    "student_credit",
    "booking_hold",
    "tutor_payable",
    "platform_commission",
    "breakage",
    "refund_writeoff",
)


class PayoutMoneyIn(msgspec.Struct):
    """A payout's money in minor units."""

    amount: int
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]


class PayoutIn(msgspec.Struct):
    """POST /finance/payouts."""

    tutor_id: UUID
    amount: PayoutMoneyIn
    reference: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


def checked_account(account: str) -> str:
    """A ledger account name as GET /finance/accounts/{account}/balance accepts it (a kind, with :id where needed);
    422 naming `account` otherwise."""
    if account.split(":", 1)[0] not in ACCOUNT_KINDS or len(account) > 200:
        raise ValidationFailed([("account", f"one of {', '.join(ACCOUNT_KINDS)} (with :id where needed)")])
    return account


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


JOURNAL_ANSWER = "The journal: a JournalPage as JSON, or with format=csv one CSV row per posting"


@dataclass
class JournalOperation(Operation):
    """The journal's operation: its 200 answer is the typed page as JSON, or CSV text (`format=csv`)."""

    def __post_init__(self) -> None:
        answer = (self.responses or {}).get("200")
        if isinstance(answer, OpenAPIResponse) and answer.content is not None:
            csv = Schema(type=OpenAPIType.STRING, description="header row, then one row per posting")
            answer.content["text/csv"] = OpenAPIMediaType(schema=csv)


class FinanceController(Controller):
    """Finance and admins read and replay money; finance records payouts."""

    path = "/finance"
    guards = MONEY_STAFF
    tags = ["finance"]
    security = BEARER

    @get("/accounts/{account:str}/balance", sync_to_thread=True)
    def account_balance(
        self, request: Request[Account, Any, Any], clock: Clock, account: str
    ) -> Response[AccountBalanceOut]:
        """Balance of a ledger account at `as_of` (default now), positive in its normal direction."""
        actor = request.user
        checked_account(account)
        as_of = instant("as_of", request.query_params.get("as_of")) or clock.now()
        with reading(request, ("ledger",), actor) as (conn, pos):
            found = balance(conn, account, as_of)
        return query(account_balance_out(account, as_of, found), pos)

    @get(
        "/journal",
        sync_to_thread=True,
        responses={200: ResponseSpec(JournalPage, generate_examples=False, description=JOURNAL_ANSWER)},
        operation_class=JournalOperation,
    )
    def journal(
        self,
        request: Request[Account, Any, Any],
        services: Services,
        format: Literal["json", "csv"] = "json",  # noqa: A002
    ) -> Stream:
        """Every entry with its postings in [from, to), streamed as JSON or CSV (one row per posting); a CSV export
        is recorded first (Export.Started, dataset `journal`, with its filters)."""
        actor = request.user
        frm = instant("from", request.query_params.get("from"))
        to = instant("to", request.query_params.get("to"))
        dsn = services.settings.database_url
        with reading(request, ("ledger",), actor) as (_conn, pos):
            pass
        if format == "csv":
            filters = {k: v for k, v in request.query_params.items() if k != "format"}
            return journal_csv(services, actor, frm, to, filters, pos)
        rows = _journal_rows(dsn, frm, to, pos)
        return Stream(_json(rows), media_type="application/json", headers={"X-Projection-Position": str(pos)})

    @post("/reconciliation", status_code=200, sync_to_thread=True)
    def reconciliation(self, request: Request[Any, Any, Any], settings: Settings) -> ReconciliationOut:
        """Replay the ledger from the event store and check every invariant."""
        return reconciliation_out(reconcile(settings.database_url))

    @post("/payouts", status_code=201, sync_to_thread=True)
    def payout(self, request: Request[Any, Any, Any], money: Money, data: PayoutIn) -> Response[PayoutOut]:
        """Record a payout to a tutor; never more than payable."""
        body, position = money.pay_out(data.tutor_id, data.amount.amount, data.amount.currency, data.reference)
        return command(payout_out(body), position, 201)


def journal_csv(
    services: Services, actor: Account, frm: datetime | None, to: datetime | None, filters: dict[str, str], pos: int
) -> Stream:
    """The journal of [frm, to) up to position `pos` as CSV, recorded first as an export (Export.Started, dataset
    `journal`): GET /finance/journal?format=csv and the console's download."""
    recorded = services.exports.record_export(actor, "journal", "csv", filters)
    rows = _journal_rows(services.settings.database_url, frm, to, pos)
    headers = {
        "X-Projection-Position": str(pos),
        "X-Event-Position": str(recorded),
        "Content-Disposition": 'attachment; filename="journal.csv"',
    }
    return Stream(_csv(rows), media_type="text/csv", headers=headers)


def _journal_rows(dsn: str, frm: datetime | None, to: datetime | None, until: int) -> Iterator[JournalEntryOut]:
    """Entries in position order, read with a server-side cursor (constant memory for any size)."""
    where: list[str] = ["e.position <= %s"]
    params: list[Any] = [until]
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
        current: JournalEntryOut | None = None
        for entry_id, position, at, desc, account, side, amount, currency in cur:
            if current is None or current.position != position:
                if current is not None:
                    yield current
                current = JournalEntryOut(entry_id, position, at.astimezone(UTC), desc, [])
            current.postings.append(JournalPostingOut(account, side, MoneyOut(amount, currency)))
        if current is not None:
            yield current


def _json(rows: Iterator[JournalEntryOut]) -> Iterator[bytes]:
    """The JournalPage, written an entry at a time."""
    encoder = msgspec.json.Encoder()
    yield b'{"items":['
    first = True
    chunk = bytearray()
    for row in rows:
        if not first:
            chunk += b","
        chunk += encoder.encode(row)
        first = False
        if len(chunk) >= 65536:  # ~64 KiB a chunk, as csvout: a chunk per entry cost a thread hop and a send each
            yield bytes(chunk)
            chunk.clear()
    yield bytes(chunk) + b'],"next_cursor":null}'


def _csv(rows: Iterator[JournalEntryOut]) -> Iterator[bytes]:
    """One CSV row per posting, the entry's fields repeated (its instant written once per entry, not per row)."""
    header = ["entry_id", "position", "recorded_at", "description", "account", "side", "amount", "currency"]

    def postings() -> Iterator[tuple[Any, ...]]:
        for e in rows:
            at = csvout.cell(e.recorded_at)
            for p in e.postings:
                yield e.entry_id, e.position, at, e.description, p.account, p.side, p.amount.amount, p.amount.currency

    return csvout.stream(header, postings())


class SettingsController(Controller):
    """Admins read and change the versioned platform settings."""

    path = "/admin/settings"
    guards = ADMIN
    tags = ["admin"]
    security = BEARER

    @get("/", sync_to_thread=True)
    def get_settings(self, request: Request[Any, Any, Any], money: Money) -> PlatformSettingsOut:
        """The settings in force, with their version."""
        return platform_settings_out(money.platform().view())

    @patch("/", sync_to_thread=True)
    def change_settings(
        self, request: Request[Any, Any, Any], money: Money, data: dict[str, Any]
    ) -> Response[PlatformSettingsOut]:
        """Change any subset; returns the whole new settings with the next version."""
        view, position = money.change_settings(data)
        return command(platform_settings_out(view), position)
