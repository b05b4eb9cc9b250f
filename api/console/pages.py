"""Every console page, by area (one module each)."""

from __future__ import annotations

from api.console import events, finance, settings

PAGES = [*events.PAGES]
PAGES += finance.PAGES
PAGES += settings.PAGES
