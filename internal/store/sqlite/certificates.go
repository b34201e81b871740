package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

const certificateColumns = `serial, spiffe_id, ek_hash, not_before, not_after, evidence_digest,
	policy_version, der, revoked_at, revocation_reason`

func scanCertificate(s scanner) (store.Certificate, error) {
	var c store.Certificate
	var notBefore, notAfter int64
	var revoked sql.NullInt64
	err := s.Scan(&c.Serial, &c.SPIFFEID, &c.EKHash, &notBefore, &notAfter, &c.EvidenceDigest,
		&c.PolicyVersion, &c.DER, &revoked, &c.RevocationReason)
	c.NotBefore, c.NotAfter, c.RevokedAt = fromMicros(notBefore), fromMicros(notAfter), fromNullMicros(revoked)
	return c, err
}

func (r reader) Certificate(ctx context.Context, serial string) (store.Certificate, error) {
	row := r.q.QueryRowContext(ctx, `SELECT `+certificateColumns+` FROM certificates WHERE serial = ?`, serial)
	c, err := scanCertificate(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Certificate{}, fmt.Errorf("store: certificate %s: %w", serial, store.ErrNotFound)
	}
	if err != nil {
		return store.Certificate{}, fmt.Errorf("store: certificate %s: %w", serial, err)
	}
	return c, nil
}

// certificateByThumbprint is CertificateByThumbprint's query. Saying that
// the thumbprint is not empty lets SQLite use the partial index
// certificates_thumbprint (thumbprint = ? alone does not imply its WHERE,
// and would scan the table).
const certificateByThumbprint = `SELECT ` + certificateColumns + ` FROM certificates
	WHERE thumbprint = ? AND thumbprint <> ''`

func (r reader) CertificateByThumbprint(ctx context.Context, x5tS256 string) (store.Certificate, error) {
	if x5tS256 == "" {
		return store.Certificate{}, fmt.Errorf("store: certificate by thumbprint: %w", store.ErrNotFound)
	}
	row := r.q.QueryRowContext(ctx, certificateByThumbprint, x5tS256)
	c, err := scanCertificate(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Certificate{}, fmt.Errorf("store: certificate by thumbprint %s: %w", x5tS256, store.ErrNotFound)
	}
	if err != nil {
		return store.Certificate{}, fmt.Errorf("store: certificate by thumbprint %s: %w", x5tS256, err)
	}
	return c, nil
}

// deviceCertificates reads a device's certificates by certificates_ek_hash
// (TestDeviceCertificatesPlan); see planStable for the unary plus.
const deviceCertificates = `SELECT ` + certificateColumns + ` FROM certificates
	WHERE ek_hash = +?1 ORDER BY not_before, serial`

func (r reader) DeviceCertificates(ctx context.Context, ekHash string) ([]store.Certificate, error) {
	rows, err := r.q.QueryContext(ctx, deviceCertificates, ekHash)
	if err != nil {
		return nil, fmt.Errorf("store: certificates of device %s: %w", ekHash, err)
	}
	cs, err := scanAll(rows, scanCertificate)
	if err != nil {
		return nil, fmt.Errorf("store: certificates of device %s: %w", ekHash, err)
	}
	return cs, nil
}

// currentDeviceCertificates reads a device's live certificates by
// certificates_current (TestCurrentDeviceCertificatesPlan). See planStable
// for the unary plus on each parameter: without it, SQLite re-prepared the
// statement on every call (BenchmarkDeviceCertificateReads: 105 allocations
// a call, 72 with it, and about a third of the time).
const currentDeviceCertificates = `SELECT ` + certificateColumns + ` FROM certificates
	WHERE ek_hash = +?1 AND revoked_at IS NULL AND not_after > +?2 ORDER BY not_before, serial`

