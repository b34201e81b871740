package device

import (
	"context"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
)

// SetStatus changes the status of the device with EK hash ekHash and logs
// it, in one transaction: disabling revokes every certificate of the
// device and logs each revocation; enabling revokes nothing, and revoked
// certificates stay revoked. It returns the serials revoked.
func SetStatus(ctx context.Context, st store.Store, ekHash string, status store.DeviceStatus, now time.Time) ([]string, error) {
	var revoked []string
	err := st.Tx(ctx, func(tx store.Tx) error {
		var err error
		if revoked, err = tx.SetDeviceStatus(ctx, ekHash, status, now); err != nil {
			return err
		}
		entries, err := statusEntries(ekHash, status, revoked, now)
		if err != nil {
			return err
		}
		return store.AppendAuditEntries(ctx, tx, entries...)
	})
	return revoked, err
}

// statusEntries are the audit entries of a device status change: the
// change, then each certificate it revoked.
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
