package sqlite

import (
	"context"
	"errors"
	"fmt"

	"github.com/sigil-dev/sigil/internal/store"
)

var _ store.TokenRecorder = (*sqliteStore)(nil)

// What an exchange writes, B-tree by B-tree, and the queries that need
// each (none is written that no query needs; measured in
// BenchmarkRecordToken's wal-frames/op):
//
//	tokens (rowid)            the row; appends
//	tokens' jti key           Token, the holds, FKs; where NewID's time
//	                          prefix puts it: a few pages per COMMIT
//	tokens_parent_jti         revocation's cascade, TokenChildren, the FK check
//	                          of a purge; one hot page per parent
//	tokens_expires_at         PurgeExpiredTokens; appends
//	tokens_cnf (cnf <> '')    RevokeCertificate's cascade; one page a holder
//	tokens_handle_hash        opaque tokens only (partial)
//	audit_entries (rowid)     the entry, about 800 bytes; appends
//	audit_keys                AuditIndex, key uniqueness (WITHOUT ROWID);
//	                          "jti:" + NewID, placed as tokens' jti key
//	audit_head                the size; one row
//	audit_nodes               one node every 256 entries
//
// and the holds rewrite the certificate's row and the parent's (the
// external token's) in place, indexes untouched.

// RecordToken stores r as store.TokenRecord.In does, in one Tx, with the
// same statements but for AppendAudit's savepoint: a failed append fails
// the whole fn, which the Tx then undoes (alone, by ROLLBACK; batched, by
// rolling back to the fn's savepoint), so the entry's own savepoint would
// undo nothing more. Two statements fewer in every token exchange, and a
// third fewer when the external token's record is known to be committed
// (store.KnownTokens): InsertToken then finds it as the parent, revoked
// or not, and if it was purged meanwhile the fn stores it after all. The
// errors are In's.
func (s *sqliteStore) RecordToken(ctx context.Context, r store.TokenRecord) error {
	err := s.Tx(ctx, func(tx store.Tx) error {
		return s.record(ctx, tx.(txn).writer, r)
	})
	if err == nil && r.External != nil {
		s.known.Add(*r.External)
	}
	return err
}

// record is RecordToken's fn.
func (s *sqliteStore) record(ctx context.Context, w writer, r store.TokenRecord) error {
	known := false
	if x := r.External; x != nil {
		var err error
		if known = s.known.Known(x.JTI); known {
			err = x.CheckExternal() // as InsertExternalToken would
		} else {
			err = w.InsertExternalToken(ctx, *x)
		}
		if err != nil {
			return err
		}
	}
	err := w.InsertToken(ctx, r.Token)
	if known && errors.Is(err, store.ErrNotFound) {
		s.known.Forget(r.External.JTI) // purged since: store it again
		if err := w.InsertExternalToken(ctx, *r.External); err != nil {
			return err
		}
		err = w.InsertToken(ctx, r.Token)
	}
	if err != nil {
		return err
	}
	if _, err := w.appendAudit(ctx, r.Entry); err != nil {
		return fmt.Errorf("store: append audit entry: %w", err)
	}
	return nil
}
