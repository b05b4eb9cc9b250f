-- tutor_payouts: the payouts finance recorded to each tutor; GET /tutor/payouts pages a tutor's newest first.
CREATE TABLE {tutor_payouts} (
    payout_id uuid PRIMARY KEY,
    tutor_id uuid NOT NULL,
    amount bigint NOT NULL,
    currency text NOT NULL,
    reference text NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX {tutor_payouts}_tutor_idx ON {tutor_payouts} (tutor_id, recorded_at DESC, payout_id DESC);
