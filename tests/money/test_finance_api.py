"""Finance over HTTP (the real app behind TestClient, real projector threads): balances now and as of past
instants recorded under the test clock, the journal as JSON and CSV, reconciliation, payouts, tutor earnings,
versioned platform settings, who may do what, and the `ledger replay` / `ledger reconcile` CLI."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from application.money import Money
from application.settings import Settings
from domain.credits import HoldState
from tests.audit.test_csv import cells_are_safe
from tests.money.support import API, approve_tutor, bearer, grant, head, module_database, ok, problem, redis_clock
from tests.support.api import register, staff_login, z
from tests.support.system import ROOT, server_env

T0 = datetime(2031, 3, 1, 10, 0, tzinfo=UTC)  # 10 lessons bought (38000)
T1 = datetime(2031, 3, 5, 10, 0, tzinfo=UTC)  # lesson 1 held and completed (3800: tutor 3040, commission 760)
T2 = datetime(2031, 3, 5, 15, 0, tzinfo=UTC)  # lesson 2 held (3800), still open
T3 = datetime(2031, 4, 2, 9, 0, tzinfo=UTC)  # now: payouts happen here


@dataclass
class Books:
    client: Any
    settings: Settings
    admin: str
    finance: str
    student_id: str
    student: str
    tutor_id: str
    tutor: str
    b1: str
    b2: str

    def at(self, when: datetime) -> None:
        body = ok(self.client.put(f"{API}/admin/test-clock", json={"now": z(when)}, headers=bearer(self.admin)))
        got = datetime.fromisoformat(str(body["now"]).replace("Z", "+00:00"))
        assert abs(got - when) < timedelta(seconds=5), body

    def balance(self, account: str, as_of: datetime | None = None, token: str | None = None) -> dict[str, Any]:
        params = {"as_of": z(as_of)} if as_of else {}
        r = self.client.get(
            f"{API}/finance/accounts/{account}/balance",
            params=params,
            headers={**bearer(token or self.finance), "X-Min-Position": str(head(self.settings.database_url))},
        )
        return ok(r)  # type: ignore[no-any-return]

    def amount(self, account: str, as_of: datetime | None = None) -> int:
        body = self.balance(account, as_of)
        assert body["account"] == account
        assert body["balance"]["currency"] == "USD", body
        return int(body["balance"]["amount"])

    def fresh(self) -> dict[str, str]:
        return {"X-Min-Position": str(head(self.settings.database_url))}


@pytest.fixture(scope="module")
def books(pg_admin_url: str, redis_server: str) -> Iterator[Books]:
    """One database for the module: a student's 10-lesson package with one tutor, a completed lesson and an open
    hold, recorded at known instants (T0-T2) under the test clock, which then stands at T3. Tests that change
    money do it at T3 or later with people of their own, so the T0-T3 books stay as they are."""
    from litestar.testing import TestClient

    from api.app import create_app

    with module_database(pg_admin_url, redis_server, 6) as settings:
        app = create_app(settings)
        with TestClient(app, base_url="http://testserver.local", timeout=30) as client:
            admin = staff_login(client, settings, "admin")["access_token"]
            finance = staff_login(client, settings, "finance")["access_token"]
            student = register(client, "student")
            tutor = register(client, "tutor")
            approve_tutor(settings, uuid.UUID(tutor["user"]["id"]), 4000, "USD")
            b = Books(
                client,
                settings,
                admin,
                finance,
                student["user"]["id"],
                student["access_token"],
                tutor["user"]["id"],
                tutor["access_token"],
                f"bk1-{uuid.uuid4()}",
                f"bk2-{uuid.uuid4()}",
            )
            money = Money(settings, redis_clock(settings))
            sid, tid = uuid.UUID(b.student_id), uuid.UUID(b.tutor_id)
            b.at(T0)
            grant(money, sid, tid, 600, 38000)
            b.at(T1)
            money.hold(sid, b.b1, tid, 60, 2000)
            result, _ = money.resolve(sid, b.b1, 60, HoldState.CAPTURED)
            assert result["tutor_net"] == 3040
            b.at(T2)
            money.hold(sid, b.b2, tid, 60, 2000)
            b.at(T3)
            yield b


def test_balances_now_and_as_of_past_instants(books: Books) -> None:
    s, t = f"student_credit:{books.student_id}", f"tutor_payable:{books.tutor_id}"
    body = books.balance(s)
    assert set(body) >= {"account", "as_of", "balance"}
    assert body["balance"] == {"amount": 30400, "currency": "USD"}
    as_of = datetime.fromisoformat(str(body["as_of"]).replace("Z", "+00:00"))
    assert abs(as_of - T3) < timedelta(minutes=1), body
    assert books.amount(f"booking_hold:{books.b1}") == 0
    assert books.amount(f"booking_hold:{books.b2}") == 3800
    assert books.amount(t) == 3040
    # Platform-wide accounts as they stood when the clock reached T3 (later tests add their own money).
    assert books.amount("platform_commission", T3 - timedelta(seconds=1)) == 760
    assert books.amount("payment_clearing", T3 - timedelta(seconds=1)) == 38000
    assert books.amount("breakage", T3 - timedelta(seconds=1)) == 0

    # As of instants in the past: before anything, the same day as a posting (minutes apart), and later days.
    assert books.amount(s, T0 - timedelta(minutes=1)) == 0
    assert books.amount(s, T0 + timedelta(minutes=1)) == 38000
    assert books.amount(s, T0 + timedelta(days=2)) == 38000
    assert books.amount(s, T1 - timedelta(minutes=1)) == 38000
    assert books.amount(s, T1 + timedelta(hours=2)) == 34200
    assert books.amount(s, T2 + timedelta(minutes=1)) == 30400
    assert books.amount(t, T1 - timedelta(days=1)) == 0
    assert books.amount(t, T1 + timedelta(minutes=1)) == 3040
    assert books.amount(f"booking_hold:{books.b2}", T2 - timedelta(minutes=1)) == 0
    assert books.amount(f"booking_hold:{books.b2}", T2 + timedelta(minutes=1)) == 3800
    assert books.amount("platform_commission", T1 + timedelta(days=1)) == 760
    assert books.amount("payment_clearing", T0 - timedelta(days=30)) == 0

    problem(books.client.get(f"{API}/finance/accounts/bogus/balance", headers=bearer(books.finance)), 422)
    problem(
        books.client.get(
            f"{API}/finance/accounts/{s}/balance", params={"as_of": "yesterday"}, headers=bearer(books.finance)
        ),
        (400, 422),
    )


def test_journal_json_and_csv(books: Books) -> None:
    window = {"from": z(T0 - timedelta(days=1)), "to": z(T3)}  # this module's books (later tests add more)
    r = books.client.get(
        f"{API}/finance/journal", params={"format": "json", **window}, headers={**bearer(books.admin), **books.fresh()}
    )
    body = ok(r)
    assert body["next_cursor"] is None
    entries = body["items"]
    # grant, hold 1, capture 1, hold 2
    assert len(entries) == 4, entries
    positions = [e["position"] for e in entries]
    assert positions == sorted(positions)
    for e in entries:
        assert set(e) == {"entry_id", "position", "recorded_at", "description", "postings"}
        assert e["entry_id"] == f"E{e['position']}"
        debit = sum(p["amount"]["amount"] for p in e["postings"] if p["side"] == "debit")
        credit = sum(p["amount"]["amount"] for p in e["postings"] if p["side"] == "credit")
        assert debit == credit > 0, e
        assert all(isinstance(p["amount"]["amount"], int) and p["amount"]["currency"] == "USD" for p in e["postings"])
    grant_entry, hold1, capture1, hold2 = entries
    assert grant_entry["recorded_at"].startswith("2031-03-01T10:0")
    assert {(p["account"], p["side"], p["amount"]["amount"]) for p in grant_entry["postings"]} == {
        ("payment_clearing", "debit", 38000),
        (f"student_credit:{books.student_id}", "credit", 38000),
    }
    assert {(p["account"], p["side"], p["amount"]["amount"]) for p in capture1["postings"]} == {
        (f"booking_hold:{books.b1}", "debit", 3800),
        (f"tutor_payable:{books.tutor_id}", "credit", 3040),
        ("platform_commission", "credit", 760),
    }
    assert {(p["account"], p["side"]) for p in hold2["postings"]} == {
        (f"student_credit:{books.student_id}", "debit"),
        (f"booking_hold:{books.b2}", "credit"),
    }
    assert hold1["recorded_at"] < capture1["recorded_at"] < hold2["recorded_at"]

    # [from, to): only the first lesson's two entries.
    window = ok(
        books.client.get(
            f"{API}/finance/journal",
            params={"from": z(T1 - timedelta(hours=1)), "to": z(T2 - timedelta(hours=1))},
            headers=bearer(books.finance),
        )
    )
    assert [e["position"] for e in window["items"]] == [hold1["position"], capture1["position"]]

    r = books.client.get(f"{API}/finance/journal", params={"format": "csv", **window}, headers=bearer(books.finance))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
    table = cells_are_safe(r.text)  # written by api/csvout.py: no cell a spreadsheet would evaluate
    assert table[0] == ["entry_id", "position", "recorded_at", "description", "account", "side", "amount", "currency"]
    rows = table[1:]
    flat = [
        [
            e["entry_id"],
            str(e["position"]),
            e["recorded_at"],
            e["description"],
            p["account"],
            p["side"],
            str(p["amount"]["amount"]),
            p["amount"]["currency"],
        ]
        for e in entries
        for p in e["postings"]
    ]
    assert rows == flat
    assert len(rows) == 2 + 2 + 3 + 2

    problem(
        books.client.get(f"{API}/finance/journal", params={"format": "xml"}, headers=bearer(books.finance)), (400, 422)
    )


def test_reconciliation(books: Books) -> None:
    r = ok(books.client.post(f"{API}/finance/reconciliation", headers={**bearer(books.finance), **books.fresh()}))
    assert r["ok"] is True, r
    assert r["checked_events"] >= 4
    assert {"name", "ok", "detail"} <= set(r["checks"][0])
    assert all(c["ok"] for c in r["checks"]), r["checks"]
    names = {c["name"] for c in r["checks"]}
    assert {
        "every_entry_balances",
        "no_negative_student_balance",
        "outstanding_credit_equals_deferred_revenue",
        "payouts_within_payable",
        "live_ledger_matches_replay",
    } <= names
    assert ok(books.client.post(f"{API}/finance/reconciliation", headers=bearer(books.admin)))["ok"] is True


def test_payouts_never_exceed_payable(books: Books) -> None:
    """A tutor of this test's own earns 3040 now (T3); payouts take it down to exactly zero, never below."""
    url = f"{API}/finance/payouts"
    tutor = register(books.client, "tutor")
    tid, sid = tutor["user"]["id"], uuid.uuid4()
    money = Money(books.settings, redis_clock(books.settings))
    grant(money, sid, uuid.UUID(tid), 300, 19000)
    money.hold(sid, f"pay-{sid}", uuid.UUID(tid), 60, 2000)
    assert money.resolve(sid, f"pay-{sid}", 60, HoldState.CAPTURED)[0]["tutor_net"] == 3040
    clearing = books.amount("payment_clearing")

    def pay(amount: Any, currency: str = "USD", token: str | None = None, reference: str = "wire") -> Any:
        return books.client.post(
            url,
            json={"tutor_id": tid, "amount": {"amount": amount, "currency": currency}, "reference": reference},
            headers=bearer(token or books.finance),
        )

    r = pay(3000, reference="wire 2031-04")
    body = ok(r, 201)
    assert int(r.headers["X-Event-Position"]) > 0
    assert body["tutor_id"] == tid
    assert body["amount"] == {"amount": 3000, "currency": "USD"}
    assert body["reference"] == "wire 2031-04"
    assert books.amount(f"tutor_payable:{tid}") == 40
    assert books.amount("payment_clearing") == clearing - 3000
    assert books.amount(f"tutor_payable:{tid}", T3 - timedelta(seconds=1)) == 0
    problem(pay(41), 422, "payout-exceeds-payable")
    problem(pay(1, "EUR"), 422, "payout-exceeds-payable")
    problem(pay(0), 422)
    problem(pay(-5), 422)
    problem(pay(10.5), (400, 422))
    problem(pay(10, "usd"), (400, 422))
    problem(pay(10, reference=""), (400, 422))
    problem(
        books.client.post(
            url,
            json={"tutor_id": str(uuid.uuid4()), "amount": {"amount": 1, "currency": "USD"}, "reference": "x"},
            headers=bearer(books.finance),
        ),
        422,
        "payout-exceeds-payable",
    )
    assert books.amount(f"tutor_payable:{tid}") == 40  # the refused ones moved nothing
    ok(pay(40, token=books.admin), 201)
    problem(pay(1), 422, "payout-exceeds-payable")
    assert books.amount(f"tutor_payable:{tid}") == 0

    # The tutor sees it: earned 3040 in April 2031, all of it paid out, nothing pending.
    earnings = ok(books.client.get(f"{API}/tutor/earnings", headers={**bearer(tutor["access_token"]), **books.fresh()}))
    assert earnings == {
        "pending": {"amount": 0, "currency": "USD"},
        "earned": {"amount": 3040, "currency": "USD"},
        "paid_out": {"amount": 3040, "currency": "USD"},
        "by_month": [{"month": "2031-04", "earned": {"amount": 3040, "currency": "USD"}}],
    }
    r = ok(books.client.post(f"{API}/finance/reconciliation", headers={**bearer(books.finance), **books.fresh()}))
    assert r["ok"], r["checks"]


