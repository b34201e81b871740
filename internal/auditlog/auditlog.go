// Package auditlog writes sigil's audit entries into the store, inside the
// transaction of the operation each entry describes: an operation whose
// entry cannot be committed does not take effect.
package auditlog

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
)

// Entry encodes an audit entry of kind with payload; keys find it again
// ("serial:…", "jti:…").
func Entry(kind audit.Kind, at time.Time, payload any, keys ...string) (store.AuditEntry, error) {
	data, err := json.Marshal(payload)
	if err != nil {
		return store.AuditEntry{}, fmt.Errorf("audit: encode %s payload: %w", kind, err)
	}
	enc, err := audit.Encode(audit.Entry{Kind: kind, Time: at.UTC(), Data: data})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return store.AuditEntry{Data: enc, LeafHash: audit.LeafHash(enc), Keys: keys, CreatedAt: at}, nil
}

// Append appends entries in tx.
func Append(ctx context.Context, tx store.Tx, entries ...store.AuditEntry) error {
	for _, e := range entries {
		if _, err := tx.AppendAudit(ctx, e); err != nil {
			return fmt.Errorf("audit: append: %w", err)
		}
	}
	return nil
}

// Record appends one entry in a transaction of its own, for events that
// change nothing else in the store (a policy set loaded, a key created).
func Record(ctx context.Context, st store.Store, kind audit.Kind, payload any, keys ...string) error {
	e, err := Entry(kind, time.Now(), payload, keys...)
	if err != nil {
		return err
	}
	return st.Tx(ctx, func(tx store.Tx) error { return Append(ctx, tx, e) })
}

// SetDeviceStatus changes a device's status and logs it: disabling logs the
// device and every certificate it revokes, in the same transaction.
func SetDeviceStatus(ctx context.Context, st store.Store, ekHash string, status store.DeviceStatus, now time.Time) ([]string, error) {
	var revoked []string
	err := st.Tx(ctx, func(tx store.Tx) error {
		var err error
		if revoked, err = tx.SetDeviceStatus(ctx, ekHash, status, now); err != nil {
			return err
		}
		kind := audit.DeviceDisabled
		if status == store.DeviceActive {
			kind = audit.DeviceEnabled
		}
		entries := make([]store.AuditEntry, 0, len(revoked)+1)
		e, err := Entry(kind, now, audit.Device{EKHash: ekHash, Status: string(status)})
		if err != nil {
			return err
		}
		entries = append(entries, e)
		for _, serial := range revoked {
			if e, err = Entry(audit.CertificateRevoked, now, audit.Certificate{Serial: serial, EKHash: ekHash, Reason: store.ReasonDeviceDisabled}); err != nil {
				return err
			}
			entries = append(entries, e)
		}
		return Append(ctx, tx, entries...)
	})
	return revoked, err
}
