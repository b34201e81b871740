package device

import (
	"context"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
)

// SetStatus changes the status of the device with EK hash ekHash and logs
// it, in one transaction: disabling revokes every certificate of the
// device, every token bound to one of them and every token exchanged from
// those (store.SetDeviceStatus), and logs each revocation with its
// reason; enabling revokes nothing, and revoked certificates and tokens
// stay revoked. It returns what it revoked. The token service's feed
// publishes the revocations, from any replica, once they commit.
func SetStatus(ctx context.Context, st store.Store, ekHash string, status store.DeviceStatus, now time.Time) (store.Revoked, error) {
	var revoked store.Revoked
	err := st.Tx(ctx, func(tx store.Tx) error {
		var err error
		if revoked, err = tx.SetDeviceStatus(ctx, ekHash, status, now); err != nil {
			return err
		}
		entries, err := statusEntries(ekHash, status, revoked.Certificates, now)
		if err != nil {
			return err
		}
		tokens, err := store.RevokedTokenEntries(ctx, tx, revoked.Tokens, now)
		if err != nil {
			return err
		}
		return store.AppendAuditEntries(ctx, tx, append(entries, tokens...)...)
	})
	return revoked, err
}

// statusEntries are the audit entries of a device status change: the
// change, then each certificate it revoked (the tokens revoked with them
// follow, RevokedTokenEntries).
func statusEntries(ekHash string, status store.DeviceStatus, revoked []string, now time.Time) ([]store.AuditEntry, error) {
	kind := audit.DeviceDisabled
	if status == store.DeviceActive {
		kind = audit.DeviceEnabled
	}
	e, err := store.NewAuditEntry(kind, now, audit.Device{EKHash: ekHash, Status: string(status)})
	if err != nil {
		return nil, err
	}
	entries := []store.AuditEntry{e}
	for _, serial := range revoked {
		cert := audit.Certificate{Serial: serial, EKHash: ekHash, Reason: store.ReasonDeviceDisabled}
		if e, err = store.NewAuditEntry(audit.CertificateRevoked, now, cert); err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	return entries, nil
}
