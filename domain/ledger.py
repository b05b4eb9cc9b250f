"""The chart of accounts and the postings each money event implies (debits = credits, integer minor units).

Accounts: payment_clearing (asset), student_credit:{student} (liability, deferred revenue),
booking_hold:{booking} (liability, escrow), tutor_payable:{tutor} (liability), platform_commission (income),
breakage (income), refund_writeoff (expense: refunds beyond the unused credit). Postings are derived from event data only, so the ledger can be rebuilt from the log."""

from __future__ import annotations

from typing import Any

Posting = tuple[str, str, int, str]  # (account, "debit" | "credit", amount, currency)
DEBIT_NORMAL = ("payment_clearing", "refund_writeoff")


def normal_sign(account: str) -> int:
    """+1 if the account grows with debits (assets), -1 if with credits (liabilities, income)."""
    return 1 if account.split(":", 1)[0] in DEBIT_NORMAL else -1


def postings_for(event_type: str, d: dict[str, Any]) -> tuple[str, list[Posting]]:
    """(description, postings) for a money event; empty postings for any other event."""
    cur = d.get("currency", "")
    if event_type == "CreditAccount.CreditGranted":
        s, amt = f"student_credit:{d['student_id']}", d["amount"]
        return f"credit purchased (lot {d['lot_id']})", [
            ("payment_clearing", "debit", amt, cur),
            (s, "credit", amt, cur),
        ]
    if event_type == "CreditAccount.CreditHeld":
        total = sum(p["amount"] for p in d["parts"])
        return f"hold for booking {d['booking_id']}", [
            (f"student_credit:{d['student_id']}", "debit", total, cur),
            (f"booking_hold:{d['booking_id']}", "credit", total, cur),
        ]
    if event_type == "CreditAccount.HoldResolved":
        hold = f"booking_hold:{d['booking_id']}"
        out: list[Posting] = []
        captured = sum(p["amount"] for p in d["captured"])
        released = sum(p["amount"] for p in d["released"])
        if captured:
            out += [
                (hold, "debit", captured, cur),
                (f"tutor_payable:{d['tutor_id']}", "credit", captured - d["commission"], cur),
            ]
            if d["commission"]:
                out.append(("platform_commission", "credit", d["commission"], cur))
        if released:
            out += [(hold, "debit", released, cur), (f"student_credit:{d['student_id']}", "credit", released, cur)]
        return f"booking {d['booking_id']} {d['outcome']}", [p for p in out if p[2]]
    if event_type == "CreditAccount.LotExpired":
        return f"credit expired (lot {d['lot_id']})", [
            (f"student_credit:{d['student_id']}", "debit", d["amount"], cur),
            ("breakage", "credit", d["amount"], cur),
        ]
    if event_type == "CreditAccount.CreditRefunded":
        return f"credit refunded (lot {d['lot_id']})", [
            (f"student_credit:{d['student_id']}", "debit", d["amount"], cur),
            ("payment_clearing", "credit", d["amount"], cur),
        ]
    if event_type == "Purchase.Refunded":
        # Stripe paid back more than the unused credit that could be removed (the rest was used or held).
        removed = d.get("credit_removed")
        excess = d["amount"] - (d["amount"] if removed is None else removed)
        if excess <= 0:
            return "", []
        return f"refund beyond unused credit ({d['refund_id']})", [
            ("refund_writeoff", "debit", excess, cur),
            ("payment_clearing", "credit", excess, cur),
        ]
    if event_type == "TutorPayouts.PayoutRecorded":
        return f"payout {d['reference']}", [
            (f"tutor_payable:{d['tutor_id']}", "debit", d["amount"], cur),
            ("payment_clearing", "credit", d["amount"], cur),
        ]
    return "", []


MONEY_EVENTS = (
    "CreditAccount.CreditGranted",
    "CreditAccount.CreditHeld",
    "CreditAccount.HoldResolved",
    "CreditAccount.LotExpired",
    "CreditAccount.CreditRefunded",
    "TutorPayouts.PayoutRecorded",
    "Purchase.Refunded",
)
