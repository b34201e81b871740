package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

const deviceColumns = `ek_hash, ek_cert_der, ek_public_der, ak_hash, ak_public, status, created_at, updated_at`

func scanDevice(s scanner) (store.Device, error) {
	var d store.Device
	var created, updated int64
	err := s.Scan(&d.EKHash, &d.EKCertDER, &d.EKPublicDER, &d.AKHash, &d.AKPublic, &d.Status, &created, &updated)
	d.CreatedAt, d.UpdatedAt = fromMicros(created), fromMicros(updated)
	return d, err
}

func (r reader) Device(ctx context.Context, ekHash string) (store.Device, error) {
	row := r.q.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE ek_hash = ?`, ekHash)
	d, err := scanDevice(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Device{}, fmt.Errorf("store: device %s: %w", ekHash, store.ErrNotFound)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("store: device %s: %w", ekHash, err)
	}
	return d, nil
}

func (r reader) Devices(ctx context.Context) ([]store.Device, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT `+deviceColumns+` FROM devices ORDER BY ek_hash`)
	if err != nil {
		return nil, fmt.Errorf("store: list devices: %w", err)
	}
	ds, err := scanAll(rows, scanDevice)
	if err != nil {
		return nil, fmt.Errorf("store: list devices: %w", err)
	}
	return ds, nil
}

// BindDevice inserts the device unless its EK is stored (ON CONFLICT
// DO NOTHING: of concurrent first binds one inserts; the others, once it
// commits, rebind), else rebinds it with a compare-and-swap: an UPDATE
// conditional on the AK it read, whose row count says whether another
// writer rebound the EK in between; then it reads again and retries. So
// every rebind reports the AK it replaced, on any database and at any
// isolation level. The unique ak_hash makes an AK of another EK
// ErrConflict.
func (w writer) BindDevice(ctx context.Context, d store.Device, now time.Time) (string, error) {
	inserted, err := w.insertDevice(ctx, d, now)
	if err != nil || inserted {
		return "", err
	}
	for range maxRebindAttempts {
		var prev string
		err := w.q.QueryRowContext(ctx, `SELECT ak_hash FROM devices WHERE ek_hash = ?`, d.EKHash).Scan(&prev)
		if err != nil {
			return "", fmt.Errorf("store: rebind device %s: %w", d.EKHash, err)
		}
		swapped, err := w.rebind(ctx, d, prev, now)
		if err != nil {
			return "", err
		}
		if !swapped {
			continue // rebound by another writer since we read it
		}
		if prev == d.AKHash {
			return "", nil
		}
		return prev, nil
	}
	return "", fmt.Errorf("store: rebind device %s: rebound concurrently %d times: %w", d.EKHash, maxRebindAttempts, store.ErrConflict)
}

// maxRebindAttempts bounds BindDevice's compare-and-swap loop: each retry
// means another writer rebound the EK meanwhile.
const maxRebindAttempts = 8

// rebind binds the stored EK of d to d's AK if it is still bound to prev.
func (w writer) rebind(ctx context.Context, d store.Device, prev string, now time.Time) (bool, error) {
	res, err := w.q.ExecContext(ctx, `UPDATE devices SET ak_hash = ?, ak_public = ?,
		ek_cert_der = COALESCE(?, ek_cert_der), updated_at = ? WHERE ek_hash = ? AND ak_hash = ?`,
		d.AKHash, d.AKPublic, d.EKCertDER, micros(now), d.EKHash, prev)
	if err != nil {
		return false, fmt.Errorf("store: rebind device %s: %w", d.EKHash, classify(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: rebind device %s: %w", d.EKHash, err)
	}
	return n == 1, nil
}

// insertDevice stores d unless its EK is stored, and says whether it did.
func (w writer) insertDevice(ctx context.Context, d store.Device, now time.Time) (bool, error) {
	if d.Status == "" {
		d.Status = store.DeviceActive
	}
	res, err := w.q.ExecContext(ctx, `INSERT INTO devices (`+deviceColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (ek_hash) DO NOTHING`,
		d.EKHash, d.EKCertDER, d.EKPublicDER, d.AKHash, d.AKPublic, string(d.Status), micros(now), micros(now))
	if err != nil {
		return false, fmt.Errorf("store: bind device %s: %w", d.EKHash, classify(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: bind device %s: %w", d.EKHash, err)
	}
	return n == 1, nil
}

// SetDeviceStatus updates the device first, which orders it with
// InsertCertificate (see there), then revokes the device's certificates
// and their tokens with revokeCertificatesWhere.
func (w writer) SetDeviceStatus(ctx context.Context, ekHash string, status store.DeviceStatus, now time.Time) (store.Revoked, error) {
	none := store.Revoked{Certificates: []string{}, Tokens: []string{}}
	res, err := w.q.ExecContext(ctx, `UPDATE devices SET status = ?, updated_at = ? WHERE ek_hash = ?`,
		string(status), micros(now), ekHash)
	if err != nil {
		return none, fmt.Errorf("store: set device %s %s: %w", ekHash, status, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return none, fmt.Errorf("store: set device %s %s: %w", ekHash, status, err)
	}
	if n == 0 {
		return none, fmt.Errorf("store: set device %s %s: %w", ekHash, status, store.ErrNotFound)
	}
	if status != store.DeviceDisabled {
		return none, nil
	}
	var revoked store.Revoked
	err = w.savepoint(ctx, "disable_device", func() error {
		var err error
		revoked, err = w.revokeCertificatesWhere(ctx, `ek_hash = ?`, []any{ekHash}, store.ReasonDeviceDisabled, now)
		return err
	})
	if err != nil {
		return none, fmt.Errorf("store: disable device %s: %w", ekHash, err)
	}
	return revoked, nil
}
