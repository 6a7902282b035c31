-- 0001: every table the system needs. Money is integer kobo, times are timestamptz.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    phone           text NOT NULL UNIQUE,
    password_hash   text NOT NULL,
    role            text NOT NULL CHECK (role IN ('CUSTOMER', 'VENDOR', 'RIDER', 'ADMIN')),
    first_name      text NOT NULL,
    last_name       text NOT NULL,
    email           text,
    phone_verified  boolean NOT NULL DEFAULT false,
    totp_secret     text,
    totp_enabled    boolean NOT NULL DEFAULT false,
    disabled        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per issued refresh token; a family is one login session (the JWT `sid`).
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id   uuid NOT NULL,
    token_hash  text NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

CREATE TABLE verification_codes (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash    text NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    expires_at   timestamptz NOT NULL,
    consumed_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX verification_codes_user_idx ON verification_codes (user_id, created_at DESC);

CREATE TABLE vendors (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    display_name     text NOT NULL,
    lat              double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lng              double precision NOT NULL CHECK (lng BETWEEN -180 AND 180),
    km_service_area  double precision NOT NULL CHECK (km_service_area > 0),
    categories       text[] NOT NULL DEFAULT '{}',
    verified         boolean NOT NULL DEFAULT false,
    verified_at      timestamptz,
    verified_by      uuid REFERENCES users(id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vendors_pending_idx ON vendors (created_at) WHERE NOT verified;
CREATE INDEX vendors_name_trgm_idx ON vendors USING gin (display_name gin_trgm_ops);

CREATE TABLE menus (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    vendor_id   uuid NOT NULL REFERENCES vendors(id) ON DELETE CASCADE,
    title       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX menus_vendor_idx ON menus (vendor_id);

CREATE TABLE menu_items (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    menu_id       uuid NOT NULL REFERENCES menus(id) ON DELETE CASCADE,
    vendor_id     uuid NOT NULL REFERENCES vendors(id) ON DELETE CASCADE,
    name          text NOT NULL,
    price_kobo    bigint NOT NULL CHECK (price_kobo > 0),
    description   text,
    cuisine_tag   text,
    prep_minutes  integer CHECK (prep_minutes > 0),
    is_available  boolean NOT NULL DEFAULT true,
    search_tsv    tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', coalesce(name, '')), 'A') ||
        setweight(to_tsvector('simple', coalesce(cuisine_tag, '')), 'B') ||
        setweight(to_tsvector('simple', coalesce(description, '')), 'C')
    ) STORED,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX menu_items_menu_idx ON menu_items (menu_id);
CREATE INDEX menu_items_vendor_idx ON menu_items (vendor_id);
CREATE INDEX menu_items_tsv_idx ON menu_items USING gin (search_tsv);
CREATE INDEX menu_items_name_trgm_idx ON menu_items USING gin (name gin_trgm_ops);

CREATE TABLE riders (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    vehicle_type  text NOT NULL,
    online        boolean NOT NULL DEFAULT false,
    last_lat      double precision,
    last_lng      double precision,
    last_seen_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Current state of each meal request (the actor's snapshot); history is negotiation_events.
CREATE TABLE meal_requests (
    id                 uuid PRIMARY KEY,
    customer_id        uuid NOT NULL REFERENCES users(id),
    category           text NOT NULL,
    budget_min_kobo    bigint NOT NULL CHECK (budget_min_kobo > 0),
    budget_max_kobo    bigint NOT NULL CHECK (budget_max_kobo >= budget_min_kobo),
    delivery_lat       double precision NOT NULL,
    delivery_lng       double precision NOT NULL,
    address_line       text NOT NULL,
    notes              text,
    desired_at         timestamptz,
    status             text NOT NULL CHECK (status IN ('OPEN', 'ACCEPTED', 'CANCELLED', 'EXPIRED')),
    expires_at         timestamptz NOT NULL,
    max_vendor_offers  integer NOT NULL,
    offer_count        integer NOT NULL DEFAULT 0,
    seq                integer NOT NULL DEFAULT 0,
    accepted_offer_id  uuid,
    order_id           uuid,
    shard              integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX meal_requests_open_expiry_idx ON meal_requests (expires_at) WHERE status = 'OPEN';
CREATE INDEX meal_requests_customer_idx ON meal_requests (customer_id, created_at DESC);
CREATE INDEX meal_requests_status_idx ON meal_requests (status, created_at DESC);

CREATE TABLE offers (
    id                  uuid PRIMARY KEY,
    request_id          uuid NOT NULL REFERENCES meal_requests(id) ON DELETE CASCADE,
    vendor_id           uuid NOT NULL REFERENCES vendors(id),
    vendor_name         text NOT NULL,
    price_kobo          bigint NOT NULL CHECK (price_kobo > 0),
    details             text,
    prep_minutes        integer,
    slot_from           timestamptz,
    slot_to             timestamptz,
    status              text NOT NULL CHECK (status IN ('PENDING', 'COUNTERED', 'ACCEPTED', 'REJECTED', 'WITHDRAWN', 'EXPIRED')),
    counter_price_kobo  bigint,
    round               integer NOT NULL DEFAULT 0,
    is_competitive      boolean NOT NULL DEFAULT false,
    over_budget         boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX offers_request_idx ON offers (request_id);
CREATE INDEX offers_vendor_idx ON offers (vendor_id, created_at DESC);
CREATE UNIQUE INDEX offers_one_live_per_vendor ON offers (request_id, vendor_id)
    WHERE status IN ('PENDING', 'COUNTERED');

CREATE TABLE negotiation_events (
    request_id     uuid NOT NULL REFERENCES meal_requests(id) ON DELETE CASCADE,
    seq            integer NOT NULL,
    kind           text NOT NULL,
    payload        jsonb NOT NULL,
    targets        jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, seq)
);

-- Replies to state-changing commands by clientMsgId, so a retry gets the first answer.
CREATE TABLE command_replies (
    actor_key      text NOT NULL,
    user_id        uuid NOT NULL,
    client_msg_id  text NOT NULL,
    reply          jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor_key, user_id, client_msg_id)
);
CREATE INDEX command_replies_created_idx ON command_replies USING brin (created_at);

CREATE TABLE orders (
    id              uuid PRIMARY KEY,
    request_id      uuid NOT NULL UNIQUE REFERENCES meal_requests(id),
    offer_id        uuid NOT NULL UNIQUE REFERENCES offers(id),
    customer_id     uuid NOT NULL REFERENCES users(id),
    vendor_id       uuid NOT NULL REFERENCES vendors(id),
    rider_id        uuid REFERENCES riders(id),
    amount_kobo     bigint NOT NULL CHECK (amount_kobo > 0),
    currency        text NOT NULL DEFAULT 'NGN',
    status          text NOT NULL CHECK (status IN ('PENDING_PAYMENT', 'CONFIRMED', 'PREPARING', 'READY',
                                                    'PICKED_UP', 'OUT_FOR_DELIVERY', 'DELIVERED', 'CANCELED')),
    payment_status  text NOT NULL DEFAULT 'PENDING',
    eta_minutes     integer,
    delivery_lat    double precision NOT NULL,
    delivery_lng    double precision NOT NULL,
    delivery_code   text,
    seq             integer NOT NULL DEFAULT 0,
    sla_due_at      timestamptz,
    shard           integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX orders_customer_idx ON orders (customer_id, created_at DESC);
CREATE INDEX orders_vendor_idx ON orders (vendor_id, created_at DESC);
CREATE INDEX orders_rider_idx ON orders (rider_id) WHERE rider_id IS NOT NULL;
CREATE INDEX orders_sla_idx ON orders (sla_due_at) WHERE status NOT IN ('DELIVERED', 'CANCELED');

CREATE TABLE order_events (
    order_id    uuid NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    seq         integer NOT NULL,
    kind        text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, seq)
);

-- Append-heavy location history: BRIN on time keeps the index tiny.
CREATE TABLE rider_locations (
    rider_id     uuid NOT NULL REFERENCES riders(id) ON DELETE CASCADE,
    order_id     uuid REFERENCES orders(id) ON DELETE SET NULL,
    lat          double precision NOT NULL,
    lng          double precision NOT NULL,
    heading      real,
    speed_kmh    real,
    accuracy_m   real,
    recorded_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rider_locations_time_brin ON rider_locations USING brin (recorded_at);
CREATE INDEX rider_locations_rider_idx ON rider_locations (rider_id, recorded_at DESC);

CREATE TABLE payments (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id           uuid NOT NULL REFERENCES orders(id),
    provider           text NOT NULL CHECK (provider IN ('PAYSTACK', 'FLUTTERWAVE')),
    reference          text NOT NULL UNIQUE,
    amount_kobo        bigint NOT NULL CHECK (amount_kobo > 0),
    currency           text NOT NULL DEFAULT 'NGN',
    status             text NOT NULL DEFAULT 'PENDING',
    authorization_url  text,
    provider_tx_id     text,
    paid_at            timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_order_idx ON payments (order_id);

CREATE TABLE webhook_events (
    id           bigserial PRIMARY KEY,
    provider     text NOT NULL,
    event_id     text NOT NULL,
    event_type   text NOT NULL,
    reference    text,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    outcome      text,
    UNIQUE (provider, event_id)
);
CREATE INDEX webhook_events_reference_idx ON webhook_events (reference);

CREATE TABLE reviews (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id     uuid NOT NULL UNIQUE REFERENCES orders(id),
    customer_id  uuid NOT NULL REFERENCES users(id),
    vendor_id    uuid NOT NULL REFERENCES vendors(id),
    rider_id     uuid REFERENCES riders(id),
    rating       smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment      text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reviews_vendor_idx ON reviews (vendor_id, created_at DESC);

-- Outboxes: written in the state change's transaction, drained with FOR UPDATE SKIP LOCKED.
CREATE TABLE notifications_outbox (
    id               bigserial PRIMARY KEY,
    user_id          uuid REFERENCES users(id) ON DELETE CASCADE,
    channel          text NOT NULL CHECK (channel IN ('sms', 'push')),
    kind             text NOT NULL,
    recipient        text NOT NULL,
    body             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX notifications_outbox_due_idx ON notifications_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_outbox_user_idx ON notifications_outbox (user_id, created_at DESC);

CREATE TABLE search_outbox (
    id               bigserial PRIMARY KEY,
    entity           text NOT NULL CHECK (entity IN ('vendor', 'menu_item')),
    entity_id        uuid NOT NULL,
    op               text NOT NULL CHECK (op IN ('upsert', 'delete')),
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX search_outbox_due_idx ON search_outbox (next_attempt_at) WHERE status = 'pending';

CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    actor_id     uuid,
    actor_kind   text NOT NULL,
    action       text NOT NULL,
    target_kind  text,
    target_id    text,
    details      jsonb NOT NULL DEFAULT '{}',
    request_id   text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_created_idx ON audit_log USING brin (created_at);
CREATE INDEX audit_log_target_idx ON audit_log (target_kind, target_id);

-- Fencing: the epoch of a shard only grows; a write-behind batch for a stale epoch aborts.
CREATE TABLE shard_owners (
    shard        integer PRIMARY KEY,
    node_id      text NOT NULL,
    epoch        bigint NOT NULL,
    acquired_at  timestamptz NOT NULL DEFAULT now()
);
