-- notifications: each user's inbox.
CREATE TABLE {notifications} (
    notification_id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    type text NOT NULL,
    created_at timestamptz NOT NULL,
    position bigint NOT NULL,
    read boolean NOT NULL DEFAULT false,
    data jsonb NOT NULL
);
CREATE INDEX {notifications}_user_idx ON {notifications} (user_id, position DESC);
CREATE TABLE {notification_bookings} (
    booking_id uuid PRIMARY KEY,
    student_id uuid,
    tutor_id uuid NOT NULL
);
-- every user's name, role and whether they are active (not deactivated or deleted), from the user events: the
-- admins a submitted tutor profile is announced to, and the tutor's name in that notice
CREATE TABLE {notification_users} (
    user_id uuid PRIMARY KEY,
    full_name text NOT NULL,
    role text NOT NULL,
    active boolean NOT NULL
);
-- message.created (projections/thread_notices.py): each thread's participants, and the unread notice of each
-- (user, thread) that has one (while it exists, further messages in the thread add no notification)
CREATE TABLE {notification_threads} (
    thread_id uuid PRIMARY KEY,
    participant_ids uuid[] NOT NULL
);
CREATE TABLE {notification_unread_threads} (
    user_id uuid NOT NULL,
    thread_id uuid NOT NULL,
    notification_id uuid NOT NULL UNIQUE,
    PRIMARY KEY (thread_id, user_id)
);
