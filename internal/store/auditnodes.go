package store

import (
	"context"
	"fmt"

	"github.com/transparency-dev/merkle/rfc6962"
)

// AuditTileHeight: the store keeps the hash of every complete perfect
// subtree of the audit log's Merkle tree whose level (log2 of the entries
// it covers) is a positive multiple of AuditTileHeight, in table
// audit_nodes, so that a proof reads at most 2^AuditTileHeight hashes per
// node. It is the audit package's TileHeight.
const AuditTileHeight = 8

var hashChildren = rfc6962.DefaultHasher.HashChildren

func (r reader) AuditNodeHashes(ctx context.Context, level uint, start, end uint64) ([][]byte, error) {
	name := fmt.Sprintf("nodes at level %d", level)
	if level == 0 || level%AuditTileHeight != 0 || level >= 64 {
		return nil, fmt.Errorf("store: audit %s: want a positive multiple of %d below 64", name, AuditTileHeight)
	}
	return r.auditRange(ctx, name, "node", `SELECT idx, hash FROM audit_nodes
		WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx`, start, end, int64(level))
}

// putAuditNodes stores the nodes that entry idx completes: one in 256
// entries completes a node at level 8, one in 65536 also one at level 16…
func (w writer) putAuditNodes(ctx context.Context, idx uint64) error {
	size := idx + 1
	for level := uint(AuditTileHeight); level < 64 && size%(1<<level) == 0; level += AuditTileHeight {
		if err := w.putAuditNode(ctx, level, size>>level-1); err != nil {
			return err
		}
	}
	return nil
}

// putAuditNode computes node index at level from its 2^AuditTileHeight
// children one tile level down (leaf hashes, or stored nodes) and stores
// it.
func (w writer) putAuditNode(ctx context.Context, level uint, index uint64) error {
	start, end := index<<AuditTileHeight, (index+1)<<AuditTileHeight
	var children [][]byte
	var err error
	if level == AuditTileHeight {
		children, err = reader(w).AuditLeafHashes(ctx, start, end)
	} else {
		children, err = reader(w).AuditNodeHashes(ctx, level-AuditTileHeight, start, end)
	}
	if err != nil {
		return fmt.Errorf("audit node %d at level %d: %w", index, level, err)
	}
	_, err = w.q.ExecContext(ctx, `INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)`,
		int64(level), int64(index), perfectRoot(children))
	if err != nil {
		return fmt.Errorf("audit node %d at level %d: %w", index, level, classify(err))
	}
	return nil
}

// perfectRoot returns the RFC 6962 hash of the perfect tree whose bottom
// row is hashes, a power of two of them. It overwrites hashes.
func perfectRoot(hashes [][]byte) []byte {
	for len(hashes) > 1 {
		for i := range len(hashes) / 2 {
			hashes[i] = hashChildren(hashes[2*i], hashes[2*i+1])
		}
		hashes = hashes[:len(hashes)/2]
	}
	return hashes[0]
}

// backfillAuditNodes is the Go side of migration 0006_audit_nodes: it
// stores the nodes of the entries appended before it, in the migration's
// transaction, so that from then on every complete node is stored. It
// reads every leaf hash once, 256 at a time, then every stored node once:
// O(entries) time, once; O(1) memory: about 2 s per million entries
// (backfill-s in BenchmarkAuditProof).
func backfillAuditNodes(ctx context.Context, q querier) error {
	size, err := reader{q}.AuditSize(ctx)
	if err != nil {
		return err
	}
	for level := uint(AuditTileHeight); level < 64 && size>>level > 0; level += AuditTileHeight {
		for i := range size >> level {
			if err := (writer{q}).putAuditNode(ctx, level, i); err != nil {
				return fmt.Errorf("backfill %w", err)
			}
		}
	}
	return nil
}
