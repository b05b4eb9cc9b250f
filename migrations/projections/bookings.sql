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
-- tutor_calendar: one row per tutor (from TutorProfile.Created). `position`: the log position of the newest change to
-- the tutor's taken time (a booking requested, moved or ended); search reuses a worked-out next free slot while this
-- and the tutor's row are unchanged. `free_starts`: the start instants of free one-hour lessons in
-- [anchor, free_until) as closed ranges with ends on the UTC :00/:30 grid (weekly rules in the tutor's zone plus
-- openings minus blocks, computed in Python by domain.availability, minus the tutor's pending and confirmed
-- bookings, subtracted in SQL); search answers its availability window and next_slot from it in SQL. The horizon
-- is anchored at the recorded time of the event that last worked out `base_starts` (never the wall clock), so a
-- rebuild writes the same rows; it moves on with the tutor's events (see projections.bookings.HORIZON).
CREATE TABLE {tutor_calendar} (
    tutor_id uuid PRIMARY KEY,
    profile_id uuid UNIQUE,
    position bigint NOT NULL DEFAULT 0,
    availability jsonb,
    anchor timestamptz,
    free_until timestamptz,
    base_starts tstzmultirange NOT NULL DEFAULT '{{}}',
    free_starts tstzmultirange NOT NULL DEFAULT '{{}}'
);
