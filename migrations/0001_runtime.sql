-- Command-side tables that must not enter the event log (secrets) or that serve request handling.

-- One row per account: the auth check's lookup and the credential store. Written in the same transaction
-- as the User's events (side writes), so it never disagrees with the log; the hash never enters the log.
CREATE TABLE IF NOT EXISTS identity_accounts (
    user_id uuid PRIMARY KEY,
    email text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    role text NOT NULL,
    is_active boolean NOT NULL DEFAULT true,
    deleted boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A session is a refresh-token family; reuse of a spent token revokes the family.
CREATE TABLE IF NOT EXISTS identity_sessions (
    family_id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    revoked_reason text
);
CREATE INDEX IF NOT EXISTS identity_sessions_user_idx ON identity_sessions (user_id);

-- Refresh tokens are stored only as SHA-256 digests.
CREATE TABLE IF NOT EXISTS identity_refresh_tokens (
    token_hash bytea PRIMARY KEY,
    family_id uuid NOT NULL REFERENCES identity_sessions (family_id),
    user_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    spent_at timestamptz
);
CREATE INDEX IF NOT EXISTS identity_refresh_tokens_family_idx ON identity_refresh_tokens (family_id);

-- Idempotency-Key replay store, scoped to the caller, kept at least 24 h.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope text NOT NULL,
    key text NOT NULL,
    request_hash bytea NOT NULL,
    status integer,
    headers jsonb,
    body bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Projection runtime: one row per projection generation (a rebuild makes a new generation beside the old).
CREATE TABLE IF NOT EXISTS projection_tracking (
    name text NOT NULL,
    generation integer NOT NULL,
    version integer NOT NULL,
    position bigint NOT NULL DEFAULT 0,
    state text NOT NULL CHECK (state IN ('building', 'active', 'retired')),
    events_processed bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, generation)
);
CREATE UNIQUE INDEX IF NOT EXISTS projection_tracking_one_active ON projection_tracking (name) WHERE state = 'active';
