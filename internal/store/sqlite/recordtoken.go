package sqlite

import (
	"context"
	"fmt"

	"github.com/sigil-dev/sigil/internal/store"
)

var _ store.TokenRecorder = (*sqliteStore)(nil)

// RecordToken stores r as store.TokenRecord.In does, in one Tx, with the
// same statements but for AppendAudit's savepoint: a failed append fails
// the whole fn, which the Tx then undoes (alone, by ROLLBACK; batched, by
// rolling back to the fn's savepoint), so the entry's own savepoint would
// undo nothing more. Two statements fewer in every token exchange. The
// errors are In's.
func (s *sqliteStore) RecordToken(ctx context.Context, r store.TokenRecord) error {
	return s.Tx(ctx, func(tx store.Tx) error {
		w := tx.(txn).writer
		if r.External != nil {
			if err := w.InsertExternalToken(ctx, *r.External); err != nil {
				return err
			}
		}
		if err := w.InsertToken(ctx, r.Token); err != nil {
			return err
		}
		if _, err := w.appendAudit(ctx, r.Entry); err != nil {
			return fmt.Errorf("store: append audit entry: %w", err)
		}
		return nil
	})
}
