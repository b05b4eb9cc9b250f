-- E-mail deliveries: what the mailer (workers/mailer.py) did with each row of the `emails` outbox read model.
-- A runtime table, not a read model: it survives a rebuild of the outbox (whose rows keep their ids), so nothing
-- is sent twice. `position` is the outbox row's event position: rows above the highest enrolled are new.
CREATE TABLE IF NOT EXISTS email_deliveries (
    email_id uuid PRIMARY KEY,
    position bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    skipped text,  -- why it was not sent: e-mails turned off, account closed, too old, refused
    last_error text
);
CREATE INDEX IF NOT EXISTS email_deliveries_position_idx ON email_deliveries (position);
CREATE INDEX IF NOT EXISTS email_deliveries_due_idx ON email_deliveries (next_attempt_at)
    WHERE sent_at IS NULL AND skipped IS NULL;

-- Where e-mail began: the log's head when a mailer first ran. Outbox rows of events before it are history, never
-- sent (turning e-mail on must not mail everything that ever happened).
CREATE TABLE IF NOT EXISTS email_mailer (
    id integer PRIMARY KEY CHECK (id = 1),
    started_position bigint NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);
