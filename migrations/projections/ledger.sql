-- ledger: the double-entry journal derived from money events, and daily balance deltas for as-of queries.
CREATE TABLE {ledger_entries} (
    position bigint PRIMARY KEY,
    entry_id text GENERATED ALWAYS AS ('E' || position::text) STORED,  -- derived from the key: no index of its own
    recorded_at timestamptz NOT NULL,
    description text NOT NULL,
    event_type text NOT NULL,
    aggregate_id uuid NOT NULL
);
CREATE INDEX {ledger_entries}_recorded_idx ON {ledger_entries} (recorded_at, position);
CREATE TABLE {ledger_postings} (
    position bigint NOT NULL,
    seq smallint NOT NULL,
    account text NOT NULL,
    side text NOT NULL CHECK (side IN ('debit', 'credit')),
    amount bigint NOT NULL CHECK (amount >= 0),
    currency text NOT NULL,
    signed bigint NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (position, seq)
);
CREATE INDEX {ledger_postings}_account_idx ON {ledger_postings} (account, recorded_at) INCLUDE (signed, currency);
-- Per-batch sums of the signed postings per (account, UTC day, currency): a key may have several rows (one per
-- batch that touched it), so readers sum them. Appending is what lets a replay stream them in by COPY.
CREATE TABLE {ledger_daily} (
    account text NOT NULL,
    currency text NOT NULL,
    day date NOT NULL,
    delta bigint NOT NULL
);
CREATE INDEX {ledger_daily}_account_idx ON {ledger_daily} (account, day) INCLUDE (currency, delta);
