-- 0007: analytics rollups (issue 11) and vendors' auto-bid rules.
--
-- Rollups are per UTC hour of the request's or order's creation and per scope: a vendor's
-- id, or the nil uuid for the whole marketplace. They are recomputed (never incremented) for
-- the hours touched by events since the last refresh (persistence/analytics.py), so a retried
-- or repeated refresh cannot count anything twice. Distributions are sparse histograms of
-- log-spaced bins (about 5% wide); medians and p90 are read from them. Reads go by scope (the
-- primary keys); the refresh deletes by hour, through BRIN indexes (rows arrive in hour order,
-- and a B-tree on hour alone tempts the planner into scanning every scope of a short window).

-- Bins of durations in seconds: floor(ln(1 + s) * 20). A bin's value is its geometric middle.
CREATE FUNCTION pocho_analytics_bin(seconds double precision) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT floor(ln(1 + greatest(seconds, 0)) * 20)::integer $$;
CREATE FUNCTION pocho_analytics_bin_value(bin integer) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT exp((bin + 0.5) / 20.0) - 1 $$;

CREATE TABLE analytics_hourly (
    scope                    uuid NOT NULL,
    hour                     timestamptz NOT NULL,
    -- requests by the hour they were created (a vendor: the requests it bid on)
    requests_created         integer NOT NULL DEFAULT 0,
    requests_accepted        integer NOT NULL DEFAULT 0,  -- a vendor: requests it won
    requests_expired         integer NOT NULL DEFAULT 0,
    requests_cancelled       integer NOT NULL DEFAULT 0,
    offers_placed            integer NOT NULL DEFAULT 0,
    offers_accepted          integer NOT NULL DEFAULT 0,
    -- orders by the hour they were created, in their current status
    orders_created           integer NOT NULL DEFAULT 0,
    gross_kobo               bigint NOT NULL DEFAULT 0,  -- paid and not canceled
    orders_pending_payment   integer NOT NULL DEFAULT 0,
    orders_confirmed         integer NOT NULL DEFAULT 0,
    orders_preparing         integer NOT NULL DEFAULT 0,
    orders_ready             integer NOT NULL DEFAULT 0,
    orders_picked_up         integer NOT NULL DEFAULT 0,
    orders_out_for_delivery  integer NOT NULL DEFAULT 0,
    orders_delivered         integer NOT NULL DEFAULT 0,
    orders_canceled          integer NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, hour)
);
CREATE INDEX analytics_hourly_hour_brin ON analytics_hourly USING brin (hour);

CREATE TABLE analytics_category_hourly (
    scope       uuid NOT NULL,
    hour        timestamptz NOT NULL,
    category    text NOT NULL,
    orders      integer NOT NULL,
    gross_kobo  bigint NOT NULL,
    PRIMARY KEY (scope, hour, category)
);
CREATE INDEX analytics_category_hourly_hour_brin ON analytics_category_hourly USING brin (hour);

-- metric 1: seconds to first offer, 2: negotiation rounds (the bin is the count itself),
-- 3: delivery seconds (payment to DELIVERED).
CREATE TABLE analytics_hist_hourly (
    scope   uuid NOT NULL,
    hour    timestamptz NOT NULL,
    metric  smallint NOT NULL,
    bin     integer NOT NULL,
    n       integer NOT NULL,
    PRIMARY KEY (scope, hour, metric, bin)
);
CREATE INDEX analytics_hist_hourly_hour_brin ON analytics_hist_hourly USING brin (hour);

-- The same per UTC day, so a long window reads one row per bin and day.
CREATE TABLE analytics_hist_daily (
    scope   uuid NOT NULL,
    day     date NOT NULL,
    metric  smallint NOT NULL,
    bin     integer NOT NULL,
    n       integer NOT NULL,
    PRIMARY KEY (scope, day, metric, bin)
);

-- Events up to this time (less a safety margin) are in the rollups.
CREATE TABLE analytics_refresh (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    refreshed_at  timestamptz NOT NULL
);

-- What the refresh reads: recent events (append-only, so BRIN stays tiny and exact) and the
-- requests and orders created in an hour (created_at never changes: HOT updates unaffected).
CREATE INDEX negotiation_events_created_brin ON negotiation_events USING brin (created_at);
CREATE INDEX order_events_created_brin ON order_events USING brin (created_at);
CREATE INDEX meal_requests_created_idx ON meal_requests (created_at);
CREATE INDEX orders_created_idx ON orders (created_at);

-- Auto-bid: a vendor's standing rules, one per category.
CREATE TABLE vendor_autobid_rules (
    vendor_id       uuid NOT NULL REFERENCES vendors(id) ON DELETE CASCADE,
    category        text NOT NULL,
    min_price_kobo  bigint NOT NULL CHECK (min_price_kobo > 0),
    radius_km       double precision NOT NULL CHECK (radius_km > 0),
    prep_minutes    integer,
    details         text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vendor_id, category)
);
CREATE INDEX vendor_autobid_rules_category_idx ON vendor_autobid_rules (category);
