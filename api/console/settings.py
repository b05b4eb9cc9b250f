"""Platform settings in the console: the values in force (as GET /admin/settings), a form changing them (the same
command and validation as PATCH /admin/settings) and every version with who changed it, when and what, read from
the audit log (api/audit.py `events_page`), each version opening in the event explorer."""

from __future__ import annotations

import re
from typing import Any

from anyio import to_thread
from litestar import Request, get, post
from litestar.response import Redirect, Template

from api.audit import EventFilter, events_page
from api.console.render import back, done, form, page
from api.console.session import ADMIN_PAGE
from api.deps import reading
from api.schemas.money import platform_settings_out
from application.money import Money
from domain.errors import ConcurrencyConflict
from domain.platform import PACKAGE_SIZES, SETTINGS_ID

HOME = "/console/settings"
DISCOUNT = "package_discount_bps"
# (field, label, unit) in the order the form shows them
FIELDS: list[tuple[str, str, str]] = [
    ("commission_bps", "Commission", "basis points (2000 = 20 %)"),
    ("cancellation_window_hours", "Cancellation window", "hours before the lesson"),
    ("late_cancel_refund_bps", "Late-cancel refund share", "basis points of the lesson refunded"),
    ("no_show_refund_bps", "No-show refund share", "basis points of the lesson refunded"),
    ("credit_validity_days", "Package validity", "days a purchased credit lasts"),
    ("pending_expiry_hours", "Pending request expiry", "hours"),
    ("auto_complete_hours", "Auto-complete after", "hours after the lesson ends"),
]
WHOLE = re.compile(r"[+-]?\d+")


def _number(raw: str) -> Any:
    """A form value as the JSON number PATCH would carry when it is a whole number; otherwise the text itself, so
    the settings' own validation refuses it with its message for that field."""
    text = raw.strip()
    return int(text) if WHOLE.fullmatch(text) else text


def changes_of(fields: dict[str, str], current: dict[str, Any]) -> dict[str, Any]:
    """The PATCH body a posted form amounts to: the values that differ from those in force (package discounts by
    size); any other field is passed on, for the settings to refuse as unknown."""
    changes: dict[str, Any] = {}
    discounts: dict[str, Any] = {}
    for name, raw in fields.items():
        if name.startswith(DISCOUNT + "."):
            size = name.removeprefix(DISCOUNT + ".")
            value = _number(raw)
            if value != current[DISCOUNT].get(size):
                discounts[size] = value
        elif name != "version":
            value = _number(raw)
            if value != current.get(name):
                changes[name] = value
    if discounts:
        changes[DISCOUNT] = discounts
    return changes


@get("/settings", guards=ADMIN_PAGE, sync_to_thread=True)
def settings_page(request: Request[Any, Any, Any], money: Money) -> Template:
    """The settings in force, the form changing them, and every version newest first."""
    current = platform_settings_out(money.platform().view())
    versions = []
    with reading(request, ("audit_log",), request.user) as (conn, _):
        cursor: str | None = None
        while True:
            found = events_page(conn, EventFilter(aggregate_id=SETTINGS_ID), 100, cursor)
            versions.extend(found.items)
            cursor = found.next_cursor
            if cursor is None:
                break
    return page(
        request,
        "settings.html",
        s=current,
        fields=FIELDS,
        sizes=[str(n) for n in PACKAGE_SIZES],
        versions=list(reversed(versions)),
        aggregate_id=SETTINGS_ID,
    )


@post("/settings", guards=ADMIN_PAGE, status_code=303)
async def change_settings(request: Request[Any, Any, Any], money: Money) -> Redirect:
    """Change the values that differ from those in force, as PATCH /admin/settings; refused (409) when the settings
    changed since the form was shown, so that a stale form never undoes someone's change."""
    fields = await form(request)

    def change() -> int | None:
        current = money.platform().view()
        if fields.get("version", "").strip() != str(current["version"]):
            raise ConcurrencyConflict(
                f"the settings are at version {current['version']} now, not the version this form showed: reload"
            )
        changes = changes_of(fields, current)
        if not changes:
            return None
        view, _position = money.change_settings(changes)
        return int(view["version"])

    version = await to_thread.run_sync(change)
    if version is None:
        return back(HOME, "Nothing changed")
    return done(request, HOME, f"Saved as version {version}")


PAGES = [settings_page, change_settings]
