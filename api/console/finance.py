"""Finance in the console: a ledger account's balance as of any instant, the journal (with its CSV export),
reconciliation, payouts and refunds -- through the same queries and commands as /finance and the refund route
(api/finance.py, api/money.py), for finance staff and admins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import msgspec
from litestar import Request, get, post
from litestar.response import Redirect, Stream, Template

from api.console.render import convert, done, form, in_thread, page
from api.console.session import MONEY_PAGE
from api.deps import decode_cursor, encode_cursor, limit_of, reading
from api.finance import ACCOUNT_KINDS, PayoutIn, balance, checked_account, journal_csv
from api.schemas.common import MoneyOut
from api.schemas.money import JournalEntryOut, JournalPostingOut, payout_out, purchase_refund_out, reconciliation_out
from api.services import Services
from application.clock import Clock
from application.settings import Settings
from domain.errors import ValidationFailed
from projections.reconcile import reconcile

T = TypeVar("T")
HOME = "/console/finance"
PAGE_SIZE = 50
PAYOUTS = ("TutorPayouts.PayoutRecorded",)
REFUNDS = ("CreditAccount.CreditRefunded", "Purchase.Refunded")
LOCAL = "%Y-%m-%dT%H:%M:%S"  # an <input type="datetime-local" step="1"> value


class RefundIn(msgspec.Struct):
    """The refund form: the purchase whose unused credit goes back (POST /admin/purchases/{id}/refund)."""

    purchase_id: UUID


def local_instant(name: str, raw: str | None) -> datetime | None:
    """A datetime-local value read as UTC (an RFC 3339 instant with an offset is taken as given); None when empty;
    422 naming `name` otherwise."""
    if not raw or not raw.strip():
        return None
    try:
        t = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed([(name, "a date and time (UTC)")]) from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def local(t: datetime | None) -> str:
    """An instant as a datetime-local value in UTC."""
    return t.astimezone(UTC).strftime(LOCAL) if t else ""


def recent_entries(
    conn: Any,
    frm: datetime | None,
    to: datetime | None,
    n: int,
    before: int | None = None,
    event_types: tuple[str, ...] = (),
) -> tuple[list[JournalEntryOut], int | None]:
    """The `n` most recent journal entries in [frm, to) (before position `before`; of `event_types` when given), newest
    first, each with its postings; and the position to continue below (None at the end). The API's journal streams
    a whole window oldest first; a page of the latest entries is the console's own question."""
    where, params = ["true"], []
    for clause, value in (
        ("recorded_at >= %s", frm),
        ("recorded_at < %s", to),
        ("position < %s", before),
        ("event_type = ANY(%s)", list(event_types) or None),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    rows = conn.execute(
        "WITH e AS (SELECT position, entry_id, recorded_at, description FROM ledger_entries"
        f" WHERE {' AND '.join(where)} ORDER BY position DESC LIMIT %s)"
        " SELECT e.position, e.entry_id, e.recorded_at, e.description, p.account, p.side, p.amount, p.currency"
        " FROM e JOIN ledger_postings p USING (position) ORDER BY e.position DESC, p.seq",
        (*params, n + 1),
    ).fetchall()
    entries: list[JournalEntryOut] = []
    for r in rows:
        if not entries or entries[-1].position != r["position"]:
            entries.append(
                JournalEntryOut(r["entry_id"], r["position"], r["recorded_at"].astimezone(UTC), r["description"], [])
            )
        entries[-1].postings.append(JournalPostingOut(r["account"], r["side"], MoneyOut(r["amount"], r["currency"])))
    more = entries[n - 1].position if len(entries) > n else None
    return entries[:n], more


def totals(e: JournalEntryOut) -> dict[str, dict[str, int]]:
    """An entry's debits and credits per currency (equal in every entry)."""
    out: dict[str, dict[str, int]] = {}
    for p in e.postings:
        side = out.setdefault(p.amount.currency, {"debit": 0, "credit": 0})
        side[p.side] += p.amount.amount
    return out


def tutor_of(e: JournalEntryOut) -> str:
    """The tutor a payout entry pays (its tutor_payable posting)."""
    return next((p.account.split(":", 1)[1] for p in e.postings if p.account.startswith("tutor_payable:")), "")


def debited(e: JournalEntryOut, kind: str) -> MoneyOut | None:
    """The amount an entry debits from accounts of `kind` (a payout's, a refund's money)."""
    return next((p.amount for p in e.postings if p.side == "debit" and p.account.split(":", 1)[0] == kind), None)


@get("/finance", guards=MONEY_PAGE, sync_to_thread=True)
def finance(request: Request[Any, Any, Any], clock: Clock) -> Template:
    """A ledger account's balance as of a chosen instant (UTC), reconciliation, payouts and refunds."""
    q = request.query_params
    kind, key, raw_as_of = q.get("kind", "").strip(), q.get("key", "").strip(), q.get("as_of", "").strip()
    now = clock.now()
    account = (f"{kind}:{key}" if key else kind) if kind else ""
    found: list[tuple[str, int]] | None = None
    as_of = local_instant("as_of", raw_as_of) or now
    with reading(request, ("ledger",), request.user) as (conn, _):
        if account:
            found = balance(conn, checked_account(account), as_of)
        payouts, _more = recent_entries(conn, None, None, 20, event_types=PAYOUTS)
        refunds, _more = recent_entries(conn, None, None, 20, event_types=REFUNDS)
    return page(
        request,
        "finance.html",
        kinds=ACCOUNT_KINDS,
        kind=kind,
        key=key,
        account=account,
        as_of=local(as_of),
        as_of_given=bool(raw_as_of),
        yesterday=local((now - timedelta(days=1)).replace(microsecond=0)),
        found=found,
        payouts=[(e, tutor_of(e), debited(e, "tutor_payable")) for e in payouts],
        refunds=[(e, debited(e, "student_credit") or debited(e, "refund_writeoff")) for e in refunds],
    )


def _window(request: Request[Any, Any, Any]) -> tuple[datetime | None, datetime | None]:
    q = request.query_params
    return local_instant("from", q.get("from")), local_instant("to", q.get("to"))


@get("/finance/journal", guards=MONEY_PAGE, sync_to_thread=True)
def journal(request: Request[Any, Any, Any], cursor: str | None = None, limit: int | None = None) -> Template:
    """The most recent journal entries in [from, to) (UTC), each with its postings, a page at a time; the whole
    window as the API's CSV."""
    frm, to = _window(request)
    before = decode_cursor(cursor, int)
    with reading(request, ("ledger",), request.user) as (conn, _):
        entries, more = recent_entries(conn, frm, to, limit_of(limit or PAGE_SIZE), before)
    window = {"from": local(frm), "to": local(to), "limit": str(limit or "")}
    return page(
        request,
        "finance_journal.html",
        window=window,
        entries=[(e, totals(e)) for e in entries],
        next_cursor=encode_cursor(more) if more is not None else None,
    )


@get("/finance/journal.csv", guards=MONEY_PAGE, sync_to_thread=True)
def journal_download(request: Request[Any, Any, Any], services: Services) -> Stream:
    """The journal of [from, to) as CSV: GET /finance/journal?format=csv's stream, recorded as an export too."""
    frm, to = _window(request)
    with reading(request, ("ledger",), request.user) as (_conn, pos):
        pass
    filters = {k: v for k, v in request.query_params.items() if k in ("from", "to")}
    return journal_csv(services, request.user, frm, to, filters, pos)


@post("/finance/reconciliation", guards=MONEY_PAGE, status_code=200)
async def reconciliation(request: Request[Any, Any, Any], settings: Settings) -> Template:
    """Replay the ledger from the event store and check every invariant, as POST /finance/reconciliation."""
    await form(request)  # the CSRF token was checked by the middleware; nothing else is read
    result = await in_thread(lambda: reconciliation_out(reconcile(settings.database_url)))
    return page(request, "finance_reconciliation.html", result=result)


@post("/finance/payouts", guards=MONEY_PAGE, status_code=303)
async def payout(request: Request[Any, Any, Any], services: Services) -> Redirect:
    """Record a payout to a tutor, as POST /finance/payouts (never more than payable)."""
    f = await form(request)
    data = convert(
        {
            "tutor_id": f.get("tutor_id", "").strip(),
            "amount": {"amount": f.get("amount", "").strip(), "currency": f.get("currency", "").strip()},
            "reference": f.get("reference", ""),
        },
        PayoutIn,
    )
    body, _position = await in_thread(
        lambda: services.money.pay_out(data.tutor_id, data.amount.amount, data.amount.currency, data.reference)
    )
    out = payout_out(body)
    notice = f"Payout of {out.amount.amount} {out.amount.currency} (minor units) recorded to tutor {out.tutor_id}"
    return done(request, HOME, notice)


@post("/finance/refunds", guards=MONEY_PAGE, status_code=303)
async def refund(request: Request[Any, Any, Any], services: Services) -> Redirect:
    """Refund the unused part of a paid package through Stripe, as POST /admin/purchases/{id}/refund."""
    f = await form(request)
    data = convert({"purchase_id": f.get("purchase_id", "").strip()}, RefundIn)
    body, _position = await in_thread(lambda: services.money.refund_unused(data.purchase_id))
    out = purchase_refund_out(body)
    notice = (
        f"Refunded {out.refunded.amount} {out.refunded.currency} (minor units) of purchase {data.purchase_id};"
        f" {out.minutes_removed} minutes of credit removed"
    )
    return done(request, HOME, notice)


PAGES = [finance, journal, journal_download, reconciliation, payout, refund]
