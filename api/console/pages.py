"""Every console page, by area (one module each)."""

from __future__ import annotations

from api.console import dashboard, events, finance, settings, tutors

PAGES = [*dashboard.PAGES, *events.PAGES, *tutors.PAGES, *finance.PAGES, *settings.PAGES]
