-- sigil_subtree_hash is the RFC 6962 hash of the perfect tree whose
-- bottom row is hashes, n of them (a power of two): the audit package's
-- SubtreeHash. Fewer than n is an error: a node is stored complete or not
-- at all.
CREATE FUNCTION sigil_subtree_hash(hashes BYTEA[], n INTEGER) RETURNS BYTEA LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    up BYTEA[];
BEGIN
    IF coalesce(array_length(hashes, 1), 0) <> n THEN
        RAISE EXCEPTION 'audit node: % children stored, want %', coalesce(array_length(hashes, 1), 0), n;
    END IF;
    WHILE n > 1 LOOP
        up := '{}';
        FOR i IN 1 .. n / 2 LOOP
            up := up || sha256('\x01'::BYTEA || hashes[2 * i - 1] || hashes[2 * i]);
        END LOOP;
        hashes := up;
        n := n / 2;
    END LOOP;
    RETURN hashes[1];
END $$;

-- sigil_record_token stores an issued token and its audit entry (the
-- store's RecordToken) in one statement, so that the token service's write
-- is one round trip, and the records of concurrent exchanges can share one
-- transaction: it raises no error for a refusal, it returns it, having
-- written nothing, so that the others go on. It takes the same locks in
-- the same order, with the same re-checks, as InsertToken followed by
-- AppendAudit: the certificate the token is bound to FOR SHARE, then the
-- parent FOR SHARE (live, expiring no earlier than the token), then the
-- audit head FOR UPDATE, then the keys are checked under that lock.
--
-- It returns 'ok <index>', or what refused the token:
--   'certificate-revoked <serial>', 'parent-missing', 'parent-revoked',
--   'parent-expires <expires_at>', 'token-taken' (its jti or handle),
--   'key-taken <key>'.
-- With p_nowait, the certificate and the parent are locked NOWAIT: in a
-- transaction that records several tokens, the audit head is held from
-- the first record on, and a later record's waiting for a revocation that
-- waits for the head would deadlock; locked by one, they raise 55P03
-- instead, and the caller records each token alone.
-- The tree nodes the entry completes in the tree of its shard (the one
-- audit_head.shard_start names, migration 0008; store.CompletedAuditNodes
-- of its size within the shard) are stored with it, in audit_nodes for
-- shard 0, else in audit_shard_nodes, computed by sigil_subtree_hash from
-- their stored children, as AppendAudit does in Go; p_tile_height is
-- store.AuditTileHeight.
CREATE FUNCTION sigil_record_token(
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
    SELECT key INTO v_taken FROM audit_keys WHERE key = ANY (p_keys) LIMIT 1;
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
