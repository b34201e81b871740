package enroll

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// holders are the other active devices that hold an identity when a device
// asks for it: the fact policy sees as context.other_holders.
type holders struct {
	identity string
	ekHash   string   // the asking device, left out
	others   []string // hex EK hashes, sorted
	digests  [][]byte // the same, as policy.EnrollRequest takes them
}

// otherHolders reads which other active devices hold identity at now.
func otherHolders(ctx context.Context, r store.CertificateReader, identity, ekHash string, now time.Time) (holders, error) {
	all, err := r.IdentityHolders(ctx, identity, now)
	if err != nil {
		return holders{}, fmt.Errorf("enroll: holders of %s: %w", identity, err)
	}
	h := holders{identity: identity, ekHash: ekHash, others: slices.DeleteFunc(all, func(e string) bool { return e == ekHash })}
	for _, e := range h.others {
		d, err := hex.DecodeString(e)
		if err != nil {
			return holders{}, fmt.Errorf("enroll: holders of %s: stored EK hash %q: %w", identity, e, err)
		}
		h.digests = append(h.digests, d)
	}
	return h, nil
}

// recheck reads the holders again in tx, the transaction that stores the
// new certificate, and fails with store.ErrConflict if a device policy did
// not see has come to hold the identity meanwhile: the decision no longer
// stands, and the client tries again.
func (h holders) recheck(ctx context.Context, tx store.Tx, now time.Time) error {
	got, err := otherHolders(ctx, tx, h.identity, h.ekHash, now)
	if err != nil {
		return err
	}
	for _, e := range got.others {
		if !slices.Contains(h.others, e) {
			return fmt.Errorf("%w: device %s came to hold %s while policy decided", store.ErrConflict, e, h.identity)
		}
	}
	return nil
}
