package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sigil-dev/sigil/internal/store"
)

const certificateColumns = `serial, spiffe_id, ek_hash, not_before, not_after, evidence_digest,
	policy_version, der, revoked_at, revocation_reason`

func scanCertificate(s pgx.Row) (store.Certificate, error) {
	var c store.Certificate
	var notBefore, notAfter int64
	var revoked *int64
	err := s.Scan(&c.Serial, &c.SPIFFEID, &c.EKHash, &notBefore, &notAfter, &c.EvidenceDigest,
		&c.PolicyVersion, &c.DER, &revoked, &c.RevocationReason)
	c.NotBefore, c.NotAfter, c.RevokedAt = fromMicros(notBefore), fromMicros(notAfter), fromNullMicros(revoked)
	return c, err
}

func (r reader) Certificate(ctx context.Context, serial string) (store.Certificate, error) {
	c, err := scanCertificate(r.q.QueryRow(ctx, `SELECT `+certificateColumns+` FROM certificates WHERE serial = $1`, serial))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Certificate{}, fmt.Errorf("store: certificate %s: %w", serial, store.ErrNotFound)
	}
	if err != nil {
		return store.Certificate{}, fmt.Errorf("store: certificate %s: %w", serial, err)
	}
	return c, nil
}

func (r reader) DeviceCertificates(ctx context.Context, ekHash string) ([]store.Certificate, error) {
	rows, err := r.q.Query(ctx, `SELECT `+certificateColumns+` FROM certificates
		WHERE ek_hash = $1 ORDER BY not_before, serial`, ekHash)
	if err != nil {
		return nil, fmt.Errorf("store: certificates of device %s: %w", ekHash, err)
	}
	cs, err := scanAll(rows, scanCertificate)
	if err != nil {
		return nil, fmt.Errorf("store: certificates of device %s: %w", ekHash, err)
	}
	return cs, nil
}

func (r reader) Revocations(ctx context.Context, unexpiredAt time.Time) ([]store.Revocation, error) {
	after := int64(math.MinInt64)
	if !unexpiredAt.IsZero() {
		after = micros(unexpiredAt)
	}
	rows, err := r.q.Query(ctx, `SELECT serial, revoked_at, revocation_reason FROM certificates
		WHERE revoked_at IS NOT NULL AND not_after > $1 ORDER BY serial`, after)
	if err != nil {
		return nil, fmt.Errorf("store: list revocations: %w", err)
	}
	rs, err := scanAll(rows, func(s pgx.Row) (store.Revocation, error) {
		var v store.Revocation
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

// InsertCertificate first locks the device FOR SHARE if it is active:
// concurrent inserts share the lock; a disable's UPDATE waits for them
// and then revokes what they inserted, and an insert that comes after the
// disable's UPDATE waits for it to commit, re-reads the device, and
// matches nothing (ErrDeviceDisabled). The evidence is checked before the
// insert, so that a missing one is ErrNotFound without aborting the
// transaction (evidence is never deleted).
func (w writer) InsertCertificate(ctx context.Context, c store.Certificate) error {
	b := &pgx.Batch{}
	b.Queue(`SELECT 1 FROM devices WHERE ek_hash = $1 AND status = 'active' FOR SHARE`, c.EKHash)
	b.Queue(`SELECT 1 FROM evidence WHERE digest = $1`, c.EvidenceDigest)
	res := w.q.SendBatch(ctx, b)
	active, errDev := exists(res)
	found, errEv := exists(res)
	if err := errors.Join(errDev, errEv, res.Close()); err != nil {
		return fmt.Errorf("store: insert certificate %s: %w", c.Serial, err)
	}
	if !active {
		return w.deviceRefused(ctx, c)
	}
	if !found {
		return fmt.Errorf("store: insert certificate %s: evidence %s: %w", c.Serial, c.EvidenceDigest, store.ErrNotFound)
	}
	tag, err := w.q.Exec(ctx, `INSERT INTO certificates (`+certificateColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, '') ON CONFLICT (serial) DO NOTHING`,
		c.Serial, c.SPIFFEID, c.EKHash, micros(c.NotBefore), micros(c.NotAfter), c.EvidenceDigest,
		c.PolicyVersion, c.DER)
	if err != nil {
		return fmt.Errorf("store: insert certificate %s: %w", c.Serial, classify(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: insert certificate %s: serial taken: %w", c.Serial, store.ErrConflict)
	}
	return nil
}

// exists reads the next result of a batch: whether its query returned a
// row.
func exists(res pgx.BatchResults) (bool, error) {
	var one int
	err := res.QueryRow().Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// deviceRefused says why InsertCertificate found no active device.
func (w writer) deviceRefused(ctx context.Context, c store.Certificate) error {
	if _, err := w.reader().Device(ctx, c.EKHash); err != nil {
		return fmt.Errorf("store: insert certificate %s: %w", c.Serial, err)
	}
	return fmt.Errorf("store: insert certificate %s: device %s: %w", c.Serial, c.EKHash, store.ErrDeviceDisabled)
}

// RevokeCertificate is one conditional UPDATE: its row count says whether
// this call revoked the certificate.
func (w writer) RevokeCertificate(ctx context.Context, serial, reason string, at time.Time) error {
	tag, err := w.q.Exec(ctx, `UPDATE certificates SET revoked_at = $1, revocation_reason = $2
		WHERE serial = $3 AND revoked_at IS NULL`, micros(at), reason, serial)
	if err != nil {
		return fmt.Errorf("store: revoke certificate %s: %w", serial, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	if _, err := w.reader().Certificate(ctx, serial); err != nil {
		return err
	}
	return fmt.Errorf("store: revoke certificate %s: already revoked: %w", serial, store.ErrConflict)
}
