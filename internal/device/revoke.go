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
		if revoked, err = tx.RevokeCertificate(ctx, serial, reason, now); err != nil {
			return err
		}
		e, err := store.NewAuditEntry(audit.CertificateRevoked, now, audit.Certificate{Serial: serial, EKHash: cert.EKHash, Reason: reason})
		if err != nil {
			return err
		}
		tokens, err := store.RevokedTokenEntries(ctx, tx, revoked.Tokens, now)
		if err != nil {
			return err
		}
		return store.AppendAuditEntries(ctx, tx, append([]store.AuditEntry{e}, tokens...)...)
	})
	return revoked, err
}
