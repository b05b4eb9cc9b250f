"""Scheduling context: secret calendar feed URLs. The token is shown once and kept only as its SHA-256 digest in
`calendar_feeds` (migrations/0004), written in the same transaction as the CalendarFeed.Issued event that records,
without the token, that the owner issued a new feed (and so ended the previous one)."""

from __future__ import annotations

import secrets
from uuid import UUID

from application.accounts import Account
from application.store import EventStoreApp, Loaded
from application.tokens import digest
from domain.calendar_feed import CalendarFeed

UPSERT = (
    "INSERT INTO calendar_feeds (owner_id, token_digest, issued_at) VALUES (%s, %s, %s)"
    " ON CONFLICT (owner_id) DO UPDATE SET token_digest = excluded.token_digest, issued_at = excluded.issued_at"
)
OWNER = (
    "SELECT f.owner_id FROM calendar_feeds f JOIN identity_accounts a ON a.user_id = f.owner_id"
    " WHERE f.token_digest = %s AND a.is_active AND NOT a.deleted"
)


class CalendarFeeds:
    """Issues feed tokens and finds whose feed a token opens, through the application that holds it."""

    def __init__(self, app: EventStoreApp) -> None:
        self.app = app

    def issue(self, actor: Account) -> tuple[str, int]:
        """A new feed token for the caller (returned once, never stored) replacing their previous one, and the
        position of the event recording it."""
        feed_id = CalendarFeed.create_id(actor.user_id)
        token = secrets.token_urlsafe(32)

        def issue(got: Loaded) -> tuple[str, int]:
            feed = got.get(CalendarFeed, feed_id) or CalendarFeed(owner_id=actor.user_id)
            now = self.app.now()
            feed.issue(actor.user_id, now)
            position = self.app.record(feed, side_writes=[(UPSERT, (actor.user_id, digest(token), now))])
            return token, position

        return self.app.command(issue, changes=[feed_id])

    def owner_of(self, token: str) -> UUID | None:
        """The user whose current feed `token` opens, while their account is active and not deleted; else None."""
        with self.app.connection() as conn:
            row = conn.execute(OWNER, (digest(token),)).fetchone()
        return None if row is None else UUID(str(row["owner_id"]))
