"""The console's finance pages over HTTP through the real app: balances as of an instant, the journal and its
CSV, reconciliation, payouts and refunds -- each answering what the JSON API answers for the same question, for
finance staff and admins only, every form behind its CSRF token."""

from __future__ import annotations

import csv
import html
import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from application.money import Money
from application.settings import Settings
from domain.credits import HoldState
from tests.audit.test_csv import cells_are_safe
from tests.console.test_console_http import csrf, sign_in
from tests.money.support import grant, redis_clock, refund_lot, wait_projected
from tests.support.api import API, Actor, ok, signup, staff, z

pytestmark = pytest.mark.cloned_database

T0 = datetime(2031, 3, 1, 10, 0, tzinfo=UTC)  # 10 lessons bought (38000)
T1 = datetime(2031, 3, 2, 11, 0, tzinfo=UTC)  # a lesson held and completed (3800: tutor 3040, commission 760)
NOW = datetime(2031, 3, 2, 12, 0, tzinfo=UTC)  # the clock for the pages: "yesterday" is T0's day, after T0


@dataclass
class Books:
    browser: TestClient[Any]
    settings: Settings
    admin: Actor
    finance: Actor
    student_id: uuid.UUID
    tutor_id: uuid.UUID

    def api(self, path: str, **params: str) -> Any:
        return self.browser.get(f"{API}{path}", params=params, headers=self.finance.auth)

    def console(self, actor: Actor) -> None:
        assert sign_in(self.browser, actor.email).status_code == 303


@pytest.fixture
def books(prepared: Settings, projectors: Any) -> Iterator[Books]:
    """A finance user signed in to the console over HTTPS, and a student's package with one tutor: bought at T0, a
    lesson held and completed at T1; the test clock then stands at NOW."""
    with TestClient(create_app(prepared), base_url="https://console.test", timeout=30) as c:
        admin, finance = staff(c, prepared, "admin"), staff(c, prepared, "finance")
        student, tutor = signup(c, "student")[0], signup(c, "tutor")[0]
        b = Books(c, prepared, admin, finance, uuid.UUID(student.id), uuid.UUID(tutor.id))
        money = Money(prepared, redis_clock(prepared))

        def at(t: datetime) -> None:
            ok(c.put(f"{API}/admin/test-clock", json={"now": z(t)}, headers=admin.auth))

        at(T0)
        grant(money, b.student_id, b.tutor_id, 600, 38000)
        at(T1)
        money.hold(b.student_id, f"bk-{uuid.uuid4()}", b.tutor_id, 60, 2000)
        booking = f"bk-{uuid.uuid4()}"
        money.hold(b.student_id, booking, b.tutor_id, 60, 2000)
        assert money.resolve(b.student_id, booking, 60, HoldState.CAPTURED)[0]["tutor_net"] == 3040
        at(NOW)
        wait_projected(prepared.database_url, ("ledger", "audit_log"))
        b.console(finance)
        yield b


