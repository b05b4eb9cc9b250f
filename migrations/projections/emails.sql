-- emails: the outbox, one row per e-mail and recipient (what it says and to whom); what was sent is kept by the
-- mailer in email_deliveries (migrations/0005), which survives a rebuild of these tables.
CREATE TABLE {emails} (
    email_id uuid PRIMARY KEY,
    position bigint NOT NULL,
    user_id uuid NOT NULL,
    kind text NOT NULL,
    address text NOT NULL,
    created_at timestamptz NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX {emails}_position_idx ON {emails} (position);
-- what the e-mails need to know, folded from the log: each user's address, name, time zone and preference
CREATE TABLE {email_users} (
    user_id uuid PRIMARY KEY,
    email text NOT NULL,
    full_name text NOT NULL,
    timezone text NOT NULL,
    notify boolean NOT NULL,
    active boolean NOT NULL
);
CREATE TABLE {email_subjects} (
    subject_id uuid PRIMARY KEY,
    name text NOT NULL
);
CREATE TABLE {email_bookings} (
    booking_id uuid PRIMARY KEY,
    student_id uuid NOT NULL,
    tutor_id uuid NOT NULL,
    subject_id uuid NOT NULL,
    start_at timestamptz NOT NULL,
    duration_minutes integer NOT NULL
);
