package verify

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/token"
)

// signCertSET signs a certificate revocation event for cert as sigild
// does, with key.
func signCertSET(t testing.TB, key *hsm.Key, cert *x509.Certificate, seq uint64) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("secevent+jwt").WithHeader("kid", key.KID())
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: cryptosigner.Opaque(key)}, opts)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	now, x5t := time.Now().Unix(), token.Thumbprint(cert.Raw)
	payload, _ := json.Marshal(map[string]any{
		"iss": issuer, "iat": now, "jti": fmt.Sprintf("revocation-%d", seq), "toe": now,
		"sub_id": map[string]string{"format": "uri", "uri": "ni:///sha-256;" + x5t},
		"events": map[string]any{eventCertificateRevoked: map[string]any{
			"serial": cert.SerialNumber.Text(16), "x5t#S256": x5t, "exp": cert.NotAfter.Unix(), "seq": seq, "reason": "device disabled"}},
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

// The attack: a workload whose certificate sigild revoked keeps calling
// with the tokens it holds. Once the feed publishes the certificate's
// revocation, every token bound to it is refused, whatever its jti, and the
// certificate itself; other certificates are not.
func TestCertificateRevocationFeed(t *testing.T) {
	e := newEnv(t)
	f := newFeedServer(t)
	cfg := e.config(t)
	cfg.Revocation.FeedURL = f.URL
	v := e.verifier(t, cfg)
	tok, other := e.token(t, e.mint, e.certA), e.token(t, e.mint, e.certB)
	testenv.WaitForNil(t, revocationWait, "the feed up and the token accepted", func() error {
		_, err := v.Verify(t.Context(), tok, e.certA)
		return err
	})
	f.add(signCertSET(t, e.key, e.certA, 1))
	took := testenv.WaitFor(t, revocationWait, "the certificate's revocation", func() bool {
		_, err := v.Verify(t.Context(), tok, e.certA)
		return errors.Is(err, ErrInvalidToken) && errors.Is(err, errCertRevoked)
	})
	t.Logf("certificate revocation reached the verifier in %v", took)
	if _, err := v.Verify(t.Context(), e.token(t, e.mint, e.certA), e.certA); !errors.Is(err, errCertRevoked) {
		t.Errorf("a token minted for the revoked certificate later: %v, want refused", err)
	}
	if err := v.CheckCertificate(e.certA); !errors.Is(err, ErrCertificateRevoked) {
		t.Errorf("CheckCertificate(revoked) = %v, want ErrCertificateRevoked", err)
	}
	if err := v.CheckCertificate(e.certB); err != nil {
		t.Errorf("CheckCertificate(other) = %v", err)
	}
	if _, err := v.Verify(t.Context(), other, e.certB); err != nil {
		t.Errorf("a token of another certificate: %v", err)
	}
}

// The attack on TLS: a client whose certificate is revoked after its first
// connection resumes its TLS session (no certificate is sent again, and
// VerifyPeerCertificate does not run). VerifyConnection runs on the
// resumption and refuses it.
func TestVerifyConnectionRefusesResumedSession(t *testing.T) {
	e := newEnv(t)
	f := newFeedServer(t)
	cfg := e.config(t)
	cfg.Revocation.FeedURL = f.URL
	v := e.verifier(t, cfg)
	client := newTLSCert(t, "client")
	var resumed atomic.Bool
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert, VerifyConnection: func(cs tls.ConnectionState) error {
		resumed.Store(cs.DidResume)
		return v.VerifyConnection(cs)
	}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{client}
	tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	tr.TLSClientConfig.MinVersion = tls.VersionTLS13
	get := func() error {
		defer tr.CloseIdleConnections() // a new handshake each time
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	testenv.WaitForNil(t, revocationWait, "a connection with the feed up", get)
	if err := get(); err != nil || !resumed.Load() {
		t.Fatalf("second connection: %v, resumed %v; want a resumed session", err, resumed.Load())
	}
	f.add(signCertSET(t, e.key, client.Leaf, 1))
	testenv.WaitFor(t, revocationWait, "the certificate's revocation", func() bool {
		return errors.Is(v.CheckCertificate(client.Leaf), ErrCertificateRevoked)
	})
	if err := get(); err == nil || !resumed.Load() {
		t.Fatalf("resumed connection with a revoked certificate: %v, resumed %v; want refused on resumption", err, resumed.Load())
	}
}
