-- bookings: students' and tutors' lists, the tutor calendar, the due-work sweep, taken slots and analytics.
CREATE TABLE {bookings} (
    booking_id uuid PRIMARY KEY,
    student_id uuid NOT NULL,
    tutor_id uuid NOT NULL,
    subject_id uuid NOT NULL,
    start_at timestamptz NOT NULL,
    end_at timestamptz NOT NULL,
    duration_minutes integer NOT NULL,
    status text NOT NULL,
    note text NOT NULL DEFAULT '',
    policy jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    auto_complete_at timestamptz NOT NULL,
    pending_reschedule jsonb,
    cancelled_by text,
    refunded_minutes integer,
    forfeited_minutes integer,
    reminded boolean NOT NULL DEFAULT false,
    -- names the lesson's meeting room once confirmed (a per-booking link, not a credential; the API shows the
    -- link built from it to the booking's two parties only)
    meeting_secret text,
    updated_position bigint NOT NULL
);
CREATE INDEX {bookings}_student_idx ON {bookings} (student_id, start_at, booking_id);
CREATE INDEX {bookings}_tutor_idx ON {bookings} (tutor_id, start_at, booking_id);
CREATE INDEX {bookings}_active_idx ON {bookings} (tutor_id, start_at, end_at) WHERE status IN ('pending', 'confirmed');
CREATE INDEX {bookings}_pending_due_idx ON {bookings} (expires_at) WHERE status = 'pending';
CREATE INDEX {bookings}_confirmed_due_idx ON {bookings} (auto_complete_at) WHERE status = 'confirmed';
CREATE INDEX {bookings}_created_idx ON {bookings} (created_at);
CREATE TABLE {tutor_reviews} (
    booking_id uuid PRIMARY KEY,
    tutor_id uuid NOT NULL,
    rating integer NOT NULL,
    text text NOT NULL,
    created_at timestamptz NOT NULL,
    response_text text,
    response_at timestamptz
);
CREATE INDEX {tutor_reviews}_tutor_idx ON {tutor_reviews} (tutor_id, created_at DESC);
-- tutor_calendar: the log position of the newest change to each tutor's taken time (a booking requested, moved or
-- ended); search reuses a tutor's worked-out next free slot while this and the tutor's row are unchanged.
CREATE TABLE {tutor_calendar} (
    tutor_id uuid PRIMARY KEY,
    position bigint NOT NULL
);
