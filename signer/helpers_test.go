package signer_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/hsmkeys"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/token"
)

const (
	issuer    = "https://sigil.test"
	idpIssuer = "https://idp.test"
)

var (
	t0      = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	callerA = caller("a")
	callerB = caller("b")
	callerC = caller("c")
)

func caller(name string) signer.Caller {
	return signer.Caller{
		ID:         "spiffe://sigil.test/workload/" + name,
		Thumbprint: token.Thumbprint([]byte("certificate of " + name)),
		Evidence:   "sha256:evidence-" + name,
		Policy:     "policy-v7",
	}
}

// fakeClock is a settable clock shared by a test's KeySet, Minter and
// Verifier.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is a SoftHSM token with one key "jwt", and a KeySet, Minter and
// Verifier over it on a fake clock.
type env struct {
	clock  *fakeClock
	h      *hsm.HSM
	keys   *signer.KeySet
	mint   *signer.Minter
	verify *signer.Verifier
}

func newEnv(t testing.TB, alg hsm.Alg, opts ...signer.Option) *env {
	t.Helper()
	tok := testenv.SoftHSM(t)
	h, err := hsm.Open(t.Context(), tok.URI)
	if err != nil {
		t.Fatalf("hsm.Open: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	if _, err := h.Generate(t.Context(), "jwt", alg); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	e := &env{clock: &fakeClock{now: t0}, h: h}
	opts = append([]signer.Option{signer.WithClock(e.clock.Now), signer.WithLogger(testLogger(t))}, opts...)
	if e.keys, err = signer.NewKeySet(hsmkeys.New(h), "jwt", &signer.MemorySeen{}, opts...); err != nil {
		t.Fatalf("NewKeySet: %v", err)
	}
	e.refresh(t)
	if e.mint, err = signer.NewMinter(issuer, e.keys, opts...); err != nil {
		t.Fatalf("NewMinter: %v", err)
	}
	if e.verify, err = signer.NewVerifier(issuer, e.keys, opts...); err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return e
}

func (e *env) refresh(t testing.TB) {
	t.Helper()
	if err := e.keys.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
}

// hsmKey returns the latest version of the key, to craft tokens signed by
// a trusted key.
func (e *env) hsmKey(t testing.TB) *hsm.Key {
	t.Helper()
	k, err := e.h.Find(t.Context(), "jwt")
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	return k
}

// accessToken mints an access token for sub and aud, valid for life.
func (e *env) accessToken(t testing.TB, c token.Claims, life time.Duration) (string, *token.Claims) {
	t.Helper()
	c.Expiry = e.clock.Now().Add(life)
	m, err := e.mint.AccessToken(t.Context(), c)
	if err != nil {
		t.Fatalf("AccessToken: %v", err)
	}
	return m.Token, m.Claims
}

func testLogger(t testing.TB) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// kindOf returns the kind of err, a *RuleError or a *TokenError; nil for
// nil. Any other error fails the test.
func kindOf(t testing.TB, err error) error {
	t.Helper()
	var re *signer.RuleError
	var te *signer.TokenError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return re.Kind
	case errors.As(err, &te):
		return te.Kind
	}
	t.Fatalf("error is neither a RuleError nor a TokenError: %v", err)
	return nil
}

// Crafting tokens by hand.

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signFunc signs a JWS signing input.
type signFunc func(input []byte) []byte

// craftRaw assembles a compact JWS from raw header and claims JSON.
func craftRaw(header, claims []byte, sign signFunc) string {
	input := b64(header) + "." + b64(claims)
	return input + "." + b64(sign([]byte(input)))
}

// jwsSign signs like a JOSE library: the digest of alg, ECDSA as raw r||s,
// RSA-PSS or PKCS #1 v1.5.
func jwsSign(t testing.TB, s crypto.Signer, alg string) signFunc {
	return func(input []byte) []byte {
		h, size := crypto.SHA256, 32
		if strings.HasSuffix(alg, "384") {
			h, size = crypto.SHA384, 48
		}
		d := h.New()
		d.Write(input)
		digest := d.Sum(nil)
		var opts crypto.SignerOpts = h
		if strings.HasPrefix(alg, "PS") {
			opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
		}
		sig, err := s.Sign(rand.Reader, digest, opts)
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		if strings.HasPrefix(alg, "ES") {
			return rawECDSA(t, sig, size)
		}
		return sig
	}
}

func rawECDSA(t testing.TB, der []byte, size int) []byte {
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &rs); err != nil {
		t.Fatalf("ECDSA signature: %v", err)
	}
	out := make([]byte, 2*size)
	rs.R.FillBytes(out[:size])
	rs.S.FillBytes(out[size:])
	return out
}

func hmacSign(key []byte, alg string) signFunc {
	return func(input []byte) []byte {
		h := sha256.New
		if alg == "HS512" {
			h = sha512.New
		}
		m := hmac.New(h, key)
		m.Write(input)
		return m.Sum(nil)
	}
}

func noSignature([]byte) []byte { return nil }

func newECKey(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// staticKeys is a PublicKeys of fixed keys, for verifiers without an HSM.
type staticKeys map[string]signer.PublicKey

func (s staticKeys) Lookup(kid string) (signer.PublicKey, bool) {
	k, ok := s[kid]
	return k, ok
}