func (r reader) CurrentDeviceCertificates(ctx context.Context, ekHash string, at time.Time) ([]store.Certificate, error) {
	rows, err := r.q.QueryContext(ctx, currentDeviceCertificates, ekHash, micros(at))
	if err != nil {
		return nil, fmt.Errorf("store: current certificates of device %s: %w", ekHash, err)
	}
	cs, err := scanAll(rows, scanCertificate)
	if err != nil {
		return nil, fmt.Errorf("store: current certificates of device %s: %w", ekHash, err)
	}
	return cs, nil
}

// planStable: SQLite (3.54, as bundled by mattn/go-sqlite3) marks a
// statement for re-preparation on every new binding when the planner
// compared a bare parameter with another expression, as it does for an
// ORDER BY (or min()) over a column constrained by "= ?": every run then
// parses and plans the query again, which for these recursive queries cost
// more than running them. A parameter written +?N is an expression, not a
// bare parameter; its value, affinity and the index used are the same
// (TestDeviceIdentitiesPlan, TestIdentityHoldersPlan), and the prepared
// statement is reused.

// deviceIdentities skips through the index certificates_identities one
// identity at a time (the recursive part seeks the next spiffe_id after the
// last, by ORDER BY ... LIMIT 1: SQLite answers min() with a WHERE by
// reading every matching entry), then keeps those with a live certificate,
// found by one seek on not_after: its cost grows with the identities the
// device held, not with the certificates it renewed. See planStable for
// the unary plus on each parameter.
const deviceIdentities = `WITH RECURSIVE ids(id) AS (
		SELECT (SELECT spiffe_id FROM certificates WHERE ek_hash = +?1 AND revoked_at IS NULL
			ORDER BY spiffe_id LIMIT 1)
		UNION ALL
		SELECT (SELECT spiffe_id FROM certificates WHERE ek_hash = +?1 AND revoked_at IS NULL AND spiffe_id > ids.id
			ORDER BY spiffe_id LIMIT 1)
		FROM ids WHERE ids.id IS NOT NULL
	)
	SELECT ids.id FROM ids WHERE ids.id IS NOT NULL AND EXISTS (SELECT 1 FROM certificates c
		WHERE c.ek_hash = +?1 AND c.spiffe_id = ids.id AND c.revoked_at IS NULL AND c.not_after > +?2)
	ORDER BY ids.id`

