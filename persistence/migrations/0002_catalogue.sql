-- 0003: indexes for catalogue search (adapters/search_pg.py) and the search outbox.

-- The text a vendor is found by: its name and its categories. array_to_string is only
-- STABLE in general, but for text[] it is immutable, so wrapping it lets us index it.
CREATE OR REPLACE FUNCTION pocho_vendor_search_text(name text, categories text[])
    RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT coalesce(name, '') || ' ' || coalesce(array_to_string(categories, ' '), '') $$;

-- Trigram (typo-tolerant `<%` / `%`) search over verified vendors only.
CREATE INDEX vendors_search_trgm_idx ON vendors
    USING gin (pocho_vendor_search_text(display_name, categories) gin_trgm_ops) WHERE verified;

-- Items are searched by name (menu_items_name_trgm_idx, 0001) and full text
-- (menu_items_tsv_idx, 0001); cuisine tags are short, a trigram index makes `<%` cheap.
CREATE INDEX menu_items_cuisine_trgm_idx ON menu_items USING gin (cuisine_tag gin_trgm_ops)
    WHERE is_available;

-- Ops: find dead-lettered outbox rows without scanning the done ones.
CREATE INDEX search_outbox_dead_idx ON search_outbox (created_at) WHERE status = 'dead';
