package signer_test

import (
	"context"
	"crypto/elliptic"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/signer"
)

// FuzzVerify feeds the verifier's parsing path, seeded with a valid token
// and every attack token. It must not panic, must fail only with a
// *TokenError, and may accept only tokens that satisfy every rule.
func FuzzVerify(f *testing.F) {
	key := newECKey(f, elliptic.P256())
	const kid = "fuzz-key"
	now := func() time.Time { return t0 }
	keys := staticKeys{kid: {KID: kid, Alg: "ES256", Key: key.Public()}}
	v, err := signer.NewVerifier(issuer, keys, signer.WithClock(now))
	if err != nil {
		f.Fatal(err)
	}
	k := newKit(f, t0, key, "ES256", kid)
	for _, a := range attacks() {
		f.Add(a.token(k))
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(context.Background(), token, callerB.ID)
		var te *signer.TokenError
		switch {
		case err != nil && (!errors.As(err, &te) || (te.Kind != signer.ErrMalformed && te.Kind != signer.ErrInvalid)):
			t.Fatalf("error is not a TokenError: %v", err)
		case err != nil:
			return
		case len(token) > signer.MaxTokenSize || strings.Count(token, ".") != 2:
			t.Fatalf("accepted a token of %d bytes with %d dots", len(token), strings.Count(token, "."))
		case c.Issuer != issuer || c.Subject == "" || !slices.Contains(c.Audience, callerB.ID):
			t.Fatalf("accepted claims %+v", c)
		case !t0.Before(c.Expiry.Add(signer.DefaultLeeway)) || t0.Add(signer.DefaultLeeway).Before(c.NotBefore):
			t.Fatalf("accepted a token outside its validity: %+v", c)
		}
	})
}
