package hsm_test

import (
	"crypto"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/testenv"
)

func TestZZAlternate(t *testing.T) {
	tok := testenv.SoftHSM(t)
	k := generate(t, open(t, tok.URI, hsm.WithSessions(4, 2*time.Second)), "bench", hsm.ES256)
	raw := rawSigner(&testing.B{}, tok, tok.Module, k.Label())
	d := sha256.Sum256([]byte("x"))
	var tr, th time.Duration
	for i := 0; i < 20000; i++ {
		s := time.Now()
		raw.Sign(nil, d[:], crypto.SHA256)
		m := time.Now()
		k.Sign(nil, d[:], crypto.SHA256)
		e := time.Now()
		tr += m.Sub(s)
		th += e.Sub(m)
	}
	t.Logf("raw %v/op hsm %v/op ratio(rate hsm/raw) %.3f", tr/20000, th/20000, float64(tr)/float64(th))
}
