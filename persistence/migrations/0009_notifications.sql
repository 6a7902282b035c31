-- Notifications (issue 10, docs/NOTIFICATIONS.md).
-- Outbox rows written for an event type carry its template variables (`data`) and are rendered
-- by the dispatcher in the recipient's locale; rows with `data` NULL carry their text in
-- `body` (verification texts, SLA and ops notices). `skipped`: delivered by no channel on
-- purpose (`outcome` says why: online, coalesced, no_device, expired, ...).
ALTER TABLE notifications_outbox
    ADD COLUMN data       jsonb,
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN outcome    text;
ALTER TABLE notifications_outbox DROP CONSTRAINT notifications_outbox_status_check;
ALTER TABLE notifications_outbox
    ADD CONSTRAINT notifications_outbox_status_check CHECK (status IN ('pending', 'sent', 'skipped', 'dead'));
-- GET /admin/notifications?status=dead|skipped|...: newest first per status.
CREATE INDEX notifications_outbox_status_idx ON notifications_outbox (status, id DESC) WHERE status <> 'sent';

-- Push device tokens (PUT /api/v1/me/devices). A token belongs to one user at a time (a phone
-- handed to someone else re-registers it); `session_id` is the refresh family that registered
-- it, so logging that session out removes it.
CREATE TABLE device_tokens (
    token       text PRIMARY KEY CHECK (length(token) BETWEEN 20 AND 4096),
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    platform    text NOT NULL CHECK (platform IN ('ANDROID', 'IOS', 'WEB')),
    session_id  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_tokens_user_idx ON device_tokens (user_id, updated_at DESC);
CREATE INDEX device_tokens_session_idx ON device_tokens (session_id);

-- Quiet hours per user (GET/PUT /api/v1/me/notifications): minutes after local midnight in
-- the IANA time zone `tz`; start > end spans midnight.
CREATE TABLE notification_settings (
    user_id      uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    quiet_start  smallint CHECK (quiet_start BETWEEN 0 AND 1439),
    quiet_end    smallint CHECK (quiet_end BETWEEN 0 AND 1439),
    tz           text NOT NULL DEFAULT 'Africa/Lagos',
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);

-- Rows queued before a dispatcher existed (SLA and ops notices nothing ever drained): not
-- sent now, days late.
UPDATE notifications_outbox SET status = 'skipped', outcome = 'before_dispatcher' WHERE status = 'pending';
