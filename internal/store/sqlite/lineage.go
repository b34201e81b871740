package sqlite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// Epoch reads the lineage row that migration 0011 created.
func (r reader) Epoch(ctx context.Context) (string, error) {
	var epoch string
	if err := r.q.QueryRowContext(ctx, `SELECT epoch FROM lineage WHERE id = 1`).Scan(&epoch); err != nil {
		return "", fmt.Errorf("store: epoch: %w", err)
	}
	return epoch, nil
}

// NewEpoch replaces the epoch with 16 random bytes, hex encoded.
func (w writer) NewEpoch(ctx context.Context) (string, error) {
	var b [16]byte
	rand.Read(b[:])
	epoch := hex.EncodeToString(b[:])
	res, err := w.q.ExecContext(ctx, `UPDATE lineage SET epoch = ? WHERE id = 1`, epoch)
	if err != nil {
		return "", fmt.Errorf("store: new epoch: %w", classify(err))
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return "", fmt.Errorf("store: new epoch: the lineage row is missing (%d rows, %v)", n, err)
	}
	return epoch, nil
}
