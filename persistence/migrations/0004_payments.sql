-- 0004: payments (issue 8). Payment states, the webhook inbox keyed by provider + transaction
-- id + event type, refunds, vendor settlement accounts (provider subaccounts) and the split
-- stored on each payment. States and flows: docs/PAYMENTS.md.

ALTER TABLE payments ALTER COLUMN status SET DEFAULT 'INITIATED';
UPDATE payments SET status = 'INITIATED' WHERE status = 'PENDING';
ALTER TABLE payments
    ADD CONSTRAINT payments_status_check CHECK (status IN (
        'INITIATED', 'SUCCESS', 'FAILED', 'REVIEW', 'PAID_AFTER_CANCEL',
        'REFUND_PENDING', 'PARTIALLY_REFUNDED', 'REFUNDED')),
    ADD COLUMN customer_id          uuid REFERENCES users(id),
    -- the status the payment reached when its money arrived (SUCCESS, PAID_AFTER_CANCEL, REVIEW):
    -- refunds move `status` and fall back to it when a refund fails
    ADD COLUMN paid_status          text,
    ADD COLUMN paid_kobo            bigint,          -- the amount the provider's verify API confirmed
    ADD COLUMN refunded_kobo        bigint NOT NULL DEFAULT 0,
    ADD COLUMN refund_pending_kobo  bigint NOT NULL DEFAULT 0,
    ADD COLUMN review_reason        text,
    -- split: the vendor's provider subaccount and the platform's commission, as sent at initialise
    ADD COLUMN subaccount           text,
    ADD COLUMN commission_kobo      bigint,
    ADD COLUMN commission_bps       integer,
    ADD COLUMN verified_at          timestamptz,
    ADD CONSTRAINT payments_refund_bound CHECK (refunded_kobo + refund_pending_kobo <= coalesce(paid_kobo, 0));

-- One live (INITIATED) payment per order and provider: a repeated init reuses it.
CREATE UNIQUE INDEX payments_live_idx ON payments (order_id, provider) WHERE status = 'INITIATED';
-- The reconcile job's question: INITIATED payments by age.
CREATE INDEX payments_initiated_idx ON payments (created_at) WHERE status = 'INITIATED';

-- The inbox: unique per provider + transaction id + event type (the old (provider, event_id)
-- key is replaced; event_id keeps the provider's own event id where it has one).
ALTER TABLE webhook_events DROP CONSTRAINT webhook_events_provider_event_id_key;
ALTER TABLE webhook_events
    ADD COLUMN tx_id       text NOT NULL DEFAULT '',
    ADD COLUMN attempts    integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error  text;
CREATE UNIQUE INDEX webhook_events_dedupe_idx ON webhook_events (provider, tx_id, event_type);
CREATE INDEX webhook_events_inbox_idx ON webhook_events (received_at) WHERE processed_at IS NULL;

CREATE TABLE refunds (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    payment_id          uuid NOT NULL REFERENCES payments(id),
    amount_kobo         bigint NOT NULL CHECK (amount_kobo > 0),
    reason              text NOT NULL,
    status              text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'PROCESSED', 'FAILED')),
    provider_refund_id  text,
    requested_by        uuid REFERENCES users(id),
    automatic           boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_payment_idx ON refunds (payment_id, created_at);

-- A vendor's payout account, validated with the provider's resolve API, and the subaccount
-- each provider made of it (used for split payments at initialise).
CREATE TABLE vendor_settlements (
    vendor_id              uuid PRIMARY KEY REFERENCES vendors(id) ON DELETE CASCADE,
    bank_code              text NOT NULL,
    account_number         text NOT NULL,
    account_name           text NOT NULL,
    paystack_subaccount    text,
    flutterwave_subaccount text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
