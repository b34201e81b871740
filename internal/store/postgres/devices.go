package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sigil-dev/sigil/internal/store"
)

const deviceColumns = `ek_hash, ek_cert_der, ek_public_der, ak_hash, ak_public, status, created_at, updated_at`

func scanDevice(s pgx.Row) (store.Device, error) {
	var d store.Device
	var created, updated int64
	err := s.Scan(&d.EKHash, &d.EKCertDER, &d.EKPublicDER, &d.AKHash, &d.AKPublic, &d.Status, &created, &updated)
	d.CreatedAt, d.UpdatedAt = fromMicros(created), fromMicros(updated)
	return d, err
}

func (r reader) Device(ctx context.Context, ekHash string) (store.Device, error) {
	d, err := scanDevice(r.q.QueryRow(ctx, `SELECT `+deviceColumns+` FROM devices WHERE ek_hash = $1`, ekHash))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Device{}, fmt.Errorf("store: device %s: %w", ekHash, store.ErrNotFound)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("store: device %s: %w", ekHash, err)
	}
	return d, nil
}

func (r reader) Devices(ctx context.Context) ([]store.Device, error) {
	rows, err := r.q.Query(ctx, `SELECT `+deviceColumns+` FROM devices ORDER BY ek_hash`)
	if err != nil {
		return nil, fmt.Errorf("store: list devices: %w", err)
	}
	ds, err := scanAll(rows, scanDevice)
	if err != nil {
		return nil, fmt.Errorf("store: list devices: %w", err)
	}
	return ds, nil
}

// BindDevice inserts the device unless its EK or its AK is stored (ON
// CONFLICT DO NOTHING: of concurrent first binds one inserts, the others
// wait for it and insert nothing), else locks the EK's row FOR UPDATE,
// which orders concurrent rebinds, and rebinds it: the AK it read under
// the lock is the one it replaces. No EK row after a refused insert means
// the AK is another EK's.
func (w writer) BindDevice(ctx context.Context, d store.Device, now time.Time) (string, error) {
	if d.Status == "" {
		d.Status = store.DeviceActive
	}
	tag, err := w.q.Exec(ctx, `INSERT INTO devices (`+deviceColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
		ON CONFLICT DO NOTHING`,
		d.EKHash, d.EKCertDER, d.EKPublicDER, d.AKHash, d.AKPublic, string(d.Status), micros(now))
	if err != nil {
		return "", fmt.Errorf("store: bind device %s: %w", d.EKHash, classify(err))
	}
	if tag.RowsAffected() == 1 {
		return "", nil
	}
	var prev string
	err = w.q.QueryRow(ctx, `SELECT ak_hash FROM devices WHERE ek_hash = $1 FOR UPDATE`, d.EKHash).Scan(&prev)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("store: bind device %s: AK %s is bound to another EK: %w", d.EKHash, d.AKHash, store.ErrConflict)
	}
	if err != nil {
		return "", fmt.Errorf("store: bind device %s: %w", d.EKHash, err)
	}
	if err := w.rebind(ctx, d, now); err != nil {
		return "", err
	}
	if prev == d.AKHash {
		return "", nil
	}
	return prev, nil
}

// rebind binds the stored, locked EK of d to d's AK, unless another EK
// holds that AK.
func (w writer) rebind(ctx context.Context, d store.Device, now time.Time) error {
	var other string
	err := w.q.QueryRow(ctx, `SELECT ek_hash FROM devices WHERE ak_hash = $1 AND ek_hash <> $2`, d.AKHash, d.EKHash).Scan(&other)
	if err == nil {
		return fmt.Errorf("store: rebind device %s: AK %s is bound to EK %s: %w", d.EKHash, d.AKHash, other, store.ErrConflict)
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("store: rebind device %s: %w", d.EKHash, err)
	}
	_, err = w.q.Exec(ctx, `UPDATE devices SET ak_hash = $1, ak_public = $2,
		ek_cert_der = COALESCE($3, ek_cert_der), updated_at = $4 WHERE ek_hash = $5`,
		d.AKHash, d.AKPublic, d.EKCertDER, micros(now), d.EKHash)
	if err != nil {
		return fmt.Errorf("store: rebind device %s: %w", d.EKHash, classify(err))
	}
	return nil
}

// SetDeviceStatus updates the device, which waits for the inserts holding
// it (InsertCertificate locks it FOR SHARE) to commit; its next statement
// then sees their certificates and revokes them, with their tokens
// (revokeCertificatesWhere).
func (w writer) SetDeviceStatus(ctx context.Context, ekHash string, status store.DeviceStatus, now time.Time) (store.Revoked, error) {
	none := store.Revoked{Certificates: []string{}, Tokens: []string{}}
	tag, err := w.q.Exec(ctx, `UPDATE devices SET status = $1, updated_at = $2 WHERE ek_hash = $3`,
		string(status), micros(now), ekHash)
	if err != nil {
		return none, fmt.Errorf("store: set device %s %s: %w", ekHash, status, err)
	}
	if tag.RowsAffected() == 0 {
		return none, fmt.Errorf("store: set device %s %s: %w", ekHash, status, store.ErrNotFound)
	}
	if status != store.DeviceDisabled {
		return none, nil
	}
	revoked, err := w.revokeCertificatesWhere(ctx, `ek_hash = $3`, ekHash, store.ReasonDeviceDisabled, now)
	if err != nil {
		return none, fmt.Errorf("store: disable device %s: %w", ekHash, err)
	}
	return revoked, nil
}
