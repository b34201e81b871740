package hsm_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sigil-dev/sigil/hsm"
)

// open opens uri and closes the handle at the end of the test.
// Its logs go to the test's output.
func open(t testing.TB, uri string, opts ...hsm.Option) *hsm.HSM {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	h, err := hsm.Open(t.Context(), uri, append([]hsm.Option{hsm.WithLogger(log)}, opts...)...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func generate(t testing.TB, h *hsm.HSM, name string, alg hsm.Alg) *hsm.Key {
	t.Helper()
	k, err := h.Generate(t.Context(), name, alg)
	if err != nil {
		t.Fatalf("Generate(%s, %s): %v", name, alg, err)
	}
	return k
}

// hashOf and optsOf give the digest and options each algorithm signs with,
// as go-jose and crypto/x509 pass them.
func hashOf(alg hsm.Alg) crypto.Hash {
	if alg == hsm.ES384 {
		return crypto.SHA384
	}
	return crypto.SHA256
}

func optsOf(alg hsm.Alg) crypto.SignerOpts {
	if alg == hsm.PS256 {
		return &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	}
	return hashOf(alg)
}

func digest(alg hsm.Alg, msg string) []byte {
	h := hashOf(alg).New()
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// signVerify signs msg with k and verifies the signature with the standard
// library against k's exported public key.
func signVerify(t testing.TB, k crypto.Signer, alg hsm.Alg, msg string) error {
	t.Helper()
	d := digest(alg, msg)
	sig, err := k.Sign(nil, d, optsOf(alg))
	if err != nil {
		return err
	}
	return verify(k.Public(), alg, d, sig)
}

func verify(pub crypto.PublicKey, alg hsm.Alg, d, sig []byte) error {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(p, d, sig) {
			return errors.New("ECDSA signature does not verify")
		}
		return nil
	case *rsa.PublicKey:
		return rsa.VerifyPSS(p, crypto.SHA256, d, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	}
	return errors.New("unexpected public key type")
}

// counter reads a counter from a registry; labels must match exactly.
func counter(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m.GetLabel(), labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func labelsMatch(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if want[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}
