-- One fencing call per group commit (issue 12): pocho_fence's check for every shard of the
-- group in one statement, in the order given, instead of one call (one Bind/Execute round of
-- the extended protocol and one function call) per shard. Same lock (FOR SHARE), same error
-- (SQLSTATE PF001, the first stale shard in the detail).
CREATE FUNCTION pocho_fence_all(p_shards integer[], p_epochs bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(array_length(p_shards, 1), 0) <> coalesce(array_length(p_epochs, 1), 0) THEN
        RAISE EXCEPTION 'pocho_fence_all: % shards, % epochs', array_length(p_shards, 1), array_length(p_epochs, 1);
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_shards, 1), 0) LOOP
        PERFORM 1 FROM shard_owners WHERE shard = p_shards[i] AND epoch = p_epochs[i] FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'stale shard epoch' USING ERRCODE = 'PF001', DETAIL = p_shards[i]::text;
        END IF;
    END LOOP;
END
$$;