def test_tutor_earnings(books: Books) -> None:
    url = f"{API}/tutor/earnings"
    body = ok(books.client.get(url, headers={**bearer(books.tutor), **books.fresh()}))
    assert body == {
        "pending": {"amount": 3040, "currency": "USD"},  # the open hold's net (3800 less 20 %)
        "earned": {"amount": 3040, "currency": "USD"},
        "paid_out": {"amount": 0, "currency": "USD"},
        "by_month": [{"month": "2031-03", "earned": {"amount": 3040, "currency": "USD"}}],
    }
    problem(books.client.get(url, headers=bearer(books.student)), 403)
    problem(books.client.get(url, headers=bearer(books.finance)), 403)
    problem(books.client.get(url), 401)


def test_platform_settings_are_versioned_integers(books: Books) -> None:
    url = f"{API}/admin/settings"
    admin = bearer(books.admin)
    assert ok(books.client.get(url, headers=admin)) == {
        "version": 1,
        "commission_bps": 2000,
        "cancellation_window_hours": 12,
        "late_cancel_refund_bps": 5000,
        "no_show_refund_bps": 0,
        "package_discount_bps": {"1": 0, "5": 0, "10": 500, "20": 1000},
        "credit_validity_days": 180,
        "pending_expiry_hours": 24,
        "auto_complete_hours": 24,
    }
    changed = ok(books.client.patch(url, json={"commission_bps": 1500}, headers=admin))
    assert changed["version"] == 2 and changed["commission_bps"] == 1500
    assert changed["cancellation_window_hours"] == 12 and changed["package_discount_bps"]["10"] == 500
    for bad in (
        {"commission_bps": 0.15},
        {"commission_bps": 1500.0},
        {"commission_bps": "1500"},
        {"commission_bps": True},
        {"late_cancel_refund_bps": 10_001},
        {"no_show_refund_bps": -1},
        {"credit_validity_days": 0},
        {"cancellation_window_hours": 12.5},
        {"package_discount_bps": {"10": 0.05}},
        {"package_discount_bps": {"3": 100}},
        {"no_such_setting": 1},
    ):
        problem(books.client.patch(url, json=bad, headers=admin), 422)
    assert ok(books.client.get(url, headers=admin))["version"] == 2
    merged = ok(
        books.client.patch(url, json={"package_discount_bps": {"5": 100}, "credit_validity_days": 90}, headers=admin)
    )
    assert merged["version"] == 3
    assert merged["package_discount_bps"] == {"1": 0, "5": 100, "10": 500, "20": 1000}
    assert merged["credit_validity_days"] == 90 and merged["commission_bps"] == 1500
    assert ok(books.client.get(url, headers=admin)) == merged

    for token in (books.finance, books.student, books.tutor):
        problem(books.client.get(url, headers=bearer(token)), 403)
        problem(books.client.patch(url, json={"commission_bps": 1}, headers=bearer(token)), 403)
    problem(books.client.get(url), 401)
    assert ok(books.client.get(url, headers=admin))["version"] == 3


