package sqlite

import (
	"context"
	"fmt"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
)

// The audit log's interior nodes, table audit_nodes: the hash of every
// complete perfect subtree at a level that is a positive multiple of
// store.AuditTileHeight, computed by the audit package's SubtreeHash.

func (r reader) AuditNodeHashes(ctx context.Context, level uint, start, end uint64) ([][]byte, error) {
	name := fmt.Sprintf("nodes at level %d", level)
	if err := store.CheckAuditNodeLevel(level); err != nil {
		return nil, fmt.Errorf("store: audit %s: %w", name, err)
	}
	return r.auditRange(ctx, name, "node", `SELECT idx, hash FROM audit_nodes
		WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx`, start, end, int64(level))
}

func (r reader) AuditShardNodeHashes(ctx context.Context, shard uint64, level uint, start, end uint64) ([][]byte, error) {
	if shard == 0 {
		return r.AuditNodeHashes(ctx, level, start, end)
	}
	name := fmt.Sprintf("nodes of shard %d at level %d", shard, level)
	if err := store.CheckAuditNodeLevel(level); err != nil {
		return nil, fmt.Errorf("store: audit %s: %w", name, err)
	}
	return r.auditRange(ctx, name, "node", `SELECT idx, hash FROM audit_shard_nodes
		WHERE shard = ? AND level = ? AND idx >= ? AND idx < ? ORDER BY idx`, start, end, int64(shard), int64(level))
}

// putAuditNodes stores the nodes that the entry making the log size
// entries long completes in the tree of the shard starting at shard.
func (w writer) putAuditNodes(ctx context.Context, shard, size uint64) error {
	for _, n := range store.CompletedAuditNodes(size - shard) {
		if err := w.putAuditNode(ctx, shard, n); err != nil {
			return err
		}
	}
	return nil
}

// putAuditNode computes node n of the tree of the shard starting at shard
// from its children (leaf hashes, or stored nodes) and stores it: in
// audit_nodes for shard 0, else in audit_shard_nodes.
func (w writer) putAuditNode(ctx context.Context, shard uint64, n store.AuditNode) error {
	start, end := n.Children()
	var children [][]byte
	var err error
	if n.Level == store.AuditTileHeight {
		children, err = reader(w).AuditLeafHashes(ctx, shard+start, shard+end)
	} else {
		children, err = reader(w).AuditShardNodeHashes(ctx, shard, n.Level-store.AuditTileHeight, start, end)
	}
	if err != nil {
		return fmt.Errorf("audit node %d at level %d of shard %d: %w", n.Index, n.Level, shard, err)
	}
	hash, err := audit.SubtreeHash(children)
	if err != nil {
		return fmt.Errorf("audit node %d at level %d of shard %d: %w", n.Index, n.Level, shard, err)
	}
	if shard == 0 {
		_, err = w.q.ExecContext(ctx, `INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)`,
			int64(n.Level), int64(n.Index), hash)
	} else {
		_, err = w.q.ExecContext(ctx, `INSERT INTO audit_shard_nodes (shard, level, idx, hash) VALUES (?, ?, ?, ?)`,
			int64(shard), int64(n.Level), int64(n.Index), hash)
	}
	if err != nil {
		return fmt.Errorf("audit node %d at level %d of shard %d: %w", n.Index, n.Level, shard, classify(err))
	}
	return nil
}

// backfillAuditNodes is the Go side of migration 0006_audit_nodes: it
// stores the nodes of the entries appended before it, in the migration's
// transaction, so that from then on every complete node is stored. It
// reads every leaf hash once, 256 at a time, then every stored node once:
// O(entries) time, once; O(1) memory: about 2 s per million entries
// (backfill-s in BenchmarkAuditProof). It counts the entries itself: the
// coordinator row of AuditSize comes with migration 0007.
func backfillAuditNodes(ctx context.Context, q querier) error {
	var size int64
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM audit_entries`).Scan(&size); err != nil {
		return fmt.Errorf("backfill: count entries: %w", err)
	}
	for level := uint(store.AuditTileHeight); level < 64 && uint64(size)>>level > 0; level += store.AuditTileHeight {
		for i := range uint64(size) >> level {
			if err := (writer{q}).putAuditNode(ctx, 0, store.AuditNode{Level: level, Index: i}); err != nil {
				return fmt.Errorf("backfill %w", err)
			}
		}
	}
	return nil
}
