package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/hsmkeys"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/token"
)

const (
	issuer       = "https://sigil.test"
	testAudience = "spiffe://sigil.test/workload/orders"
	caller       = "spiffe://sigil.test/workload/frontend"
)

// clock is real time plus a settable offset, for the Verifier.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time           { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration)  { c.offset.Add(int64(d)) }
func (c *clock) Set(offset time.Duration) { c.offset.Store(int64(offset)) }

// env is a SoftHSM token with two ES256 keys, "jwt" (published) and
// "other" (not published until the test says so), minters for both, two
// client certificates and a switchable JWKS.
type env struct {
	h           *hsm.HSM
	keys, other *signer.KeySet
	mint, mint2 *signer.Minter
	key         *hsm.Key // signs "jwt" tokens, for crafted tokens and SETs
	certA       *x509.Certificate
	certB       *x509.Certificate
	clock       *clock

	jwks    atomic.Pointer[[]byte]
	fetches atomic.Int32
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := t.Context()
	h, err := hsm.Open(ctx, testenv.SoftHSM(t).URI)
	if err != nil {
		t.Fatalf("hsm.Open: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	e := &env{h: h, clock: &clock{}, certA: newCert(t, "a"), certB: newCert(t, "b")}
	e.keys, e.mint = newKeys(t, h, "jwt", hsm.ES256)
	e.other, e.mint2 = newKeys(t, h, "other", hsm.ES256)
	if e.key, err = h.Find(ctx, "jwt"); err != nil {
		t.Fatalf("Find: %v", err)
	}
	e.publish(t, e.keys)
	return e
}

func newKeys(t testing.TB, h *hsm.HSM, name string, alg hsm.Alg) (*signer.KeySet, *signer.Minter) {
	t.Helper()
	if _, err := h.Generate(t.Context(), name, alg); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	opts := []signer.Option{signer.WithLogger(slog.New(slog.DiscardHandler))}
	keys, err := signer.NewKeySet(hsmkeys.New(h), name, &signer.MemorySeen{}, opts...)
	if err != nil {
		t.Fatalf("NewKeySet: %v", err)
	}
	if err := keys.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	m, err := signer.NewMinter(issuer, keys, opts...)
	if err != nil {
		t.Fatalf("NewMinter: %v", err)
	}
	return keys, m
}

// publish makes the JWKS the union of sets' keys.
func (e *env) publish(t testing.TB, sets ...*signer.KeySet) {
	t.Helper()
	var all jose.JSONWebKeySet
	for _, s := range sets {
		b, err := s.JWKS()
		if err != nil {
			t.Fatalf("JWKS: %v", err)
		}
		var one jose.JSONWebKeySet
		if err := json.Unmarshal(b, &one); err != nil {
			t.Fatalf("JWKS: %v", err)
		}
		all.Keys = append(all.Keys, one.Keys...)
	}
	b, _ := json.Marshal(all)
	e.jwks.Store(&b)
}

func (e *env) fetchJWKS(context.Context) ([]byte, error) {
	e.fetches.Add(1)
	return *e.jwks.Load(), nil
}

// config is a Verifier configuration on e's JWKS and clock.
func (e *env) config(t testing.TB) Config {
	return Config{
		Issuer: issuer, Audience: testAudience, JWKS: e.fetchJWKS, Now: e.clock.Now,
		Log: testLogger(t),
	}
}

func (e *env) verifier(t testing.TB, c Config) *Verifier {
	t.Helper()
	v, err := New(t.Context(), c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// token mints a token for testAudience bound to cert, valid for 5 minutes.
func (e *env) token(t testing.TB, m *signer.Minter, cert *x509.Certificate, edit ...func(*token.Claims)) string {
	t.Helper()
	c := token.Claims{
		Subject: "spiffe://sigil.test/user/alice", Audience: []string{testAudience}, ClientID: caller,
		Scope: []string{"orders:read"}, Confirmation: token.Thumbprint(cert.Raw),
		Actor:  &token.Actor{Subject: caller, Actor: &token.Actor{Subject: "spiffe://sigil.test/workload/gateway"}},
		Expiry: time.Now().Add(5 * time.Minute),
	}
	for _, f := range edit {
		f(&c)
	}
	minted, err := m.AccessToken(t.Context(), c)
	if err != nil {
		t.Fatalf("AccessToken: %v", err)
	}
	return minted.Token
}

// claims are valid access token claims for certA, as a map to edit.
func (e *env) claims() map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"iss": issuer, "sub": "spiffe://sigil.test/user/alice", "aud": []string{testAudience},
		"iat": now, "nbf": now, "exp": now + 300, "jti": "crafted-" + strconv.FormatInt(now, 10),
		"client_id": caller, "scope": "orders:read",
		"cnf": map[string]string{"x5t#S256": token.Thumbprint(e.certA.Raw)},
	}
}

// header is a valid protected header for e.key, as a map to edit.
func (e *env) header() map[string]any {
	return map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": e.key.KID()}
}

// craft signs header and claims with key (ES256, P-256) by hand, so that
// tests can put in them what no minter would.
func craft(t testing.TB, header, claims map[string]any, key crypto.Signer) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := b64(h) + "." + b64(c)
	digest := sha256.Sum256([]byte(input))
	der, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		t.Fatalf("signature: %v", err)
	}
	raw := make([]byte, 64)
	sig.R.FillBytes(raw[:32])
	sig.S.FillBytes(raw[32:])
	return input + "." + b64(raw)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// signSET signs a revocation event for jti as sigild does, with key.
func signSET(t testing.TB, key *hsm.Key, iss, jti string, seq uint64) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("secevent+jwt").WithHeader("kid", key.KID())
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: cryptosigner.Opaque(key)}, opts)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	now := time.Now().Unix()
	payload, _ := json.Marshal(map[string]any{
		"iss": iss, "iat": now, "jti": fmt.Sprintf("revocation-%d", seq), "toe": now,
		"sub_id": map[string]string{"format": "opaque", "id": jti},
		"events": map[string]any{eventTokenRevoked: map[string]any{"jti": jti, "seq": seq, "reason": "test"}},
	})
	jws, err := sig.Sign(payload)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatalf("CompactSerialize: %v", err)
	}
	return s
}

