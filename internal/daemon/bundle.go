package daemon

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/signer"
)

// bundleKeys is what SPIFFEBundle reads of the token signing keys.
type bundleKeys interface {
	Status() []signer.KeyState
	Lookup(kid string) (signer.PublicKey, bool)
}

// spiffeBundle is the JSON of a SPIFFE bundle (SPIFFE Trust Domain and
// Bundle, §4): a JWK Set with the SPIFFE members.
type spiffeBundle struct {
	Keys        []jose.JSONWebKey `json:"keys"`
	Sequence    uint64            `json:"spiffe_sequence"`
	RefreshHint int64             `json:"spiffe_refresh_hint"`
}

// SPIFFEBundle returns the trust domain's bundle in the SPIFFE bundle
// format, for SPIRE or go-spiffe federation: the root CA as the x509-svid
// authority (x5c), and the token signing keys published at now as
// jwt-svid authorities (kid, alg), sorted by kid so that every replica
// writes the same bytes.
//
// spiffe_sequence is the Unix time, in milliseconds, of the latest change to
// that content that has taken effect: the root's notBefore, each key's
// first sighting (when it is published) and each withdrawal that has
// passed. These come from what replicas share (the HSM's certificates,
// the keys' first-seen times in the store, the rotation settings), so
// every replica answers the same sequence, and it grows with every
// change. spiffe_refresh_hint is half the rotation lead (10 s to 5 min):
// a federated party that honours it holds a new key before it signs.
func SPIFFEBundle(root *x509.Certificate, keys bundleKeys, lead time.Duration, now time.Time) ([]byte, error) {
	b := spiffeBundle{
		Keys:        []jose.JSONWebKey{{Key: root.PublicKey, Certificates: []*x509.Certificate{root}, Use: "x509-svid"}},
		RefreshHint: int64(min(max(lead/2, 10*time.Second), 5*time.Minute) / time.Second),
	}
	changed := root.NotBefore
	var jwt []jose.JSONWebKey
	for _, st := range keys.Status() {
		if !st.Withdrawn.IsZero() && !now.Before(st.Withdrawn) {
			changed = latest(changed, st.Withdrawn)
			continue
		}
		pub, ok := keys.Lookup(st.KID)
		if !ok || st.Seen.After(now) {
			continue
		}
		changed = latest(changed, st.Seen)
		jwt = append(jwt, jose.JSONWebKey{Key: pub.Key, KeyID: pub.KID, Algorithm: pub.Alg, Use: "jwt-svid"})
	}
	slices.SortFunc(jwt, func(a, b jose.JSONWebKey) int { return strings.Compare(a.KeyID, b.KeyID) })
	b.Keys = append(b.Keys, jwt...)
	b.Sequence = uint64(changed.UnixMilli())
	out, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("daemon: spiffe bundle: %w", err)
	}
	return out, nil
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
