package verify

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/testenv"
)

// BenchmarkVerify times Verify (cached JWKS, cnf check, revocation set),
// the Middleware, a raw ES256 verification of the same token (SHA-256 of
// the signing input plus ecdsa.Verify) and a bare ecdsa.Verify over a
// precomputed digest, interleaved in one loop, and reports rates relative
// to the raw ones (a rate ratio is the raw time over the measured time).
//
// The criterion is middleware-es256-ratio ≥ 0.8: the Middleware verifies
// at least 80% as many tokens per second as raw ES256 verification.
// es256-rate-ratio is the same for Verify alone; rate-ratio and
// middleware-rate-ratio compare with the bare ecdsa.Verify, a stricter
// floor than the criterion's.
func BenchmarkVerify(b *testing.B) {
	e := newEnv(b)
	f := newFeedServer(b)
	cfg := e.config(b)
	cfg.Revocation.FeedURL = f.URL
	cfg.Registerer = prometheus.NewRegistry() // metrics on, as a service would have them
	v := e.verifier(b, cfg)
	testenv.WaitFor(b, 5*time.Second, "feed up", func() bool { return v.revs.down() == 0 })
	tok := e.token(b, e.mint, e.certA)
	if _, err := v.Verify(b.Context(), tok, e.certA); err != nil {
		b.Fatalf("Verify: %v", err)
	}
	pub := e.key.Public().(*ecdsa.PublicKey)
	i := strings.LastIndexByte(tok, '.')
	digest := sha256.Sum256([]byte(tok[:i]))
	sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, digest[:], r, s) {
		b.Fatal("raw signature does not verify")
	}
	h := v.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	req := httptest.NewRequest("GET", "https://orders.test/", nil)
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{e.certA}, VerifiedChains: [][]*x509.Certificate{{e.certA}}}
	req.Header.Set("Authorization", "Bearer "+tok)

	var tVerify, tMiddleware, tRaw, tES256 time.Duration
	ctx := b.Context()
	for b.Loop() {
		t0 := time.Now()
		if _, err := v.Verify(ctx, tok, e.certA); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		t2 := time.Now()
		if !ecdsa.Verify(pub, digest[:], r, s) {
			b.Fatal("ecdsa.Verify failed")
		}
		t3 := time.Now()
		d := sha256.Sum256([]byte(tok[:i]))
		if !ecdsa.Verify(pub, d[:], r, s) {
			b.Fatal("ecdsa.Verify failed")
		}
		t4 := time.Now()
		tES256 += t4.Sub(t3)
		if w.Code != 200 {
			b.Fatalf("middleware status %d", w.Code)
		}
		tVerify, tMiddleware, tRaw = tVerify+t1.Sub(t0), tMiddleware+t2.Sub(t1), tRaw+t3.Sub(t2)
	}
	n := float64(b.N)
	b.ReportMetric(float64(tVerify.Nanoseconds())/n, "verify-ns/op")
	b.ReportMetric(float64(tMiddleware.Nanoseconds())/n, "middleware-ns/op")
	b.ReportMetric(float64(tRaw.Nanoseconds())/n, "ecdsa-ns/op")
	b.ReportMetric(float64(tES256.Nanoseconds())/n, "es256-ns/op")
	b.ReportMetric(float64(tRaw)/float64(tVerify), "rate-ratio")
	b.ReportMetric(float64(tRaw)/float64(tMiddleware), "middleware-rate-ratio")
	b.ReportMetric(float64(tES256)/float64(tVerify), "es256-rate-ratio")
	b.ReportMetric(float64(tES256)/float64(tMiddleware), "middleware-es256-ratio")
}