def test_finance_routes_are_for_finance_and_admins(books: Books) -> None:
    routes = [
        ("get", f"{API}/finance/accounts/platform_commission/balance", None),
        ("get", f"{API}/finance/journal", None),
        ("post", f"{API}/finance/reconciliation", None),
        (
            "post",
            f"{API}/finance/payouts",
            {"tutor_id": books.tutor_id, "amount": {"amount": 1, "currency": "USD"}, "reference": "x"},
        ),
    ]
    for method, url, body in routes:
        kwargs = {"json": body} if body is not None else {}
        for token in (books.student, books.tutor):
            problem(getattr(books.client, method)(url, headers=bearer(token), **kwargs), 403)
        problem(getattr(books.client, method)(url, **kwargs), 401)
    assert books.amount(f"tutor_payable:{books.tutor_id}") == 3040  # nothing was paid out by the refused calls
    problem(books.client.put(f"{API}/admin/test-clock", json={"now": z(T3)}, headers=bearer(books.finance)), 403)


def test_ledger_cli_replay_and_reconcile(books: Books) -> None:
    env = server_env(books.settings)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "workers.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )

    def digest(out: subprocess.CompletedProcess[str]) -> str:
        assert out.returncode == 0, out.stderr[-2000:]
        found = re.findall(r"statement digest sha256:([0-9a-f]{64})", out.stdout)
        assert len(found) == 1, out.stdout[-2000:]
        return found[0]

    first = cli("ledger", "replay")
    assert re.search(r"entries \d+ postings \d+", first.stdout), first.stdout[-2000:]
    second = cli("ledger", "replay")
    assert digest(first) == digest(second)
    api = ok(books.client.post(f"{API}/finance/reconciliation", headers={**bearer(books.finance), **books.fresh()}))
    assert api["digest"] == digest(first)
    partial = cli("ledger", "replay", "--as-of", z(T1 + timedelta(hours=1)))
    assert re.search(r"entries 3 postings 7 as of", partial.stdout), partial.stdout[-2000:]
    assert digest(partial) != digest(first)

    rec = cli("ledger", "reconcile")
    assert rec.returncode == 0, rec.stdout[-3000:] + rec.stderr[-2000:]
    assert '"ok": true' in rec.stdout
    # The API keeps answering from the rebuilt ledger.
    assert books.amount("platform_commission", T3 - timedelta(seconds=1)) == 760
