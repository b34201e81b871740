package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
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

// certificateByThumbprint names the partial index's condition (thumbprint
// is not empty) so that its generic plan can use the index (see
// holdCertificate).
const certificateByThumbprint = `SELECT ` + certificateColumns + ` FROM certificates
	WHERE thumbprint = $1 AND thumbprint <> ''`

func (r reader) CertificateByThumbprint(ctx context.Context, x5tS256 string) (store.Certificate, error) {
	if x5tS256 == "" {
		return store.Certificate{}, fmt.Errorf("store: certificate by thumbprint: %w", store.ErrNotFound)
	}
	c, err := scanCertificate(r.q.QueryRow(ctx, certificateByThumbprint, x5tS256))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Certificate{}, fmt.Errorf("store: certificate by thumbprint %s: %w", x5tS256, store.ErrNotFound)
	}
	if err != nil {
		return store.Certificate{}, fmt.Errorf("store: certificate by thumbprint %s: %w", x5tS256, err)
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

func (r reader) CurrentDeviceCertificates(ctx context.Context, ekHash string, at time.Time) ([]store.Certificate, error) {
	rows, err := r.q.Query(ctx, `SELECT `+certificateColumns+` FROM certificates
		WHERE ek_hash = $1 AND revoked_at IS NULL AND not_after > $2 ORDER BY not_before, serial`, ekHash, micros(at))
	if err != nil {
		return nil, fmt.Errorf("store: current certificates of device %s: %w", ekHash, err)
	}
	cs, err := scanAll(rows, scanCertificate)
	if err != nil {
		return nil, fmt.Errorf("store: current certificates of device %s: %w", ekHash, err)
	}
	return cs, nil
}

// deviceIdentities skips through the index certificates_identities one
// identity at a time (the recursive part seeks the next spiffe_id after the
// last, by ORDER BY ... LIMIT 1; PostgreSQL has no skip scan of its own, and
// DISTINCT reads every matching entry), then keeps those with a live
// certificate, found by one seek on not_after (a scalar subquery with
// LIMIT 1, not EXISTS: the planner turns EXISTS into a semi-join that
// hashes every live certificate of the device): its cost grows with the
// identities the device held, not with the certificates it renewed
// (TestDeviceIdentitiesPlan). The device is matched as a range (>= and <=,
// then a row comparison from the last identity), not by "=", so that the
// order asked for is (ek_hash, spiffe_id), which only
// certificates_identities gives: with "=", ORDER BY spiffe_id alone
// could be read from another index on spiffe_id, filtering by device,
// and the planner took that when most certificates were one device's.
const deviceIdentities = `WITH RECURSIVE ids(id) AS (
		SELECT (SELECT spiffe_id FROM certificates WHERE ek_hash >= $1 AND ek_hash <= $1 AND revoked_at IS NULL
			ORDER BY ek_hash, spiffe_id LIMIT 1)
		UNION ALL
		SELECT (SELECT spiffe_id FROM certificates WHERE (ek_hash, spiffe_id) > ($1, ids.id) AND ek_hash <= $1
			AND revoked_at IS NULL ORDER BY ek_hash, spiffe_id LIMIT 1)
		FROM ids WHERE ids.id IS NOT NULL
	)
	SELECT ids.id FROM ids WHERE ids.id IS NOT NULL AND (SELECT 1 FROM certificates c
		WHERE c.ek_hash = $1 AND c.spiffe_id = ids.id AND c.revoked_at IS NULL AND c.not_after > $2 LIMIT 1) = 1
	ORDER BY ids.id`

// identityHolders skips through the index certificates_holders one device
// at a time, as deviceIdentities does through identities, then keeps the
// active devices (one primary-key lookup each, not a join the planner may
// answer by reading every device) with a live certificate: its cost grows with the devices
// that held the identity, not with their certificates
// (TestIdentityHoldersPlan). The identity is matched as a range, as in
// deviceIdentities, so that only certificates_holders gives the order:
// with "=", the planner walked certificates_current in ek_hash order,
// dropping every other device's certificates, when most certificates
// were of that identity.
const identityHolders = `WITH RECURSIVE held(ek) AS (
		SELECT (SELECT ek_hash FROM certificates WHERE spiffe_id >= $1 AND spiffe_id <= $1 AND revoked_at IS NULL
			ORDER BY spiffe_id, ek_hash LIMIT 1)
		UNION ALL
		SELECT (SELECT ek_hash FROM certificates WHERE (spiffe_id, ek_hash) > ($1, held.ek) AND spiffe_id <= $1
			AND revoked_at IS NULL ORDER BY spiffe_id, ek_hash LIMIT 1)
		FROM held WHERE held.ek IS NOT NULL
	)
	SELECT held.ek FROM held WHERE held.ek IS NOT NULL
		AND (SELECT d.status FROM devices d WHERE d.ek_hash = held.ek) = 'active'
		AND (SELECT 1 FROM certificates c
			WHERE c.spiffe_id = $1 AND c.ek_hash = held.ek AND c.revoked_at IS NULL AND c.not_after > $2 LIMIT 1) = 1
	ORDER BY held.ek`

func (r reader) DeviceIdentities(ctx context.Context, ekHash string, at time.Time) ([]string, error) {
	rows, err := r.q.Query(ctx, deviceIdentities, ekHash, micros(at))
	if err != nil {
		return nil, fmt.Errorf("store: identities of device %s: %w", ekHash, err)
	}
	ids, err := scanAll(rows, scanString)
	if err != nil {
		return nil, fmt.Errorf("store: identities of device %s: %w", ekHash, err)
	}
	return ids, nil
}

func (r reader) IdentityHolders(ctx context.Context, spiffeID string, at time.Time) ([]string, error) {
	rows, err := r.q.Query(ctx, identityHolders, spiffeID, micros(at))
	if err != nil {
		return nil, fmt.Errorf("store: holders of %s: %w", spiffeID, err)
	}
	hs, err := scanAll(rows, scanString)
	if err != nil {
		return nil, fmt.Errorf("store: holders of %s: %w", spiffeID, err)
	}
	return hs, nil
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
	tag, err := w.q.Exec(ctx, `INSERT INTO certificates (`+certificateColumns+`, thumbprint)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, '', $9) ON CONFLICT (serial) DO NOTHING`,
		c.Serial, c.SPIFFEID, c.EKHash, micros(c.NotBefore), micros(c.NotAfter), c.EvidenceDigest,
		c.PolicyVersion, c.DER, c.Thumbprint())
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

// RevokeCertificate revokes the certificate with one conditional UPDATE,
// whose row count says whether this call revoked it (of concurrent
// revocations, the others re-read the row when the first commits and
// match nothing), then the tokens bound to it (revokeCertificatesWhere).
// A statement that fails aborts the transaction, so nothing of a failed
// call is committed.
func (w writer) RevokeCertificate(ctx context.Context, serial, reason string, at time.Time) (store.Revoked, error) {
	revoked, err := w.revokeCertificatesWhere(ctx, `serial = $3`, serial, reason, at)
	if err != nil {
		return store.Revoked{}, fmt.Errorf("store: revoke certificate %s: %w", serial, err)
	}
	if len(revoked.Certificates) == 1 {
		return revoked, nil
	}
	if _, err := w.reader().Certificate(ctx, serial); err != nil {
		return store.Revoked{}, err
	}
	return store.Revoked{}, fmt.Errorf("store: revoke certificate %s: already revoked: %w", serial, store.ErrConflict)
}

// revokeCertificatesWhere revokes the unrevoked certificates that match
// cond (on arg, $3), then the tokens bound to them (cnf = thumbprint) and
// every token exchanged from those, and appends their events: the
// certificates' first, by serial, then the tokens' in the order
// revokeBelow returns them. The certificates' UPDATE comes first and
// locks them, waiting for the inserts holding them (holdCertificate), so
// the tokens' statement that follows finds what those inserted.
func (w writer) revokeCertificatesWhere(ctx context.Context, cond string, arg any, reason string, at time.Time) (store.Revoked, error) {
	rows, err := w.q.Query(ctx, `UPDATE certificates SET revoked_at = $1, revocation_reason = $2
		WHERE `+cond+` AND revoked_at IS NULL RETURNING serial, thumbprint`, micros(at), reason, arg)
	if err != nil {
		return store.Revoked{}, fmt.Errorf("revoke certificates: %w", err)
	}
	type cert struct{ serial, thumbprint string }
	certs, err := scanAll(rows, func(s pgx.Row) (c cert, err error) { return c, s.Scan(&c.serial, &c.thumbprint) })
	if err != nil {
		return store.Revoked{}, fmt.Errorf("revoke certificates: %w", err)
	}
	slices.SortFunc(certs, func(a, b cert) int { return strings.Compare(a.serial, b.serial) })
	out := store.Revoked{Certificates: []string{}, Tokens: []string{}}
	var thumbprints []string
	for _, c := range certs {
		out.Certificates = append(out.Certificates, c.serial)
		if c.thumbprint != "" {
			thumbprints = append(thumbprints, c.thumbprint)
		}
	}
	if len(certs) == 0 {
		return out, nil
	}
	tokenReason := store.CertificateRevokedPrefix + reason
	if len(thumbprints) > 0 {
		if out.Tokens, err = w.revokeTokensBound(ctx, thumbprints, tokenReason, at); err != nil {
			return store.Revoked{}, err
		}
	}
	if err := w.appendRevocations(ctx, out.Certificates, nil, reason, at); err != nil {
		return store.Revoked{}, err
	}
	if err := w.appendRevocations(ctx, nil, out.Tokens, tokenReason, at); err != nil {
		return store.Revoked{}, err
	}
	return out, nil
}

// revokeTokensBound revokes the tokens bound to the certificates of
// thumbprints and every token exchanged from those.
func (w writer) revokeTokensBound(ctx context.Context, thumbprints []string, reason string, at time.Time) ([]string, error) {
	bound, err := w.revokeWhere(ctx, `cnf = ANY($3)`, thumbprints, reason, at)
	if err != nil {
		return nil, fmt.Errorf("revoke tokens bound to the certificates: %w", err)
	}
	slices.Sort(bound)
	tokens, err := w.revokeBelow(ctx, bound, reason, at)
	if err != nil {
		return nil, fmt.Errorf("revoke tokens exchanged from those bound to the certificates: %w", err)
	}
	if tokens == nil {
		tokens = []string{}
	}
	return tokens, nil
}
