"""Every console page, by area (one module each)."""

from __future__ import annotations

from api.console import dashboard, events, finance, settings, subjects, tutors, users

PAGES = [
    *dashboard.PAGES,
    *users.PAGES,
    *tutors.PAGES,
    *subjects.PAGES,
    *settings.PAGES,
    *events.PAGES,
    *finance.PAGES,
]
