"""Every console page, by area (one module each)."""

from __future__ import annotations

from api.console import events, tutors
from api.console.subjects import PAGES as SUBJECT_PAGES
from api.console.users import PAGES as USER_PAGES

PAGES = [*events.PAGES, *tutors.PAGES]
PAGES += USER_PAGES
PAGES += SUBJECT_PAGES
