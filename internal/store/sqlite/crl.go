package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/sigil-dev/sigil/internal/store"
)

// LatestCRL reads the one CRL row.
func (r reader) LatestCRL(ctx context.Context) (store.CRL, error) {
	var c store.CRL
	var number, seq, at int64
	err := r.q.QueryRowContext(ctx, `SELECT number, revocation_seq, produced_at, der FROM crl WHERE id = 1`).Scan(&number, &seq, &at, &c.DER)
	if errors.Is(err, sql.ErrNoRows) {
		return store.CRL{}, fmt.Errorf("store: latest crl: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.CRL{}, fmt.Errorf("store: latest crl: %w", err)
	}
	c.Number, c.RevocationSeq, c.ProducedAt = uint64(number), uint64(seq), fromMicros(at)
	return c, nil
}

// PutCRL replaces the CRL row if c's number is larger.
func (w writer) PutCRL(ctx context.Context, c store.CRL) error {
	if len(c.DER) == 0 {
		return errors.New("store: put crl: empty DER")
	}
	res, err := w.q.ExecContext(ctx, `INSERT INTO crl (id, number, revocation_seq, produced_at, der) VALUES (1, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET number = excluded.number, revocation_seq = excluded.revocation_seq,
			produced_at = excluded.produced_at, der = excluded.der
		WHERE crl.number < excluded.number`, int64(c.Number), int64(c.RevocationSeq), micros(c.ProducedAt), c.DER)
	if err != nil {
		return fmt.Errorf("store: put crl %d: %w", c.Number, classify(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: put crl %d: %w", c.Number, err)
	}
	if n == 0 {
		return fmt.Errorf("store: put crl %d: %w: a CRL of this number or a larger one is stored", c.Number, store.ErrConflict)
	}
	return nil
}
