-- Shard fencing (DESIGN "Sharding across nodes"): every write-behind transaction carrying a
-- shard's rows first calls pocho_fence(shard, epoch) with the epoch its node took. FOR SHARE
-- orders the check against a newer owner's take (persistence/shards.py); a stale epoch
-- aborts the transaction with SQLSTATE PF001 and the shard in the message detail.
CREATE FUNCTION pocho_fence(p_shard integer, p_epoch bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM shard_owners WHERE shard = p_shard AND epoch = p_epoch FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stale shard epoch' USING ERRCODE = 'PF001', DETAIL = p_shard::text;
    END IF;
END
$$;