def cell(page: str, element_id: str) -> list[str]:
    """The body rows of the table with this id, each row's cell texts joined with '|'."""
    m = re.search(rf'<table id="{element_id}">(.*?)</table>', page, re.S)
    assert m, f"no table #{element_id}"
    out = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", m.group(1), re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        if cells:
            out.append("|".join(" ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split()) for c in cells))
    return out


def test_finance_and_admins_open_the_finance_pages_students_and_tutors_get_403(books: Books) -> None:
    for path in ("/console/finance", "/console/finance/journal"):
        r = books.browser.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
    books.console(books.admin)
    assert books.browser.get("/console/finance").status_code == 200
    for role in ("student", "tutor"):
        books.console(signup(books.browser, role)[0])
        token = csrf(books.browser.get("/console/login").text)
        for method, path in (
            ("get", "/console/finance"),
            ("get", "/console/finance/journal"),
            ("get", "/console/finance/journal.csv"),
            ("post", "/console/finance/reconciliation"),
            ("post", "/console/finance/payouts"),
            ("post", "/console/finance/refunds"),
        ):
            kwargs = {"data": {"_csrf_token": token}} if method == "post" else {}
            r = getattr(books.browser, method)(path, follow_redirects=False, **kwargs)
            assert r.status_code == 403, (role, path, r.status_code)
            assert "text/html" in r.headers["content-type"] and "403" in r.text


def test_a_balance_as_of_yesterday_is_what_the_api_gives_for_that_instant(books: Books) -> None:
    account = f"student_credit:{books.student_id}"
    now = books.browser.get("/console/finance", params={"kind": "student_credit", "key": str(books.student_id)})
    assert now.status_code == 200
    assert cell(now.text, "balance-result")[0].split("|")[2] == "30400"  # 38000 less two holds of 3800
    link = re.search(r'<a id="yesterday" href="([^"]+)"', now.text)
    assert link, "a 'yesterday' shortcut"
    r = books.browser.get(html.unescape(link.group(1)))
    assert r.status_code == 200
    account_cell, as_of, amount, currency = cell(r.text, "balance-result")[0].split("|")
    assert account_cell == account and currency == "USD"
    yesterday = datetime.fromisoformat(as_of).replace(tzinfo=UTC)
    assert abs(yesterday - (NOW - timedelta(days=1))) < timedelta(minutes=1), as_of
    api = ok(books.api(f"/finance/accounts/{account}/balance", as_of=z(yesterday)))
    assert api["balance"] == {"amount": int(amount), "currency": "USD"}
    assert int(amount) == 38000  # bought before, the lesson held only after, that instant
    # A datetime-local value is read as UTC; the platform accounts take no id.
    r = books.browser.get("/console/finance", params={"kind": "platform_commission", "as_of": "2031-03-02T11:30"})
    assert cell(r.text, "balance-result")[0].split("|")[2] == "760"
    r = books.browser.get("/console/finance", params={"kind": "platform_commission", "as_of": "2031-03-02T10:30"})
    assert cell(r.text, "balance-result")[0].split("|")[2] == "0"
    # Refused as the API refuses them, naming the field.
    bad = books.browser.get("/console/finance", params={"kind": "bogus"})
    assert bad.status_code == 422 and "<code>account</code>" in bad.text
    bad = books.browser.get("/console/finance", params={"kind": "breakage", "as_of": "yesterday"})
    assert bad.status_code == 422 and "<code>as_of</code>" in bad.text


def test_the_journal_lists_what_the_api_lists_and_its_csv_is_the_apis(books: Books) -> None:
    payout = 'wire 03/2031, "batch" A'  # a comma and quotes: the CSV must quote the cell
    page = books.browser.get("/console/finance")
    r = books.browser.post(
        "/console/finance/payouts",
        data={
            "_csrf_token": csrf(page.text),
            "tutor_id": str(books.tutor_id),
            "amount": "40",
            "currency": "USD",
            "reference": payout,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    window = {"from": "2031-03-01T00:00:00", "to": "2031-03-03T00:00:00"}
    page = books.browser.get("/console/finance/journal", params=window)
    assert page.status_code == 200
    listed = [int(p) for p in re.findall(r'<tbody class="entry" data-position="(\d+)">', page.text)]
    api = ok(books.api("/finance/journal", **{k: v + "Z" for k, v in window.items()}))["items"]
    assert listed == [e["position"] for e in reversed(api)] and len(listed) == 5  # grant, 2 holds, capture, payout
    assert "debits 3800 = credits 3800 USD" in re.sub(r"\s+", " ", page.text)
    assert page.text.count('<span class="badge good">balanced</span>') == 5 and "badge bad" not in page.text
    newest, older = listed[:2], listed[2:4]
    first = books.browser.get("/console/finance/journal", params={**window, "limit": "2"})
    assert [int(p) for p in re.findall(r'data-position="(\d+)"', first.text)] == newest
    more = re.search(r'<p class="pager"><a href="([^"]+)"', first.text)
    assert more, "a link to older entries"
    second = books.browser.get("/console/finance/journal" + html.unescape(more.group(1)))
    assert [int(p) for p in re.findall(r'data-position="(\d+)"', second.text)] == older
    narrow = books.browser.get(
        "/console/finance/journal", params={"from": "2031-03-02T00:00", "to": "2031-03-02T11:30"}
    )
    assert len(re.findall(r'<tbody class="entry"', narrow.text)) == 3  # T1's two holds and the capture

    link = re.search(r'<a id="download-csv" href="([^"]+)"', page.text)
    assert link
    r = books.browser.get(html.unescape(link.group(1)))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    from_api = books.browser.get(
        f"{API}/finance/journal",
        params={"format": "csv", **{k: v + "Z" for k, v in window.items()}},
        headers=books.finance.auth,
    )
    assert r.text == from_api.text
    table = cells_are_safe(r.text)
    assert table[0] == ["entry_id", "position", "recorded_at", "description", "account", "side", "amount", "currency"]
    assert len(table) == 1 + 2 + 2 + 2 + 3 + 2
    assert [row[3] for row in table if row[3].startswith("payout")] == [f"payout {payout}"] * 2
    assert f'"payout {payout.replace(chr(34), chr(34) * 2)}"' in r.text  # quoted, quotes doubled
    assert list(csv.reader(io.StringIO(r.text)))[1][:2] == ["E" + str(listed[-1]), str(listed[-1])]


def test_reconciliation_runs_and_shows_each_invariant(books: Books) -> None:
    page = books.browser.get("/console/finance")
    r = books.browser.post("/console/finance/reconciliation", data={"_csrf_token": csrf(page.text)})
    assert r.status_code == 200
    assert 'data-ok="true"' in r.text
    api = ok(books.browser.post(f"{API}/finance/reconciliation", headers=books.finance.auth))
    shown = dict(re.findall(r'<tr data-check="(\w+)">.*?<span class="badge (\w+)">', r.text, re.S))
    assert shown == {c["name"]: "good" for c in api["checks"]}
    assert "live_ledger_matches_replay" in shown and f"sha256:{api['digest']}" in r.text


def test_a_payout_over_the_payable_is_refused_with_its_problem_type(books: Books) -> None:
    payable = f"tutor_payable:{books.tutor_id}"

    def pay(amount: str, reference: str = "wire", **extra: str) -> Any:
        token = csrf(books.browser.get("/console/finance").text)
        fields = {
            "_csrf_token": token,
            "tutor_id": str(books.tutor_id),
            "amount": amount,
            "currency": "USD",
            "reference": reference,
        }
        return books.browser.post("/console/finance/payouts", data={**fields, **extra}, follow_redirects=False)

    r = pay("3041")
    assert r.status_code == 422 and "payout-exceeds-payable" in r.text and "text/html" in r.headers["content-type"]
    r = pay("ten")
    assert r.status_code == 422 and "amount" in r.text
    r = pay("10", currency="usd")
    assert r.status_code == 422 and "currency" in r.text
    assert ok(books.api(f"/finance/accounts/{payable}/balance"))["balance"]["amount"] == 3040  # nothing moved

    r = pay("3000", "wire 2031-03")
    assert r.status_code == 303 and r.headers["location"].startswith("/console/finance?done=")
    page = books.browser.get(r.headers["location"])
    assert "Payout of 3000 USD" in page.text
    assert cell(page.text, "recent-payouts")[0].split("|")[1:] == [
        str(books.tutor_id),
        "3000 USD",
        "payout wire 2031-03",
    ]
    assert ok(books.api(f"/finance/accounts/{payable}/balance"))["balance"]["amount"] == 40
    assert "payout-exceeds-payable" in pay("41").text


def test_refunds_are_offered_per_purchase_and_listed(books: Books) -> None:
    money = Money(books.settings, redis_clock(books.settings))
    lot, _ = grant(money, books.student_id, books.tutor_id, 60, 3800)
    refund_lot(money, books.student_id, lot)
    wait_projected(books.settings.database_url, ("ledger",))
    page = books.browser.get("/console/finance")
    assert cell(page.text, "recent-refunds")[0].split("|")[1:] == ["3800 USD", f"credit refunded (lot {lot})"]
    token = csrf(page.text)
    r = books.browser.post("/console/finance/refunds", data={"_csrf_token": token, "purchase_id": str(uuid.uuid4())})
    assert r.status_code == 404 and "not-found" in r.text
    r = books.browser.post("/console/finance/refunds", data={"_csrf_token": token, "purchase_id": "nope"})
    assert r.status_code == 422 and "<code>purchase_id</code>" in r.text


def test_finance_forms_without_their_csrf_token_are_refused(books: Books) -> None:
    payout = {"tutor_id": str(books.tutor_id), "amount": "1", "currency": "USD", "reference": "x"}
    for path, data in (
        ("/console/finance/payouts", payout),
        ("/console/finance/payouts", {**payout, "_csrf_token": "forged"}),
        ("/console/finance/reconciliation", {}),
        ("/console/finance/refunds", {"purchase_id": str(uuid.uuid4())}),
    ):
        r = books.browser.post(path, data=data, follow_redirects=False)
        assert r.status_code == 403, path
    balance = ok(books.api(f"/finance/accounts/tutor_payable:{books.tutor_id}/balance"))
    assert balance["balance"]["amount"] == 3040
