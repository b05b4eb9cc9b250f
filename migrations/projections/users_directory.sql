-- users_directory: the admin's user list (filters role, is_active, q) and user lookups.
CREATE TABLE {users_directory} (
    user_id uuid PRIMARY KEY,
    email text NOT NULL,
    full_name text NOT NULL,
    role text NOT NULL,
    is_active boolean NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    timezone text NOT NULL DEFAULT 'UTC',
    language text NOT NULL DEFAULT 'en',
    currency text NOT NULL DEFAULT 'USD',
    -- a picture elsewhere (PATCH /me), or an uploaded avatar: the key of its checked copy and its type
    avatar_url text,
    avatar_key text,
    avatar_type text,
    registered_at timestamptz NOT NULL,
    registered_position bigint NOT NULL,
    updated_position bigint NOT NULL,
    search text GENERATED ALWAYS AS (lower(full_name || ' ' || email)) STORED
);
CREATE INDEX {users_directory}_reg_idx ON {users_directory} (registered_position DESC);
CREATE INDEX {users_directory}_role_idx ON {users_directory} (role, registered_position DESC);
CREATE INDEX {users_directory}_active_idx ON {users_directory} (is_active, registered_position DESC);
CREATE INDEX {users_directory}_email_idx ON {users_directory} (email);
