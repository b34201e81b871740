package tpm_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"testing"

	"github.com/google/go-attestation/attest"
	"github.com/sigil-dev/sigil/tpm"
)

// Latency of the workload's TPM operations on a swtpm. Each reports ms/op.

func BenchmarkNewAK(b *testing.B) {
	for _, alg := range []attest.Algorithm{attest.ECDSA, attest.RSA} {
		b.Run(string(alg), func(b *testing.B) {
			tt := open(b, sharedTPM(b))
			ctx := testCtx(b)
			for b.Loop() {
				if _, err := tt.NewAK(ctx, tpm.AKAlgorithm(alg)); err != nil {
					b.Fatal(err)
				}
			}
			reportMS(b)
		})
	}
}

func BenchmarkActivateCredential(b *testing.B) {
	tt := open(b, sharedTPM(b))
	ak := newAK(b, tt)
	ek := ekOf[*rsa.PublicKey](b, tt)
	_, cred := attestChallenge(b, ek, ak)
	ctx := testCtx(b)
	for b.Loop() {
		if _, err := ak.ActivateCredential(ctx, ek, cred); err != nil {
			b.Fatal(err)
		}
	}
	reportMS(b)
}

func BenchmarkQuote(b *testing.B) {
	tests := []struct {
		name  string
		banks []attest.HashAlg
	}{
		{"sha1+sha256", nil},
		{"sha256", []attest.HashAlg{attest.HashSHA256}},
	}
	_, tt := bootedTPM(b)
	ak := newAK(b, tt)
	n := nonce(b)
	for _, tc := range tests {
		b.Run(tc.name, func(b *testing.B) {
			ctx := testCtx(b)
			for b.Loop() {
				if _, err := ak.Quote(ctx, n, tc.banks...); err != nil {
					b.Fatal(err)
				}
			}
			reportMS(b)
		})
	}
}

func BenchmarkNewKey(b *testing.B) {
	tt := open(b, sharedTPM(b))
	ak := newAK(b, tt)
	n := nonce(b)
	ctx := testCtx(b)
	for b.Loop() {
		if _, err := ak.NewKey(ctx, n); err != nil {
			b.Fatal(err)
		}
	}
	reportMS(b)
}

func BenchmarkSign(b *testing.B) {
	tt := open(b, sharedTPM(b))
	key := newKey(b, newAK(b, tt), nonce(b))
	digest := sha256.Sum256([]byte("bench"))
	for b.Loop() {
		if _, err := key.Sign(nil, digest[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
	reportMS(b)
}

func reportMS(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
}
