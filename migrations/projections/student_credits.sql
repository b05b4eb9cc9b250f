-- student_credits: each student's lots and holds (the credits dashboard and the expiry sweep's due work).
-- A booking's hold changes its lot's remaining minutes and value: no index covers those columns, not even in a
-- predicate, and each page keeps room, so that change is a HOT update (no index entries written).
CREATE TABLE {student_credit_lots} (
    lot_id text PRIMARY KEY,
    student_id uuid NOT NULL,
    tutor_id uuid NOT NULL,
    minutes integer NOT NULL,
    minutes_remaining integer NOT NULL,
    value_remaining bigint NOT NULL,
    currency text NOT NULL,
    expires_at timestamptz NOT NULL,
    state text NOT NULL,
    expiry_warned boolean NOT NULL DEFAULT false
) WITH (fillfactor = 70);
CREATE INDEX {student_credit_lots}_student_idx ON {student_credit_lots} (student_id, tutor_id);
-- the expiry sweep's due work: open lots (those with unused minutes are found among them)
CREATE INDEX {student_credit_lots}_due_idx ON {student_credit_lots} (expires_at) WHERE state = 'open';
-- the expiry warning sweep's due work: open lots not yet warned of
CREATE INDEX {student_credit_lots}_warn_idx ON {student_credit_lots} (expires_at) WHERE state = 'open' AND NOT expiry_warned;
CREATE TABLE {student_credit_holds} (
    booking_id text PRIMARY KEY,
    student_id uuid NOT NULL,
    tutor_id uuid NOT NULL,
    minutes integer NOT NULL,
    amount bigint NOT NULL,
    net bigint NOT NULL,
    currency text NOT NULL,
    state text NOT NULL
);
CREATE INDEX {student_credit_holds}_student_idx ON {student_credit_holds} (student_id) WHERE state = 'open';
CREATE INDEX {student_credit_holds}_tutor_idx ON {student_credit_holds} (tutor_id) WHERE state = 'open';
CREATE TABLE {tutor_earning_lines} (
    position bigint NOT NULL,
    tutor_id uuid NOT NULL,
    kind text NOT NULL CHECK (kind IN ('earned', 'paid_out')),
    amount bigint NOT NULL,
    currency text NOT NULL,
    month text NOT NULL,
    PRIMARY KEY (position, tutor_id)
);
CREATE INDEX {tutor_earning_lines}_tutor_idx ON {tutor_earning_lines} (tutor_id, month);
