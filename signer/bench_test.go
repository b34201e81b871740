package signer_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// nsPerOp runs f in b.Loop and returns its cost.
func nsPerOp(b *testing.B, f func()) float64 {
	n := 0
	for b.Loop() {
		f()
		n++
	}
	return float64(b.Elapsed().Nanoseconds()) / float64(n)
}

// BenchmarkMint compares minting an ES256 access token with the raw HSM
// signature it contains, in the same run: of-floor is raw/mint (1 = no
// overhead).
func BenchmarkMint(b *testing.B) {
	e := newEnv(b, hsm.ES256)
	key := e.hsmKey(b)
	digest := sha256.Sum256([]byte("benchmark"))
	var floor float64
	b.Run("hsm-sign", func(b *testing.B) {
		floor = nsPerOp(b, func() {
			if _, err := key.Sign(nil, digest[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		})
	})
	c := token.Claims{Subject: "user@example.com", SubjectIssuer: idpIssuer, Audience: []string{callerC.ID}, ClientID: callerB.ID, Scope: []string{"read"},
		Confirmation: callerB.Thumbprint, Actor: chain(callerB.ID, callerA.ID), Expiry: t0.Add(10 * time.Minute)}
	b.Run("mint", func(b *testing.B) {
		ns := nsPerOp(b, func() {
			if _, err := e.mint.AccessToken(b.Context(), c); err != nil {
				b.Fatal(err)
			}
		})
		b.ReportMetric(floor/ns, "of-floor")
	})
}

// BenchmarkVerify compares Verifier.Verify of an ES256 access token with a
// bare ecdsa.Verify of its signature, in the same run.
func BenchmarkVerify(b *testing.B) {
	e := newEnv(b, hsm.ES256)
	tok, _ := e.accessToken(b, token.Claims{Subject: "user@example.com", SubjectIssuer: idpIssuer, Audience: []string{callerB.ID}, Scope: []string{"read"},
		Confirmation: callerA.Thumbprint, Actor: chain(callerA.ID)}, 10*time.Minute)
	dot := strings.LastIndex(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	pub := e.hsmKey(b).Public().(*ecdsa.PublicKey)
	var floor float64
	b.Run("ecdsa-verify", func(b *testing.B) {
		floor = nsPerOp(b, func() {
			h := sha256.Sum256([]byte(tok[:dot]))
			if !ecdsa.Verify(pub, h[:], r, s) {
				b.Fatal("signature does not verify")
			}
		})
	})
	// verify checks a token seen for the first time: two tokens alternate
	// through a verified-signature cache of one entry, so every call misses.
	other, _ := e.accessToken(b, token.Claims{Subject: "bob@example.com", SubjectIssuer: idpIssuer, Audience: []string{callerB.ID}, Scope: []string{"read"},
		Confirmation: callerA.Thumbprint, Actor: chain(callerA.ID)}, 10*time.Minute)
	b.Run("verify", func(b *testing.B) {
		signer.SetSignatureCacheSize(e.verify, 1)
		toks, i := [2]string{tok, other}, 0
		ns := nsPerOp(b, func() {
			i++
			if _, err := e.verify.Verify(b.Context(), toks[i%2], callerB.ID); err != nil {
				b.Fatal(err)
			}
		})
		b.ReportMetric(floor/ns, "of-floor")
	})
	// verify-again checks a token presented before: its signature is a
	// cache hit.
	b.Run("verify-again", func(b *testing.B) {
		signer.SetSignatureCacheSize(e.verify, 16)
		ns := nsPerOp(b, func() {
			if _, err := e.verify.Verify(b.Context(), tok, callerB.ID); err != nil {
				b.Fatal(err)
			}
		})
		b.ReportMetric(floor/ns, "of-floor")
	})
}
