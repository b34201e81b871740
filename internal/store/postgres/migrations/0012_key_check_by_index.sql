-- The audit key check by index lookups, whatever the table's size when a
-- connection first planned it.
--
-- AppendAudit and sigil_record_token (0009) refused a taken key with
-- SELECT key FROM audit_keys WHERE key = ANY (keys) LIMIT 1. A session
-- plans that statement once (plpgsql's plan cache, pgx's prepared
-- statements): generic after five runs, costed on the table as it was
-- then. On a new log the table is a page, a sequential scan is cheapest,
-- and with LIMIT 1 and a guessed many matches it stays cheapest however
-- large the table grows: the plan is kept, and every entry appended scans
-- every key stored (an exchange on PostgreSQL cost 1.5-1.7 ms of the
-- server's CPU, most of it this scan, growing with the log). An equality
-- on the primary key is planned as an index lookup at any size, so the
-- check is now one lookup per key (an entry has one to three).

-- sigil_audit_key_taken returns the first of keys already stored, or NULL.
CREATE FUNCTION sigil_audit_key_taken(p_keys TEXT[]) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    v_key TEXT;
BEGIN
    FOREACH v_key IN ARRAY coalesce(p_keys, '{}') LOOP
        IF EXISTS (SELECT 1 FROM audit_keys WHERE key = v_key) THEN
            RETURN v_key;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

-- sigil_record_token as in 0009, but for the key check.
CREATE OR REPLACE FUNCTION sigil_record_token(
    p_jti TEXT, p_parent TEXT, p_sub TEXT, p_client_id TEXT, p_act TEXT, p_aud TEXT, p_scope TEXT,
    p_issued BIGINT, p_expires BIGINT, p_cnf TEXT, p_kind TEXT, p_handle BYTEA, p_kid TEXT,
    p_data BYTEA, p_leaf BYTEA, p_created BIGINT, p_keys TEXT[], p_tile_height INTEGER,
    p_nowait BOOLEAN
) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    v_serial  TEXT;
    v_revoked BOOLEAN;
    v_expires BIGINT;
    v_size    BIGINT;
    v_shard   BIGINT;
    v_taken   TEXT;
    v_level   INTEGER;
    v_node    BIGINT;
    v_children BYTEA[];
BEGIN
    IF p_cnf <> '' AND p_nowait THEN
        SELECT serial, revoked_at IS NOT NULL INTO v_serial, v_revoked
            FROM certificates WHERE thumbprint = p_cnf AND thumbprint <> '' FOR SHARE NOWAIT;
    ELSIF p_cnf <> '' THEN
        SELECT serial, revoked_at IS NOT NULL INTO v_serial, v_revoked
            FROM certificates WHERE thumbprint = p_cnf AND thumbprint <> '' FOR SHARE;
    END IF;
    IF v_revoked THEN
        RETURN 'certificate-revoked ' || v_serial;
    END IF;
    IF p_parent IS NOT NULL AND p_nowait THEN
        PERFORM 1 FROM tokens WHERE jti = p_parent AND revoked_at IS NULL AND expires_at >= p_expires FOR SHARE NOWAIT;
    ELSIF p_parent IS NOT NULL THEN
        PERFORM 1 FROM tokens WHERE jti = p_parent AND revoked_at IS NULL AND expires_at >= p_expires FOR SHARE;
    END IF;
    IF p_parent IS NOT NULL THEN
        IF NOT FOUND THEN
            SELECT revoked_at IS NOT NULL, expires_at INTO v_revoked, v_expires FROM tokens WHERE jti = p_parent;
            IF NOT FOUND THEN
                RETURN 'parent-missing';
            ELSIF v_revoked THEN
                RETURN 'parent-revoked';
            END IF;
            RETURN 'parent-expires ' || v_expires;
        END IF;
    END IF;
    SELECT size, shard_start INTO STRICT v_size, v_shard FROM audit_head WHERE id = 1 FOR UPDATE;
    v_taken := sigil_audit_key_taken(p_keys);
    IF v_taken IS NOT NULL THEN
        RETURN 'key-taken ' || v_taken;
    END IF;
    INSERT INTO tokens (jti, parent_jti, sub, client_id, act, aud, scope, issued_at, expires_at,
        cnf, kind, handle_hash, kid, revoked_at, revocation_reason)
        VALUES (p_jti, p_parent, p_sub, p_client_id, p_act, p_aud, p_scope, p_issued, p_expires,
        p_cnf, p_kind, p_handle, p_kid, NULL, '')
        ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'token-taken';
    END IF;
    UPDATE audit_head SET size = size + 1 WHERE id = 1;
    INSERT INTO audit_entries (idx, data, leaf_hash, created_at) VALUES (v_size, p_data, p_leaf, p_created);
    INSERT INTO audit_keys (key, idx) SELECT k, v_size FROM unnest(p_keys) AS k;
    v_level := p_tile_height;
    WHILE v_level < 64 AND (v_size + 1 - v_shard) & ((1::BIGINT << v_level) - 1) = 0 LOOP
        v_node := ((v_size + 1 - v_shard) >> v_level) - 1;
        IF v_level = p_tile_height THEN
            SELECT array_agg(leaf_hash ORDER BY idx) INTO v_children FROM audit_entries
                WHERE idx >= v_shard + (v_node << p_tile_height) AND idx < v_shard + ((v_node + 1) << p_tile_height);
        ELSIF v_shard = 0 THEN
            SELECT array_agg(hash ORDER BY idx) INTO v_children FROM audit_nodes
                WHERE level = v_level - p_tile_height
                AND idx >= v_node << p_tile_height AND idx < (v_node + 1) << p_tile_height;
        ELSE
            SELECT array_agg(hash ORDER BY idx) INTO v_children FROM audit_shard_nodes
                WHERE shard = v_shard AND level = v_level - p_tile_height
                AND idx >= v_node << p_tile_height AND idx < (v_node + 1) << p_tile_height;
        END IF;
        IF v_shard = 0 THEN
            INSERT INTO audit_nodes (level, idx, hash)
                VALUES (v_level, v_node, sigil_subtree_hash(v_children, 1 << p_tile_height));
        ELSE
            INSERT INTO audit_shard_nodes (shard, level, idx, hash)
                VALUES (v_shard, v_level, v_node, sigil_subtree_hash(v_children, 1 << p_tile_height));
        END IF;
        v_level := v_level + p_tile_height;
    END LOOP;
    RETURN 'ok ' || v_size;
END $$;
