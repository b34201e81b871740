package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/internal/store"
)

// CRLValidity is how long a CRL is valid (its nextUpdate): relying parties
// fetch a fresh one within it.
const CRLValidity = time.Hour

// revocationReader is what CRL reads of the store.
type revocationReader interface {
	Revocations(ctx context.Context, unexpiredAt time.Time) ([]store.Revocation, error)
}

// CRLRefresh is how long replicas serve a stored CRL before one of them
// produces the next, when no revocation has committed meanwhile: well
// within CRLValidity.
const CRLRefresh = 5 * time.Minute

// CRL signs with the issuing CA a fresh CRL, numbered by now's Unix time,
// of every certificate in st that is revoked and not expired at now.
func CRL(ctx context.Context, st revocationReader, c *ca.CA, now time.Time) ([]byte, error) {
	return crlNumbered(ctx, st, c, now, uint64(now.Unix()))
}

// crlStore is what SharedCRL reads and writes of the store.
type crlStore interface {
	revocationReader
	LatestRevocationSeq(ctx context.Context) (uint64, error)
	LatestCRL(ctx context.Context) (store.CRL, error)
	PutCRL(ctx context.Context, c store.CRL) error
}

// SharedCRL returns the CRL every replica serves: the stored one while it
// is current (no revocation event has committed since it was produced, and
// it is younger than CRLRefresh), else a new one, stored fenced on its
// number, so that one replica produces it and the others serve it. If
// another replica stored one first, that one is served when it is as
// current as ours; otherwise ours, unstored, and the next request
// produces again.
func SharedCRL(ctx context.Context, st crlStore, c *ca.CA, now time.Time) ([]byte, error) {
	// Read before the revocations: every revocation up to seq is listed.
	seq, err := st.LatestRevocationSeq(ctx)
	if err != nil {
		return nil, err
	}
	stored, err := st.LatestCRL(ctx)
	number := uint64(now.Unix())
	switch {
	case err == nil:
		if stored.RevocationSeq >= seq && now.Sub(stored.ProducedAt) < CRLRefresh {
			return stored.DER, nil
		}
		number = max(number, stored.Number+1)
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	der, err := crlNumbered(ctx, st, c, now, number)
	if err != nil {
		return nil, err
	}
	err = st.PutCRL(ctx, store.CRL{Number: number, RevocationSeq: seq, ProducedAt: now, DER: der})
	if errors.Is(err, store.ErrConflict) {
		if won, err := st.LatestCRL(ctx); err == nil && won.RevocationSeq >= seq {
			return won.DER, nil
		}
		return der, nil
	}
	if err != nil {
		return nil, err
	}
	return der, nil
}

// crlReasons maps sigil's certificate revocation reasons to RFC 5280
// CRLReason codes. A device disabled is taken out of service: cessation
// of operation (an operator who suspects a compromise revokes with
// store.ReasonKeyCompromise). A change of trust — a failed or overdue
// attestation, a policy that no longer permits the identity — withdraws
// the privilege: nothing says the key left the TPM.
var crlReasons = map[string]int{
	store.ReasonDeviceDisabled:       ca.ReasonCessationOfOperation,
	store.ReasonAttestationFailed:    ca.ReasonPrivilegeWithdrawn,
	store.ReasonAttestationExpired:   ca.ReasonPrivilegeWithdrawn,
	store.ReasonPolicyChanged:        ca.ReasonPrivilegeWithdrawn,
	store.ReasonKeyCompromise:        ca.ReasonKeyCompromise,
	store.ReasonAffiliationChanged:   ca.ReasonAffiliationChanged,
	store.ReasonSuperseded:           ca.ReasonSuperseded,
	store.ReasonCessationOfOperation: ca.ReasonCessationOfOperation,
	store.ReasonPrivilegeWithdrawn:   ca.ReasonPrivilegeWithdrawn,
}

// CRLReason is the RFC 5280 CRLReason of a stored revocation reason; a
// revocation re-applied after a restore keeps its original's. Any other
// reason is unspecified (0), which the CRL leaves out.
func CRLReason(reason string) int {
	return crlReasons[strings.TrimPrefix(reason, ReappliedPrefix)]
}

// crlNumbered is CRL with the given CRL number.
func crlNumbered(ctx context.Context, st revocationReader, c *ca.CA, now time.Time, number uint64) ([]byte, error) {
	revs, err := st.Revocations(ctx, now)
	if err != nil {
		return nil, err
	}
	list := make([]ca.Revoked, 0, len(revs))
	for _, r := range revs {
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("daemon: crl: stored serial %q is not hex", r.Serial)
		}
		list = append(list, ca.Revoked{Serial: serial, At: r.RevokedAt, Reason: CRLReason(r.Reason)})
	}
	return c.CRL(new(big.Int).SetUint64(number), list, CRLValidity)
}
