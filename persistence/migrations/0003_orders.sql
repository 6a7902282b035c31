-- 0003: the order actor's state (deadlines, dispatch, delivery code attempts), replay
-- audiences, ops records of SLA breaches, and vendor ratings.

ALTER TABLE orders
    ADD COLUMN code_attempts      integer NOT NULL DEFAULT 0,
    ADD COLUMN confirmed_at       timestamptz,
    ADD COLUMN picked_up_at       timestamptz,
    ADD COLUMN sla_fired          text[] NOT NULL DEFAULT '{}',
    -- dispatch: the rider offered the order now (no FK: transient), riders to skip, next search
    ADD COLUMN offered_rider_id   uuid,
    ADD COLUMN offer_expires_at   timestamptz,
    ADD COLUMN skipped_riders     uuid[] NOT NULL DEFAULT '{}',
    ADD COLUMN dispatch_retry_at  timestamptz,
    ADD COLUMN offers_made        integer NOT NULL DEFAULT 0;

-- The sweeper's second question: unpaid orders no actor has held yet (sla_due_at still NULL).
CREATE INDEX orders_unpaid_idx ON orders (created_at) WHERE status = 'PENDING_PAYMENT' AND sla_due_at IS NULL;
-- A rider's order history, newest first (GET /api/v1/orders as a rider).
CREATE INDEX orders_rider_history_idx ON orders (rider_id, created_at DESC) WHERE rider_id IS NOT NULL;

-- Who received each event (customer, vendor, rider), so a replay gives each exactly its own.
ALTER TABLE order_events ADD COLUMN audiences text[] NOT NULL DEFAULT '{customer,vendor}';

-- Ops records: SLA breaches and locked delivery codes (GET /admin/orders/sla).
CREATE TABLE order_ops_events (
    id          bigserial PRIMARY KEY,
    order_id    uuid NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    kind        text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_ops_events_created_idx ON order_ops_events (created_at DESC);
CREATE INDEX order_ops_events_order_idx ON order_ops_events (order_id);

-- Ratings: sum and count change with each review (same transaction); the average follows.
ALTER TABLE vendors
    ADD COLUMN rating_sum    bigint NOT NULL DEFAULT 0,
    ADD COLUMN rating_count  integer NOT NULL DEFAULT 0,
    ADD COLUMN rating_avg    double precision GENERATED ALWAYS AS (
        CASE WHEN rating_count > 0 THEN round(rating_sum::numeric / rating_count, 2)::double precision END
    ) STORED;
