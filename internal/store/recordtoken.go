package store

import "context"

// TokenRecord is what the token service stores before it returns a token:
// the token's record, its audit entry and, for a token exchanged from an
// external issuer's token, that token's record (InsertExternalToken).
type TokenRecord struct {
	External *Token // nil, or stored first unless its JTI is on record
	Token    Token
	Entry    AuditEntry
}

// In stores r in tx: InsertExternalToken (if any), InsertToken, AppendAudit.
// The errors are theirs, unchanged.
func (r TokenRecord) In(ctx context.Context, tx Tx) error {
	if r.External != nil {
		if err := tx.InsertExternalToken(ctx, *r.External); err != nil {
			return err
		}
	}
	if err := tx.InsertToken(ctx, r.Token); err != nil {
		return err
	}
	return AppendAuditEntries(ctx, tx, r.Entry)
}

// TokenRecorder is a Store that stores a TokenRecord in one transaction of
// its own more cheaply than a Tx running TokenRecord.In: with the same
// outcome and the same errors (ErrConflict, ErrCertificateRevoked,
// ErrRevoked, ErrNotFound), the token and its entry both stored or
// neither, and the same guarantees under concurrency as InsertToken and
// AppendAudit give, from any process. Of a refused token, the external
// token's record may stay stored: it is what InsertExternalToken stores on
// its own (as before a RevokeToken), a record of a token seen, which no
// exchange depends on. The PostgreSQL backend sends it in one round trip and commits
// the records of concurrent calls together.
type TokenRecorder interface {
	RecordToken(ctx context.Context, r TokenRecord) error
}

// txRunner is the power RecordToken needs of a Store without RecordToken.
type txRunner interface {
	Tx(ctx context.Context, fn func(Tx) error) error
}

// RecordToken stores r in st: with st's RecordToken if st is a
// TokenRecorder, else in one Tx (TokenRecord.In). Returning nil means
// committed.
func RecordToken(ctx context.Context, st txRunner, r TokenRecord) error {
	if rec, ok := st.(TokenRecorder); ok {
		return rec.RecordToken(ctx, r)
	}
	return st.Tx(ctx, func(tx Tx) error { return r.In(ctx, tx) })
}
