"""Finance replay: rebuild the ledger in memory from the event store and check every invariant against it and
against the live ledger read model. Reads only; writes nothing."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import msgspec
import psycopg

from domain.ledger import postings_for
from projections.ledger import MONEY_TOPICS, digest, signed
from projections.runner import EVENTS_TABLE, event_type

_decode = msgspec.json.Decoder().decode


def replay_entries(
    dsn: str, until: int | None = None, as_of: datetime | None = None, batch: int = 20_000
) -> tuple[list[tuple[int, str, list[tuple[str, str, int, str]]]], int, int]:
    """(entries, events read, last position) of the ledger replayed from the log."""
    entries: list[tuple[int, str, list[tuple[str, str, int, str]]]] = []
    seen = 0
    last = 0
    with psycopg.connect(dsn) as conn:
        found = conn.execute(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}").fetchone()
        head = until if until is not None else int(found[0] if found else 0)
        while True:
            rows = conn.execute(
                f"SELECT notification_id, topic, state FROM {EVENTS_TABLE} WHERE notification_id > %s"
                " AND notification_id <= %s AND topic = ANY(%s) ORDER BY notification_id LIMIT %s",
                (last, head, list(MONEY_TOPICS), batch),
            ).fetchall()
            for pos, topic, state in rows:
                data = _decode(state)
                meta = data.pop("_meta", {}) or {}
                seen += 1
                if as_of is not None and datetime.fromisoformat(meta["recorded_at"]) > as_of:
                    continue
                description, postings = postings_for(event_type(topic), data)
                if postings:
                    entries.append((pos, description, postings))
            if len(rows) < batch:
                break
            last = rows[-1][0]
    return entries, seen, head


def live_entries(
    conn: psycopg.Connection[Any], until: int, as_of: datetime | None = None
) -> list[tuple[int, str, list[tuple[str, str, int, str]]]]:
    """The live ledger read model's entries up to a position (and instant)."""
    where = "e.position <= %s" + (" AND e.recorded_at <= %s" if as_of else "")
    params: tuple[Any, ...] = (until, as_of) if as_of else (until,)
    rows = conn.execute(
        "SELECT e.position, e.description, p.account, p.side, p.amount, p.currency FROM ledger_entries e"
        f" JOIN ledger_postings p USING (position) WHERE {where} ORDER BY e.position, p.seq",
        params,
    ).fetchall()
    out: list[tuple[int, str, list[tuple[str, str, int, str]]]] = []
    for r in rows:
        pos, desc, acc, side, amt, cur = (
            (r["position"], r["description"], r["account"], r["side"], r["amount"], r["currency"])
            if isinstance(r, dict)
            else r
        )
        if not out or out[-1][0] != pos:
            out.append((pos, desc, []))
        out[-1][2].append((acc, side, amt, cur))
    return out


def reconcile(dsn: str) -> dict[str, Any]:
    """Replay the ledger and check: entries balance, postings sum to zero, no student balance below zero, holds
    resolved at most once, outstanding credit equals deferred revenue, payouts within payable, live = replay."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT position FROM projection_tracking WHERE name = 'ledger' AND state = 'active'"
        ).fetchone()
        live_position = int(row[0]) if row else 0
    entries, seen, _ = replay_entries(dsn, until=live_position)
    checks, balance, negative_payable = _posting_checks(entries)
    lots = _replay_lots(dsn, live_position)
    students = sum(b for (a, _c), b in balance.items() if a.startswith("student_credit:"))
    outstanding = sum(lots.values())
    checks.append(
        _check(
            "outstanding_credit_equals_deferred_revenue",
            [] if outstanding == students else [f"lots hold {outstanding}, student_credit accounts {students}"],
            f"{outstanding} outstanding = deferred revenue",
        )
    )
    checks.append(_check("payouts_within_payable", sorted(negative_payable), "no tutor was paid more than payable"))
    with psycopg.connect(dsn) as conn:
        live = live_entries(conn, live_position)
    replayed, current = digest(entries), digest(live)
    checks.append(
        _check(
            "live_ledger_matches_replay",
            [] if replayed == current else [f"replay {replayed} != live {current}"],
            f"digest {replayed}",
        )
    )
    return {
        "ok": all(c["ok"] for c in checks),
        "checked_events": seen,
        "position": live_position,
        "digest": replayed,
        "checks": checks,
    }


def _check(name: str, bad: list[str], ok_detail: str) -> dict[str, Any]:
    """One check's result: what is wrong (the first 20), or what was found right."""
    return {"name": name, "ok": not bad, "detail": "; ".join(bad[:20]) if bad else ok_detail}


