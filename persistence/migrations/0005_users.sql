-- 0005: users for real life (issue 15): profile fields, account state kept by ops and by
-- erasure, the client each refresh token was issued to (GET /api/v1/me/sessions), and
-- single-use codes for password reset and phone change.

ALTER TABLE users
    ADD COLUMN locale           text,
    ADD COLUMN avatar_url       text,
    ADD COLUMN disabled_at      timestamptz,
    ADD COLUMN disabled_reason  text,
    ADD COLUMN erased_at        timestamptz;

-- GET /admin/users: newest first, keyset paged, optionally by role.
CREATE INDEX users_created_idx ON users (created_at DESC, id DESC);
CREATE INDEX users_role_created_idx ON users (role, created_at DESC, id DESC);

-- Who holds each token: a truncated User-Agent and the network prefix (never the full IP).
ALTER TABLE refresh_tokens
    ADD COLUMN user_agent  text,
    ADD COLUMN ip_prefix   text;

-- Password reset and phone change codes: HMAC of the code only, 10 minutes, 5 guesses.
CREATE TABLE account_codes (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose      text NOT NULL CHECK (purpose IN ('password_reset', 'phone_change')),
    target       text,  -- phone_change: the new number the code was sent to
    code_hash    text NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    expires_at   timestamptz NOT NULL,
    consumed_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_codes_user_idx ON account_codes (user_id, purpose, created_at DESC);

-- Personal columns (phone, first_name, last_name, email) hold AES-GCM values sealed by
-- persistence/pii.py; lookups go through blind indexes (HMAC-SHA256 under a separate key).
-- Rows written before this migration keep plaintext and NULL indexes: they are read as
-- they are and found by their plaintext phone until `pocho-rt pii-rotate` seals them.
ALTER TABLE users
    ADD COLUMN phone_index  text,
    ADD COLUMN email_index  text,
    ADD COLUMN name_index   text;
CREATE UNIQUE INDEX users_phone_index_key ON users (phone_index);
CREATE INDEX users_email_index_idx ON users (email_index) WHERE email_index IS NOT NULL;
CREATE INDEX users_name_index_idx ON users (name_index) WHERE name_index IS NOT NULL;
