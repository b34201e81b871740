package device

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
)

// RevokeCertificate revokes the certificate of serial for reason, one of
// store.CertificateReasons (the CRL lists it with that reason's code),
// every token bound to it and every token exchanged from those, and logs
// each revocation, in one transaction; the device stays enabled (disable
// it to cut off all its certificates and renewals). It returns what it
// revoked. An unknown serial is store.ErrNotFound, one revoked already
// store.ErrConflict.
func RevokeCertificate(ctx context.Context, st store.Store, serial, reason string, now time.Time) (store.Revoked, error) {
	if !slices.Contains(store.CertificateReasons, reason) {
		return store.Revoked{}, fmt.Errorf("device: revocation reason %q: want one of %q", reason, store.CertificateReasons)
	}
	var revoked store.Revoked
	err := st.Tx(ctx, func(tx store.Tx) error {
		cert, err := tx.Certificate(ctx, serial)
		if err != nil {
			return err
		}
		var entries []store.AuditEntry
		revoked, entries, err = revoke(ctx, tx, audit.Certificate{Serial: serial, EKHash: cert.EKHash, Reason: reason}, now)
		if err != nil {
			return err
		}
		return store.AppendAuditEntries(ctx, tx, entries...)
	})
	return revoked, err
}

// revoke revokes, in tx, the certificate p names for p.Reason, with every
// token bound to it and exchanged from those, and returns what it revoked
// and the audit entries that say so: p itself, then the tokens'. A
// certificate revoked already is store.ErrConflict.
func revoke(ctx context.Context, tx store.Tx, p audit.Certificate, now time.Time) (store.Revoked, []store.AuditEntry, error) {
	got, err := tx.RevokeCertificate(ctx, p.Serial, p.Reason, now)
	if err != nil {
		return store.Revoked{}, nil, err
	}
	e, err := store.NewAuditEntry(audit.CertificateRevoked, now, p)
	if err != nil {
		return store.Revoked{}, nil, err
	}
	tokens, err := store.RevokedTokenEntries(ctx, tx, got.Tokens, now)
	if err != nil {
		return store.Revoked{}, nil, err
	}
	return got, append([]store.AuditEntry{e}, tokens...), nil
}
