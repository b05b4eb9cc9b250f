"""The console's Must-show flows in headless chromium against a real API process (tests/console/conftest.py):
sign in as admin, approve a pending tutor after opening a document, find that approval in the event explorer by
its correlation id and step the tutor's profile back one version, export bookings as CSV from the page, change a
setting and see its history, view a balance as of yesterday; a student gets 403 on admin pages; a form posted
without its CSRF token is refused. With CONSOLE_SCREENSHOTS=DIR the pages are also saved as PNGs there."""

from __future__ import annotations

import csv
import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from application.money import Money
from application.settings import Settings
from tests.console.support import caught_up
from tests.support.api import PASSWORD, staff_login
from tests.support.world import grant
from tests.tutoring.support import (
    API,
    PDF,
    Actor,
    approved_tutor,
    create_subject,
    fill_profile,
    ok,
    signup,
    staff,
    upload_document,
)

pytestmark = pytest.mark.cloned_database
SHOTS = os.environ.get("CONSOLE_SCREENSHOTS", "")


def shot(tab: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def sign_in(tab: Any, root: str, email: str, path: str = "/console/") -> None:
    tab.goto(root + path)
    assert "/console/login" in tab.url
    tab.fill("input[name=email]", email)
    tab.fill("input[name=password]", PASSWORD)
    tab.click("button[type=submit]")
    tab.wait_for_load_state()


def pending_tutor_with_document(api: httpx.Client, admin: Actor, subject_id: str) -> Actor:
    """A tutor at 80 %, one PDF uploaded (presigned PUT to S3, then checked), submitted for approval."""
    tutor = signup(api, "tutor", "Grace Hopper")
    fill_profile(api, tutor, [subject_id])
    upload_document(api, tutor)
    ok(api.post(f"{API}/tutor/profile/submit", headers=tutor.auth))
    return tutor


def a_booking(api: httpx.Client, settings: Settings, admin: Actor, subject_id: str) -> str:
    """An approved tutor, a student with credit for them, and one booked lesson; the booking's id."""
    tutor, _ = approved_tutor(api, admin, [subject_id], "Alan Turing")
    student = signup(api, "student", "Ada Student")
    grant(Money(settings), UUID(student.id), UUID(tutor.id), 600, 40000)
    day = (datetime.now(UTC) + timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
    r = api.post(
        f"{API}/bookings",
        json={
            "tutor_id": tutor.id,
            "subject_id": subject_id,
            "start": day.isoformat().replace("+00:00", "Z"),
            "duration_minutes": 60,
            "note": "=cmd|' /C calc'!A0",
        },
        headers=student.auth,
    )
    return str(ok(r, 201)["id"])


def test_the_back_office_in_a_browser(site: tuple[str, Settings], tab: Any) -> None:
    root, settings = site
    with httpx.Client(base_url=root, timeout=30) as api:
        admin = staff(api, settings, "admin")
        subject = create_subject(api, admin, "Compilers")
        pending_tutor_with_document(api, admin, subject["id"])
        booking_id = a_booking(api, settings, admin, subject["id"])
        finance_email = staff_login(api, settings, "finance")["email"]
    caught_up(settings.database_url)

    # sign in as admin: the dashboard with its figures and drawn charts
    sign_in(tab, root, admin.email)
    assert tab.url == root + "/console/"
    tab.wait_for_selector("canvas[data-chart=bookings][data-drawn=yes]")
    assert tab.locator("#overview").inner_text().count("\n") > 3
    shot(tab, "dashboard")

    # the approval queue, the tutor's profile, open the document, mark it verified, approve
    tab.click("text=Tutor approval")
    tab.click("a.tutor:has-text('Grace Hopper')")
    assert "Patient tutor" in tab.locator("section.card").first.inner_text()
    with tab.expect_download() as opened:  # the presigned GET serves it as an attachment
        tab.click("a.open-document")
    assert opened.value.suggested_filename == "diploma.pdf"
    with open(opened.value.path(), "rb") as f:
        assert f.read() == PDF
    tab.click("text=Mark verified")
    assert "verified" in tab.locator("#documents").inner_text()
    tab.click("#approve")
    assert tab.locator("#tutor-status").inner_text() == "approved"

    # the approval in the explorer, by the request's correlation id; step the profile back one version
    tab.click("#recorded")
    assert "/console/correlations/" in tab.url
    correlation = tab.url.rsplit("/", 1)[1]
    touched = tab.locator("section.touched")
    assert touched.count() >= 1 and "TutorProfile.Approved" in touched.first.inner_text()
    tab.click("section.touched a.version")
    approved_version = int(tab.locator("#at-version").inner_text().split()[-1])
    assert '"status": "approved"' in tab.locator("#state").inner_text()
    shot(tab, "event-explorer")
    tab.click("#step-back")
    assert tab.locator("#at-version").inner_text() == f"version {approved_version - 1}"
    assert '"status": "pending_approval"' in tab.locator("#state").inner_text()
    assert tab.url.endswith(f"?version={approved_version - 1}")
    # and the same approval found by filtering the log by correlation id
    tab.goto(f"{root}/console/events")
    tab.fill("input[name=correlation_id]", correlation)
    tab.click("#event-filter button[type=submit]")
    assert "TutorProfile.Approved" in tab.locator("#events").inner_text()

    # export bookings as CSV from the page
    tab.click("text=Dashboard")
    with tab.expect_download() as exported:
        tab.click("a.export[href*='/exports/bookings']")
    rows = list(csv.DictReader(io.StringIO(Path(exported.value.path()).read_text())))
    assert [r["id"] for r in rows] == [booking_id]

    # change a setting, see its history
    tab.click("text=Settings")
    field = tab.locator("#settings-form input[name=commission_bps]")
    commission = int(field.input_value()) + 50
    field.fill(str(commission))
    tab.click("#settings-form button[type=submit]")
    newest = tab.locator("#versions tbody tr").first.inner_text()
    assert "commission_bps" in newest and str(commission) in newest and "admin" in newest
    shot(tab, "settings")

    # a balance as of yesterday (finance signs in; the commission account)
    tab.click("text=Sign out")
    sign_in(tab, root, finance_email, "/console/finance")
    tab.select_option("#balance select[name=kind]", "platform_commission")
    tab.click("#balance button[type=submit]")
    tab.click("#yesterday")
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    result = tab.locator("#balance-result").inner_text()
    assert "platform_commission" in result and yesterday in result
    shot(tab, "finance")

    # a form posted without its CSRF token is refused (the browser's cookies, the token left out)
    tab.evaluate("document.querySelectorAll('input[name=_csrf_token]').forEach(e => e.remove())")
    tab.click("#reconciliation button[type=submit]")
    assert "403" in tab.locator("h1").inner_text()


def test_a_student_gets_403_on_admin_pages(site: tuple[str, Settings], tab: Any) -> None:
    root, _ = site
    with httpx.Client(base_url=root, timeout=30) as api:
        student = signup(api, "student", "Stu Dent")
    for path in ("/console/", "/console/users", "/console/tutors", "/console/events", "/console/finance"):
        if path == "/console/":
            sign_in(tab, root, student.email, path)
        else:
            tab.goto(root + path)
        assert "403" in tab.locator("h1").inner_text(), path
