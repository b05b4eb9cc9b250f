-- Calendar feeds (GET /calendar/{token}.ics): one current secret URL per user. Only the token's SHA-256 digest is
-- kept, written in the same transaction as the CalendarFeed.Issued event (which never holds the token); issuing a
-- new feed replaces the row, so the old URL stops working at once.
CREATE TABLE IF NOT EXISTS calendar_feeds (
    owner_id uuid PRIMARY KEY,
    token_digest bytea NOT NULL UNIQUE,
    issued_at timestamptz NOT NULL
);
