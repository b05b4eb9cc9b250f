-- audit_log: the whole event log with its metadata, indexed for the admin's filters.
CREATE TABLE {audit_log} (
    position bigint PRIMARY KEY,
    aggregate_id uuid NOT NULL,
    aggregate_version bigint NOT NULL,
    type text NOT NULL,
    recorded_at timestamptz,
    actor_id uuid,
    actor_role text,
    correlation_id text,
    causation_id text,
    data jsonb NOT NULL
);
CREATE UNIQUE INDEX {audit_log}_agg_idx ON {audit_log} (aggregate_id, aggregate_version);
CREATE INDEX {audit_log}_type_idx ON {audit_log} (type, position);
CREATE INDEX {audit_log}_actor_idx ON {audit_log} (actor_id, position);
CREATE INDEX {audit_log}_corr_idx ON {audit_log} (correlation_id, position);
CREATE INDEX {audit_log}_recorded_idx ON {audit_log} (recorded_at, position);
