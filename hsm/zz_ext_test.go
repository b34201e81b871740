package hsm

import (
	"crypto/elliptic"
	"testing"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/sigil-dev/sigil/testenv"
)

func init() {
	zzSigner = func(t *testing.T) crypto11.Signer {
		tok := testenv.SoftHSM(t)
		c, err := crypto11.Configure(&crypto11.Config{Path: tok.Module, TokenLabel: tok.Label, Pin: tok.PIN, MaxSessions: 16, PoolWaitTimeout: 2 * time.Second})
		if err != nil { t.Fatal(err) }
		s, err := c.GenerateECDSAKeyPairWithLabel([]byte("i"), []byte("l"), elliptic.P256())
		if err != nil { t.Fatal(err) }
		return s
	}
}
