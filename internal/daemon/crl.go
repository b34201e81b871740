package daemon

import (
	"context"
	"fmt"
	"math/big"
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

// CRL signs with the issuing CA a fresh CRL, numbered by now's Unix time,
// of every certificate in st that is revoked and not expired at now.
func CRL(ctx context.Context, st revocationReader, c *ca.CA, now time.Time) ([]byte, error) {
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
		list = append(list, ca.Revoked{Serial: serial, At: r.RevokedAt})
	}
	return c.CRL(big.NewInt(now.Unix()), list, CRLValidity)
}
