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