// jtiOf returns the jti of a token, unverified.
func jtiOf(t testing.TB, tok string) string {
	t.Helper()
	var parts [3]string
	n := 0
	for i, j := 0, 0; i <= len(tok); i++ {
		if i == len(tok) || tok[i] == '.' {
			parts[n], n, j = tok[j:i], n+1, i+1
		}
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		JTI string `json:"jti"`
	}
	_ = json.Unmarshal(b, &c)
	return c.JTI
}

func newCert(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	return newTLSCert(t, name).Leaf
}

// newTLSCert is a self-signed client certificate and its key.
func newTLSCert(t testing.TB, name string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	cert, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
}

func testLogger(t testing.TB) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// feedServer is sigild's revocation feed: SSE of SETs, id the sequence
// number, resumable with Last-Event-ID; it can be taken down.
type feedServer struct {
	*httptest.Server
	mu      sync.Mutex
	events  []string // events[i] has seq i+1
	down    bool
	changed chan struct{}
	resumes []string // Last-Event-ID of each request
	streams int      // streams being served
}

func newFeedServer(t testing.TB) *feedServer {
	f := &feedServer{changed: make(chan struct{})}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

// add publishes a SET.
func (f *feedServer) add(set string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, set)
	close(f.changed)
	f.changed = make(chan struct{})
}

// setDown takes the feed down (ending open streams) or back up.
func (f *feedServer) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *feedServer) lastResume() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.resumes) == 0 {
		return ""
	}
	return f.resumes[len(f.resumes)-1]
}

// requests returns the Last-Event-ID of every request so far.
func (f *feedServer) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.resumes)
}

// openStreams returns how many streams are being served.
func (f *feedServer) openStreams() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.streams
}

func (f *feedServer) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.resumes = append(f.resumes, r.Header.Get("Last-Event-ID"))
	down := f.down
	if !down {
		f.streams++
	}
	f.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	defer func() { f.mu.Lock(); f.streams--; f.mu.Unlock() }()
	next, _ := strconv.Atoi(r.Header.Get("Last-Event-ID"))
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprint(w, "retry: 1000\n\n: hello\n\n")
	rc := http.NewResponseController(w)
	for {
		f.mu.Lock()
		events, changed, down := f.events[next:], f.changed, f.down
		f.mu.Unlock()
		if down {
			return
		}
		for _, ev := range events {
			next++
			fmt.Fprintf(w, "id: %d\ndata: %s\n\n", next, ev)
		}
		_ = rc.Flush()
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		}
	}
}
