package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

const deviceColumns = `ek_hash, ek_cert_der, ek_public_der, ak_hash, ak_public, status, created_at, updated_at`

func scanDevice(s scanner) (Device, error) {
	var d Device
	var created, updated int64
	err := s.Scan(&d.EKHash, &d.EKCertDER, &d.EKPublicDER, &d.AKHash, &d.AKPublic, &d.Status, &created, &updated)
	d.CreatedAt, d.UpdatedAt = fromMicros(created), fromMicros(updated)
	return d, err
}

func (r reader) Device(ctx context.Context, ekHash string) (Device, error) {
	row := r.q.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE ek_hash = ?`, ekHash)
	d, err := scanDevice(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, fmt.Errorf("store: device %s: %w", ekHash, ErrNotFound)
	}
	if err != nil {
		return Device{}, fmt.Errorf("store: device %s: %w", ekHash, err)
	}
	return d, nil
}

func (r reader) Devices(ctx context.Context) ([]Device, error) {
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

// BindDevice reads the current binding, then writes. That is race-free in
// a write transaction on SQLite, which serialises writers; PostgreSQL
// needs SELECT … FOR UPDATE here (a concurrent first insert of the same
// EK ends in ErrConflict for one of the two).
func (w writer) BindDevice(ctx context.Context, d Device, now time.Time) (string, error) {
	var prev string
	err := w.q.QueryRowContext(ctx, `SELECT ak_hash FROM devices WHERE ek_hash = ?`, d.EKHash).Scan(&prev)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", w.insertDevice(ctx, d, now)
	case err != nil:
		return "", fmt.Errorf("store: bind device %s: %w", d.EKHash, err)
	}
	_, err = w.q.ExecContext(ctx, `UPDATE devices SET ak_hash = ?, ak_public = ?,
		ek_cert_der = COALESCE(?, ek_cert_der), updated_at = ? WHERE ek_hash = ?`,
		d.AKHash, d.AKPublic, d.EKCertDER, micros(now), d.EKHash)
	if err != nil {
		return "", fmt.Errorf("store: rebind device %s: %w", d.EKHash, classify(err))
	}
	if prev == d.AKHash {
		return "", nil
	}
	return prev, nil
}

func (w writer) insertDevice(ctx context.Context, d Device, now time.Time) error {
	if d.Status == "" {
		d.Status = DeviceActive
	}
	_, err := w.q.ExecContext(ctx, `INSERT INTO devices (`+deviceColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		d.EKHash, d.EKCertDER, d.EKPublicDER, d.AKHash, d.AKPublic, string(d.Status), micros(now), micros(now))
	if err != nil {
		return fmt.Errorf("store: bind device %s: %w", d.EKHash, classify(err))
	}
	return nil
}

func (w writer) SetDeviceStatus(ctx context.Context, ekHash string, status DeviceStatus, now time.Time) ([]string, error) {
	res, err := w.q.ExecContext(ctx, `UPDATE devices SET status = ?, updated_at = ? WHERE ek_hash = ?`,
		string(status), micros(now), ekHash)
	if err != nil {
		return nil, fmt.Errorf("store: set device %s %s: %w", ekHash, status, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, fmt.Errorf("store: set device %s %s: %w", ekHash, status, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("store: set device %s %s: %w", ekHash, status, ErrNotFound)
	}
	if status != DeviceDisabled {
		return []string{}, nil
	}
	rows, err := w.q.QueryContext(ctx, `UPDATE certificates SET revoked_at = ?, revocation_reason = ?
		WHERE ek_hash = ? AND revoked_at IS NULL RETURNING serial`, micros(now), ReasonDeviceDisabled, ekHash)
	if err != nil {
		return nil, fmt.Errorf("store: disable device %s: revoke certificates: %w", ekHash, err)
	}
	serials, err := scanAll(rows, func(s scanner) (v string, err error) { return v, s.Scan(&v) })
	if err != nil {
		return nil, fmt.Errorf("store: disable device %s: revoke certificates: %w", ekHash, err)
	}
	slices.Sort(serials)
	return serials, nil
}
