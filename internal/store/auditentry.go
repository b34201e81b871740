package store

import (
	"context"
	"fmt"
	"time"

	"github.com/sigil-dev/sigil/audit"
)

// This file is the bridge from the audit package's entries to the store:
// every operation appends its audit entry in its own transaction, so that
// an operation whose entry cannot be committed does not take effect. The
// audit package owns the entry format; the store owns where entries live.

// NewAuditEntry encodes the audit entry of kind with payload (a value of,
// or pointer to, the kind's payload type), at time at, with its leaf hash; keys find it again ("serial:…", "jti:…").
func NewAuditEntry(kind audit.Kind, at time.Time, payload any, keys ...string) (AuditEntry, error) {
	enc, err := audit.EncodeNew(kind, at, payload)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("store: encode %s audit entry: %w", kind, err)
	}
	return AuditEntry{Data: enc, LeafHash: audit.LeafHash(enc), Keys: keys, CreatedAt: at}, nil
}

// auditAppender is the power AppendAuditEntries needs of a Tx.
type auditAppender interface {
	AppendAudit(ctx context.Context, e AuditEntry) (uint64, error)
}

// AppendAuditEntries appends entries, in order, in tx.
func AppendAuditEntries(ctx context.Context, tx auditAppender, entries ...AuditEntry) error {
	for _, e := range entries {
		if _, err := tx.AppendAudit(ctx, e); err != nil {
			return fmt.Errorf("store: append audit entry: %w", err)
		}
	}
	return nil
}

// AuditToken is the audit payload of a token record.
func AuditToken(rec Token) audit.Token {
	return audit.Token{
		JTI: rec.JTI, ParentJTI: rec.ParentJTI, Sub: rec.Sub, Act: rec.Act, Aud: rec.Aud,
		Scope: rec.Scope, Exp: rec.ExpiresAt.UTC(), CNF: rec.CNF,
	}
}

// tokenReader is the power RevokedTokenEntries needs of a Tx.
type tokenReader interface {
	Token(ctx context.Context, jti string) (Token, error)
}

// RevokedTokenEntries are the token.revoked audit entries, at time at, of
// the tokens jtis that a revocation in tx revoked (RevokeToken,
// RevokeCertificate, SetDeviceStatus), in order, each with the reason
// stored on its record and the key "revoked:<jti>".
func RevokedTokenEntries(ctx context.Context, tx tokenReader, jtis []string, at time.Time) ([]AuditEntry, error) {
	entries := make([]AuditEntry, 0, len(jtis))
	for _, jti := range jtis {
		rec, err := tx.Token(ctx, jti)
		if err != nil {
			return nil, err
		}
		payload := AuditToken(rec)
		payload.Reason = rec.RevocationReason
		e, err := NewAuditEntry(audit.TokenRevoked, at, payload, "revoked:"+jti)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// RecordAudit appends one entry, stamped now, in a transaction of its own,
// for events that change nothing else in the store (a policy set loaded, a
// key created).
func RecordAudit(ctx context.Context, st Store, kind audit.Kind, payload any, keys ...string) error {
	e, err := NewAuditEntry(kind, time.Now(), payload, keys...)
	if err != nil {
		return err
	}
	return st.Tx(ctx, func(tx Tx) error { return AppendAuditEntries(ctx, tx, e) })
}

// AuditLog is the audit package's Storage with its optional powers.
var (
	_ audit.Storage          = AuditLog{}
	_ audit.CheckpointLister = AuditLog{}
	_ audit.NodeHashReader   = AuditLog{}
	_ audit.Finder           = AuditLog{}
)

// Find returns the index of the entry appended with key ("serial:…",
// "jti:…"); it makes AuditLog an audit.Finder.
func (l AuditLog) Find(ctx context.Context, key string) (uint64, error) {
	return l.rw.AuditIndex(ctx, key)
}
