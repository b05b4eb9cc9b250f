-- messaging: threads with their last message, messages in order, read positions per participant.
CREATE TABLE {threads} (
    thread_id uuid PRIMARY KEY,
    participant_ids uuid[] NOT NULL,
    last_message jsonb,
    last_position bigint NOT NULL
);
CREATE INDEX {threads}_participants_idx ON {threads} USING gin (participant_ids);
CREATE TABLE {thread_messages} (
    message_id uuid PRIMARY KEY,
    thread_id uuid NOT NULL,
    sender_id uuid NOT NULL,
    body text,
    created_at timestamptz NOT NULL,
    edited_at timestamptz,
    deleted boolean NOT NULL DEFAULT false,
    attachments jsonb NOT NULL DEFAULT '[]',
    position bigint NOT NULL
);
CREATE INDEX {thread_messages}_thread_idx ON {thread_messages} (thread_id, position);
CREATE TABLE {thread_reads} (
    thread_id uuid NOT NULL,
    user_id uuid NOT NULL,
    read_position bigint NOT NULL,
    PRIMARY KEY (thread_id, user_id)
);
