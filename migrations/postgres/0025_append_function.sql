-- Issue 19: one round trip per commit. The writer plans a batch on its
-- cached state (the head, its streams' revisions, its idempotency keys
-- assumed unknown) and sends the plan in one autocommit statement,
-- `SELECT * FROM ledger_append(...)`. Under the head row's lock this
-- function checks every assumption the plan was made on, exactly:
--   * the head is the one planned on (sequence, chain hash, recordedAt);
--   * each stream of the batch (those of refused commands too) is at the
--     revision assumed (0: no event yet);
--   * none of the keys assumed unknown is in `commands`.
-- If all hold it writes the records, the command rows and the new head and
-- returns one row of kind 'appended'. If any fails it writes nothing and
-- returns the actual state: one 'head' row, one 'stream' row per stream
-- given and one 'command' row per key given that is known, so the writer
-- re-plans on exact values without another lookup. The function never
-- assigns a sequence, a revision or a hash: only the writer's plan does.
--
-- Plans: every call is planned with its own arguments and the tables'
-- current statistics (`plan_cache_mode = force_custom_plan`). PL/pgSQL
-- otherwise switches to a generic plan after five calls and keeps it for
-- the session: the writer's connection lives long, and plans made while
-- `events` and `commands` were small (a new log) scanned them whole for
-- the key and revision checks as they grew. Measured on the benchmark
-- (issue 19), 64 appenders: 3,600 events/s with the cached generic plans,
-- 14,700 with custom plans; 100-event commands 25,500 and 38,200.
--
-- Rows: r_kind, r_name (key or stream), r_hash (digest or chain hash),
-- r_stream_id, r_first (first sequence, or the head's sequence), r_last,
-- r_revision (stream revision), r_recorded_at_us (the head's recordedAt).
CREATE FUNCTION ledger_append(
    p_head_sequence BIGINT, p_head_chain BYTEA, p_head_recorded_at BIGINT,
    p_streams TEXT[], p_revisions BIGINT[], p_keys TEXT[],
    p_sequence BIGINT[], p_event_id UUID[], p_stream_id TEXT[], p_stream_revision BIGINT[], p_event_type TEXT[],
    p_schema_version BIGINT[], p_occurred_at BIGINT[], p_recorded_at BIGINT[], p_idempotency_key TEXT[],
    p_metadata BYTEA[], p_metadata_hash BYTEA[], p_payload BYTEA[], p_payload_hash BYTEA[], p_leaf_hash BYTEA[],
    p_chain_hash BYTEA[], p_format INTEGER[], p_salt BYTEA[],
    p_command_key TEXT[], p_command_digest BYTEA[], p_command_stream TEXT[], p_command_first BIGINT[],
    p_command_last BIGINT[], p_command_revision BIGINT[],
    p_new_sequence BIGINT, p_new_chain BYTEA, p_new_recorded_at BIGINT
) RETURNS TABLE (
    r_kind TEXT, r_name TEXT, r_hash BYTEA, r_stream_id TEXT, r_first BIGINT, r_last BIGINT, r_revision BIGINT,
    r_recorded_at_us BIGINT
) LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    head log_head%ROWTYPE;
BEGIN
    -- The same lock as the locking transaction's: appends of every process
    -- are serialized here. Each later statement of this (volatile)
    -- function takes a new snapshot, so it sees every append committed
    -- before the lock was granted.
    SELECT * INTO head FROM log_head WHERE id = 1 FOR UPDATE;
    IF head.sequence = p_head_sequence AND head.chain_hash = p_head_chain
       AND head.recorded_at_us = p_head_recorded_at
       AND NOT EXISTS (SELECT 1 FROM commands c WHERE c.idempotency_key = ANY(p_keys))
       AND NOT EXISTS (
           SELECT 1 FROM unnest(p_streams, p_revisions) AS s(id, assumed)
           WHERE coalesce((SELECT max(e.stream_revision) FROM events e WHERE e.stream_id = s.id), 0) <> s.assumed)
    THEN
        IF cardinality(p_sequence) > 0 THEN
            INSERT INTO events (sequence, event_id, stream_id, stream_revision, event_type, schema_version,
                occurred_at_us, recorded_at_us, idempotency_key, metadata, metadata_hash, payload, payload_hash,
                leaf_hash, chain_hash, format, salt)
            SELECT * FROM unnest(p_sequence, p_event_id, p_stream_id, p_stream_revision, p_event_type,
                p_schema_version, p_occurred_at, p_recorded_at, p_idempotency_key, p_metadata, p_metadata_hash,
                p_payload, p_payload_hash, p_leaf_hash, p_chain_hash, p_format, p_salt);
            INSERT INTO commands (idempotency_key, digest, stream_id, first_sequence, last_sequence, stream_revision)
            SELECT * FROM unnest(p_command_key, p_command_digest, p_command_stream, p_command_first,
                p_command_last, p_command_revision);
            UPDATE log_head SET sequence = p_new_sequence, chain_hash = p_new_chain,
                recorded_at_us = p_new_recorded_at WHERE id = 1;
        END IF;
        RETURN QUERY SELECT 'appended'::text, NULL::text, NULL::bytea, NULL::text, NULL::bigint, NULL::bigint,
            NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'head'::text, NULL::text, head.chain_hash, NULL::text, head.sequence, NULL::bigint,
        NULL::bigint, head.recorded_at_us;
    RETURN QUERY SELECT 'stream'::text, s.id, NULL::bytea, NULL::text, NULL::bigint, NULL::bigint,
        (SELECT max(e.stream_revision) FROM events e WHERE e.stream_id = s.id), NULL::bigint
        FROM unnest(p_streams) AS s(id);
    RETURN QUERY SELECT 'command'::text, c.idempotency_key, c.digest, c.stream_id, c.first_sequence,
        c.last_sequence, c.stream_revision, NULL::bigint
        FROM commands c WHERE c.idempotency_key = ANY(p_keys);
END $$;
