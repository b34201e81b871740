package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

const certificateColumns = `serial, spiffe_id, ek_hash, not_before, not_after, evidence_digest,
	policy_version, der, revoked_at, revocation_reason`

func scanCertificate(s scanner) (Certificate, error) {
	var c Certificate
	var notBefore, notAfter int64
	var revoked sql.NullInt64
	err := s.Scan(&c.Serial, &c.SPIFFEID, &c.EKHash, &notBefore, &notAfter, &c.EvidenceDigest,
		&c.PolicyVersion, &c.DER, &revoked, &c.RevocationReason)
	c.NotBefore, c.NotAfter, c.RevokedAt = fromMicros(notBefore), fromMicros(notAfter), fromNullMicros(revoked)
	return c, err
}

func (r reader) Certificate(ctx context.Context, serial string) (Certificate, error) {
	row := r.q.QueryRowContext(ctx, `SELECT `+certificateColumns+` FROM certificates WHERE serial = ?`, serial)
	c, err := scanCertificate(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Certificate{}, fmt.Errorf("store: certificate %s: %w", serial, ErrNotFound)
	}
	if err != nil {
		return Certificate{}, fmt.Errorf("store: certificate %s: %w", serial, err)
	}
	return c, nil
}

func (r reader) DeviceCertificates(ctx context.Context, ekHash string) ([]Certificate, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT `+certificateColumns+` FROM certificates
		WHERE ek_hash = ? ORDER BY not_before, serial`, ekHash)
	if err != nil {
		return nil, fmt.Errorf("store: certificates of device %s: %w", ekHash, err)
	}
	cs, err := scanAll(rows, scanCertificate)
	if err != nil {
		return nil, fmt.Errorf("store: certificates of device %s: %w", ekHash, err)
	}
	return cs, nil
}

func (r reader) Revocations(ctx context.Context, unexpiredAt time.Time) ([]Revocation, error) {
	after := int64(-1 << 63)
	if !unexpiredAt.IsZero() {
		after = micros(unexpiredAt)
	}
	rows, err := r.q.QueryContext(ctx, `SELECT serial, revoked_at, revocation_reason FROM certificates
		WHERE revoked_at IS NOT NULL AND not_after > ? ORDER BY serial`, after)
	if err != nil {
		return nil, fmt.Errorf("store: list revocations: %w", err)
	}
	rs, err := scanAll(rows, func(s scanner) (Revocation, error) {
		var v Revocation
		var at int64
		err := s.Scan(&v.Serial, &at, &v.Reason)
		v.RevokedAt = fromMicros(at)
		return v, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: list revocations: %w", err)
	}
	return rs, nil
}

// InsertCertificate checks the device is active in the INSERT itself, so a
// device disabled by a concurrent transaction gets no new certificate:
// either the disable commits first and this fails, or it revokes this
// certificate. That holds on SQLite, which serialises writers; PostgreSQL
// needs the device row locked (SELECT … FOR SHARE) first, and casts on the
// placeholders of INSERT … SELECT.
func (w writer) InsertCertificate(ctx context.Context, c Certificate) error {
	res, err := w.q.ExecContext(ctx, `INSERT INTO certificates (`+certificateColumns+`)
		SELECT ?, ?, ?, ?, ?, ?, ?, ?, NULL, ''
		WHERE NOT EXISTS (SELECT 1 FROM devices WHERE ek_hash = ? AND status <> 'active')`,
		c.Serial, c.SPIFFEID, c.EKHash, micros(c.NotBefore), micros(c.NotAfter), c.EvidenceDigest,
		c.PolicyVersion, c.DER, c.EKHash)
	if err != nil {
		return fmt.Errorf("store: insert certificate %s: %w", c.Serial, classify(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: insert certificate %s: %w", c.Serial, err)
	}
	if n == 0 {
		return fmt.Errorf("store: insert certificate %s: device %s: %w", c.Serial, c.EKHash, ErrDeviceDisabled)
	}
	return nil
}

func (w writer) RevokeCertificate(ctx context.Context, serial, reason string, at time.Time) error {
	res, err := w.q.ExecContext(ctx, `UPDATE certificates SET revoked_at = ?, revocation_reason = ?
		WHERE serial = ? AND revoked_at IS NULL`, micros(at), reason, serial)
	if err != nil {
		return fmt.Errorf("store: revoke certificate %s: %w", serial, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: revoke certificate %s: %w", serial, err)
	}
	if n == 1 {
		return nil
	}
	if _, err := reader(w).Certificate(ctx, serial); err != nil {
		return err
	}
	return fmt.Errorf("store: revoke certificate %s: already revoked: %w", serial, ErrConflict)
}
