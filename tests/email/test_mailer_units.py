"""The mailer's small rules, without a server: retry delays, reading SMTP_URL, times in the recipient's zone, and
templates that exist for every kind the outbox writes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.mailer import SUBJECTS, Renderer, SmtpTarget, backoff, local_time


@given(st.integers(1, 60), st.floats(0, 1))
def test_backoff_doubles_from_5_s_up_to_10_min_with_jitter(attempts: int, r: float) -> None:
    base = min(600.0, 5.0 * 2 ** (attempts - 1))
    assert base / 2 <= backoff(attempts, rand=lambda: r) <= base
    assert backoff(1, rand=lambda: 1.0) == 5.0 and backoff(60, rand=lambda: 1.0) == 600.0


def test_smtp_url_with_and_without_credentials() -> None:
    assert SmtpTarget.parse("smtp://mail.example:2525") == SmtpTarget("mail.example", 2525, "", "", False)
    assert SmtpTarget.parse("smtp://u%40x:p%3Aw@h:587") == SmtpTarget("h", 587, "u@x", "p:w", False)
    assert SmtpTarget.parse("smtps://h") == SmtpTarget("h", 465, "", "", True)
    with pytest.raises(ValueError):
        SmtpTarget.parse("http://h:25")


def test_local_time_follows_the_recipients_zone_and_its_summer_time() -> None:
    assert local_time("2027-03-02T14:00:00Z", "Europe/Berlin") == "Tuesday 2 March 2027, 15:00 CET (Europe/Berlin)"
    assert local_time("2027-07-02T14:00:00+00:00", "Europe/Berlin").endswith("16:00 CEST (Europe/Berlin)")
    assert local_time("2027-03-02T14:00:00Z", "Not/AZone") == "Tuesday 2 March 2027, 14:00 UTC (UTC)"


@pytest.mark.parametrize("kind", sorted(SUBJECTS))
def test_every_kind_renders_text_and_escaped_html(kind: str) -> None:
    data = {
        "booking_id": "b",
        "subject": "Maths <1>",
        "other_name": "Ann & <Bob>",
        "start": "2027-03-02T14:00:00Z",
        "duration_minutes": 60,
        "note": "",
        "by": "student",
        "reason": "",
        "lot_id": "l",
        "minutes": 60,
        "expires_at": "2027-03-09T14:00:00+00:00",
        "recipient_name": "Cy",
        "timezone": "Asia/Tokyo",
    }
    subject, text, html = Renderer().render(kind, data)
    assert "Ann & <Bob>" in subject and "JST (Asia/Tokyo)" in subject + text
    assert "Ann & <Bob>" in text and "Ann &amp; &lt;Bob&gt;" in html and "<Bob>" not in html
