-- purchases: every package purchase and its status; GET /packages/purchases pages them newest first, a student's
-- own or (staff) everyone's or one student's.
CREATE TABLE {purchases} (
    purchase_id uuid PRIMARY KEY,
    student_id uuid NOT NULL,
    tutor_id uuid NOT NULL,
    lessons integer NOT NULL,
    amount bigint NOT NULL,
    currency text NOT NULL,
    status text NOT NULL,
    payment_intent_id text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX {purchases}_student_idx ON {purchases} (student_id, created_at DESC, purchase_id DESC);
CREATE INDEX {purchases}_created_idx ON {purchases} (created_at DESC, purchase_id DESC);