def _posting_checks(
    entries: list[tuple[int, str, list[tuple[str, str, int, str]]]],
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], int], set[str]]:
    """The checks of the entries themselves (each balances, all sum to zero, no student balance below zero, holds
    resolved at most once); and, walked on the way, each account's balance and the tutors paid beyond payable."""
    unbalanced = []
    total: dict[str, int] = defaultdict(int)
    balance: dict[tuple[str, str], int] = defaultdict(int)
    negative_students: set[str] = set()
    negative_payable: set[str] = set()
    hold_credits: dict[str, int] = defaultdict(int)
    for pos, _desc, postings in entries:
        per_cur: dict[str, int] = defaultdict(int)
        for account, side, amount, cur in postings:
            per_cur[cur] += amount if side == "debit" else -amount
            total[cur] += amount if side == "debit" else -amount
            balance[(account, cur)] += signed(account, side, amount)
            if account.startswith("student_credit:") and balance[(account, cur)] < 0:
                negative_students.add(f"{account} at entry E{pos}")
            if account.startswith("tutor_payable:") and balance[(account, cur)] < 0:
                negative_payable.add(f"{account} at entry E{pos}")
            if account.startswith("booking_hold:") and side == "credit":
                hold_credits[account] += 1
        if any(per_cur.values()):
            unbalanced.append(f"E{pos}")
    holds = [f"{a}: {b}" for (a, _c), b in balance.items() if a.startswith("booking_hold:") and b < 0]
    holds += [f"{a} held {n} times" for a, n in hold_credits.items() if n > 1]
    checks = [
        _check("every_entry_balances", unbalanced, f"{len(entries)} entries balance"),
        _check(
            "postings_sum_to_zero",
            [f"{c}: {v}" for c, v in total.items() if v],
            "debits equal credits in every currency",
        ),
        _check("no_negative_student_balance", sorted(negative_students), "no student credit balance went below zero"),
        _check("holds_resolved_at_most_once", holds, f"{len(hold_credits)} holds, none resolved twice"),
    ]
    return checks, balance, negative_payable


def _replay_lots(dsn: str, until: int) -> dict[str, int]:
    """Remaining value per lot, replayed from credit events (the deferred revenue side of the check)."""
    value: dict[str, int] = defaultdict(int)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT topic, state FROM {EVENTS_TABLE} WHERE notification_id <= %s AND topic = ANY(%s)"
            " ORDER BY notification_id",
            (until, list(MONEY_TOPICS)),
        ).fetchall()
    for topic, state in rows:
        d = _decode(state)
        kind = event_type(topic)
        if kind == "CreditAccount.CreditGranted":
            value[d["lot_id"]] += d["amount"]
        elif kind == "CreditAccount.CreditHeld":
            for p in d["parts"]:
                value[p["lot_id"]] -= p["amount"]
        elif kind == "CreditAccount.HoldResolved":
            for r in d["released"]:
                value[r["lot_id"]] += r["amount"]
        elif kind in ("CreditAccount.LotExpired", "CreditAccount.CreditRefunded"):
            value[d["lot_id"]] -= d["amount"]
    return dict(value)