func (r reader) DeviceIdentities(ctx context.Context, ekHash string, at time.Time) ([]string, error) {
	rows, err := r.q.QueryContext(ctx, deviceIdentities, ekHash, micros(at))
	if err != nil {
		return nil, fmt.Errorf("store: identities of device %s: %w", ekHash, err)
	}
	ids, err := scanAll(rows, func(s scanner) (string, error) {
		var id string
		err := s.Scan(&id)
		return id, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: identities of device %s: %w", ekHash, err)
	}
	return ids, nil
}

// identityHolders skips through the index certificates_holders one
// device at a time (the recursive part seeks the next ek_hash after the
// last, by ORDER BY ... LIMIT 1: SQLite answers min() with a WHERE by
// reading every matching entry, one per certificate), then keeps the active devices with a live certificate, found by
// one seek on not_after: its cost grows with the devices that held the
// identity, not with their certificates.
// See planStable for the unary plus on each parameter.
const identityHolders = `WITH RECURSIVE held(ek) AS (
		SELECT (SELECT ek_hash FROM certificates WHERE spiffe_id = +?1 AND revoked_at IS NULL
			ORDER BY ek_hash LIMIT 1)
		UNION ALL
		SELECT (SELECT ek_hash FROM certificates WHERE spiffe_id = +?1 AND revoked_at IS NULL AND ek_hash > held.ek
			ORDER BY ek_hash LIMIT 1)
		FROM held WHERE held.ek IS NOT NULL
	)
	SELECT held.ek FROM held JOIN devices d ON d.ek_hash = held.ek
	WHERE d.status = 'active' AND EXISTS (SELECT 1 FROM certificates c
		WHERE c.spiffe_id = +?1 AND c.ek_hash = held.ek AND c.revoked_at IS NULL AND c.not_after > +?2)
	ORDER BY held.ek`

func (r reader) IdentityHolders(ctx context.Context, spiffeID string, at time.Time) ([]string, error) {
	rows, err := r.q.QueryContext(ctx, identityHolders, spiffeID, micros(at))
	if err != nil {
		return nil, fmt.Errorf("store: holders of %s: %w", spiffeID, err)
	}
	hs, err := scanAll(rows, func(s scanner) (string, error) {
		var h string
		err := s.Scan(&h)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: holders of %s: %w", spiffeID, err)
	}
	return hs, nil
}

func (r reader) Revocations(ctx context.Context, unexpiredAt time.Time) ([]store.Revocation, error) {
	after := int64(-1 << 63)
	if !unexpiredAt.IsZero() {
		after = micros(unexpiredAt)
	}
	rows, err := r.q.QueryContext(ctx, `SELECT serial, revoked_at, revocation_reason FROM certificates
		WHERE revoked_at IS NOT NULL AND not_after > ? ORDER BY serial`, after)
	if err != nil {
		return nil, fmt.Errorf("store: list revocations: %w", err)
	}
	rs, err := scanAll(rows, func(s scanner) (store.Revocation, error) {
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

// InsertCertificate first holds the device: a conditional UPDATE that
// changes nothing but matches only an active device, so its row count says
// whether the device may get a certificate, and the row lock it takes,
// held until commit, orders it with SetDeviceStatus on any database: a
// disable that updated the device first makes this match nothing
// (ErrDeviceDisabled); one that comes after waits for this transaction,
// and its next statement then finds the certificate and revokes it.
func (w writer) InsertCertificate(ctx context.Context, c store.Certificate) error {
	if err := w.holdActiveDevice(ctx, c); err != nil {
		return err
	}
	_, err := w.q.ExecContext(ctx, `INSERT INTO certificates (`+certificateColumns+`, thumbprint)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, '', ?)`,
		c.Serial, c.SPIFFEID, c.EKHash, micros(c.NotBefore), micros(c.NotAfter), c.EvidenceDigest,
		c.PolicyVersion, c.DER, c.Thumbprint())
	if err != nil {
		return fmt.Errorf("store: insert certificate %s: %w", c.Serial, classify(err))
	}
	return nil
}

// holdActiveDevice locks c's device if it is active.
func (w writer) holdActiveDevice(ctx context.Context, c store.Certificate) error {
	res, err := w.q.ExecContext(ctx, `UPDATE devices SET updated_at = updated_at
		WHERE ek_hash = ? AND status = 'active'`, c.EKHash)
	if err != nil {
		return fmt.Errorf("store: insert certificate %s: device %s: %w", c.Serial, c.EKHash, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: insert certificate %s: device %s: %w", c.Serial, c.EKHash, err)
	}
	if n == 1 {
		return nil
	}
	if _, err := reader(w).Device(ctx, c.EKHash); err != nil {
		return fmt.Errorf("store: insert certificate %s: %w", c.Serial, err)
	}
	return fmt.Errorf("store: insert certificate %s: device %s: %w", c.Serial, c.EKHash, store.ErrDeviceDisabled)
}

// RevokeCertificate revokes the certificate with one conditional UPDATE,
// whose row count says whether this call revoked it, so of concurrent
// revocations exactly one succeeds on any database; then the tokens bound
// to it (revokeCertificatesWhere), all in a savepoint.
func (w writer) RevokeCertificate(ctx context.Context, serial, reason string, at time.Time) (store.Revoked, error) {
	var revoked store.Revoked
	err := w.savepoint(ctx, "revoke_certificate", func() error {
		var err error
		revoked, err = w.revokeCertificatesWhere(ctx, `serial = ?`, []any{serial}, reason, at)
		if err != nil {
			return fmt.Errorf("store: revoke certificate %s: %w", serial, err)
		}
		if len(revoked.Certificates) == 1 {
			return nil
		}
		if _, err := reader(w).Certificate(ctx, serial); err != nil {
			return err
		}
		return fmt.Errorf("store: revoke certificate %s: already revoked: %w", serial, store.ErrConflict)
	})
	if err != nil {
		return store.Revoked{}, err
	}
	return revoked, nil
}

// holdCertificateQuery is holdCertificate's statement. Saying that the
// thumbprint is not empty lets SQLite use certificates_thumbprint, as in
// certificateByThumbprint. It sets a column that no index and no index's
// WHERE names, to itself: SQLite then rewrites no index entry and, the
// row's bytes being unchanged, no page (setting revoked_at, which four
// partial indexes' WHERE names, deleted and reinserted an entry in each,
// four pages more in every exchange's COMMIT; TestHoldCertificateWritesNothing).
const holdCertificateQuery = `UPDATE certificates SET revocation_reason = revocation_reason
	WHERE thumbprint = ? AND thumbprint <> '' AND revoked_at IS NULL`

// holdCertificate locks the certificate t is bound to (its CNF) if it is
// not revoked, as holdActiveDevice and holdParent do: a revocation that
// updated the certificate first makes this match nothing
// (ErrCertificateRevoked); one that comes after waits for this
// transaction, and its next statement then finds t by its cnf. A CNF that
// is no stored certificate's thumbprint holds nothing.
func (w writer) holdCertificate(ctx context.Context, t store.Token) error {
	res, err := w.q.ExecContext(ctx, holdCertificateQuery, t.CNF)
	if err != nil {
		return fmt.Errorf("store: insert token %q: certificate %s: %w", t.JTI, t.CNF, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: insert token %q: certificate %s: %w", t.JTI, t.CNF, err)
	}
	if n == 1 {
		return nil
	}
	c, err := reader(w).CertificateByThumbprint(ctx, t.CNF)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("store: insert token %q: %w", t.JTI, err)
	}
	return fmt.Errorf("store: insert token %q: certificate %s: %w", t.JTI, c.Serial, store.ErrCertificateRevoked)
}

// backfillCertificateRevocations is the Go side of migration
// 0008_certificate_revocations: it stores the thumbprint of every
// certificate stored before it (SQL has no SHA-256 here), then appends a
// revocation event for each certificate already revoked, oldest
// revocation first, so that verifiers following the feed learn them too.
// Tokens bound to those certificates are not revoked here: the token
// service refuses them by their certificate (CertificateByThumbprint).
func backfillCertificateRevocations(ctx context.Context, q querier) error {
	rows, err := q.QueryContext(ctx, `SELECT serial, der FROM certificates WHERE thumbprint = ''`)
	if err != nil {
		return fmt.Errorf("backfill thumbprints: %w", err)
	}
	certs, err := scanAll(rows, func(s scanner) (c store.Certificate, err error) { return c, s.Scan(&c.Serial, &c.DER) })
	if err != nil {
		return fmt.Errorf("backfill thumbprints: %w", err)
	}
	for _, c := range certs {
		if _, err := q.ExecContext(ctx, `UPDATE certificates SET thumbprint = ? WHERE serial = ?`, c.Thumbprint(), c.Serial); err != nil {
			return fmt.Errorf("backfill thumbprint of %s: %w", c.Serial, err)
		}
	}
	rows, err = q.QueryContext(ctx, `SELECT serial, revoked_at, revocation_reason FROM certificates
		WHERE revoked_at IS NOT NULL ORDER BY revoked_at, serial`)
	if err != nil {
		return fmt.Errorf("backfill certificate revocation events: %w", err)
	}
	revs, err := scanAll(rows, func(s scanner) (v store.Revocation, err error) {
		var at int64
		err = s.Scan(&v.Serial, &at, &v.Reason)
		v.RevokedAt = fromMicros(at)
		return v, err
	})
	if err != nil {
		return fmt.Errorf("backfill certificate revocation events: %w", err)
	}
	for _, v := range revs {
		if err := (writer{q}).appendRevocations(ctx, []string{v.Serial}, nil, v.Reason, v.RevokedAt); err != nil {
			return fmt.Errorf("backfill %w", err)
		}
	}
	return nil
}
