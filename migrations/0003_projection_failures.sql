-- A projection that cannot apply an event is tried again with backoff, then stops at it (or skips it, where its
-- policy allows) while every other projection goes on (projections/failures.py). `stopped` keeps it from running
-- until an operator runs `tutorconnect projections retry NAME`; queries on its read model answer 503 naming it.
ALTER TABLE projection_tracking ADD COLUMN IF NOT EXISTS stopped boolean NOT NULL DEFAULT false;

-- One row per (projection generation, event) that failed: what, why, how often, and what became of it.
CREATE TABLE IF NOT EXISTS projection_failures (
    name text NOT NULL,
    generation integer NOT NULL,
    position bigint NOT NULL,
    aggregate_id uuid NOT NULL,
    aggregate_version integer NOT NULL,
    event_type text NOT NULL,
    error text NOT NULL,
    attempts integer NOT NULL,
    state text NOT NULL CHECK (state IN ('retrying', 'stopped', 'skipped')),
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, generation, position)
);
