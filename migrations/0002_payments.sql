-- Stripe PaymentIntent id -> our purchase, written with the Purchase's first event (webhooks for refunds carry
-- only the PaymentIntent id).
CREATE TABLE IF NOT EXISTS payment_intents (
    payment_intent_id text PRIMARY KEY,
    purchase_id uuid NOT NULL UNIQUE
);
