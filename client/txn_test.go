package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sigil-dev/sigil/verify"
)

// txnRecorder is a server that records the Txn-Token headers it receives.
type txnRecorder struct {
	mu   sync.Mutex
	got  []string
	seen int
}

func (r *txnRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen++
	r.got = append(r.got, req.Header.Values(verify.TxnTokenHeader)...)
}

// txnTestClient returns a Client whose workload is self, with a cached
// access token for each of servers and every server's transport going to
// srv: Transport's decision alone says what srv receives.
func txnTestClient(t *testing.T, self spiffeid.ID, srv *httptest.Server, servers ...spiffeid.ID) *Client {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{self.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	id := &identity{state: &State{Chain: []*x509.Certificate{leaf}}, thumb: "thumb"}
	id.peers.m = make(map[spiffeid.ID]*http.Transport)
	w := &Workload{}
	w.cur.Store(id)
	c := &Client{w: w, tokens: newTokenCache(nil)}
	far := time.Now().Add(time.Hour)
	for _, s := range servers {
		c.tokens.put(cacheKey{thumb: id.thumb, audience: s.String()}, cachedToken{token: "access", refresh: far, expiresAt: far})
		id.peers.m[s] = srv.Client().Transport.(*http.Transport)
	}
	return c
}

// A transaction token goes along only to servers of the workload's own
// trust domain: a server of another trust domain, however alike its name,
// never sees it.
func TestTransportTxnTokenStaysInTrustDomain(t *testing.T) {
	t.Parallel()
	self := spiffeid.RequireFromString("spiffe://example.org/frontend")
	cases := []struct {
		server string
		want   bool
	}{
		{"spiffe://example.org/orders", true},
		{"spiffe://example.org", true},
		{"spiffe://other.example/orders", false},
		{"spiffe://example.org.evil.example/orders", false},
		{"spiffe://evil-example.org/orders", false},
		{"spiffe://example.com/orders", false},
	}
	rec := &txnRecorder{}
	srv := httptest.NewTLSServer(rec)
	t.Cleanup(srv.Close)
	var servers []spiffeid.ID
	for _, tc := range cases {
		servers = append(servers, spiffeid.RequireFromString(tc.server))
	}
	c := txnTestClient(t, self, srv, servers...)
	for i, tc := range cases {
		rec.mu.Lock()
		rec.got, rec.seen = nil, 0
		rec.mu.Unlock()
		ctx := WithTxnToken(context.Background(), "txn-"+tc.server)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/x", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Transport(servers[i]).RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.server, err)
		}
		resp.Body.Close()
		rec.mu.Lock()
		got, seen := rec.got, rec.seen
		rec.mu.Unlock()
		if seen != 1 {
			t.Fatalf("%s: server saw %d requests, want 1", tc.server, seen)
		}
		switch {
		case tc.want && (len(got) != 1 || got[0] != "txn-"+tc.server):
			t.Errorf("%s, of the workload's trust domain: Txn-Token %q, want the transaction token", tc.server, got)
		case !tc.want && len(got) != 0:
			t.Errorf("%s, of another trust domain: received Txn-Token %q", tc.server, got)
		}
	}
}

// Nothing but Transport sends a transaction token: a plain HTTPS host,
// reached with the workload's sigild client, never sees it.
func TestPlainClientSendsNoTxnToken(t *testing.T) {
	t.Parallel()
	rec := &txnRecorder{}
	srv := httptest.NewTLSServer(rec)
	t.Cleanup(srv.Close)
	c := txnTestClient(t, spiffeid.RequireFromString("spiffe://example.org/frontend"), srv)
	c.w.cur.Load().hc = srv.Client()
	ctx := WithTxnToken(context.Background(), "txn")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.SigildClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.seen != 1 || len(rec.got) != 0 {
		t.Errorf("plain host saw %d requests with Txn-Token %q, want 1 without", rec.seen, rec.got)
	}
}
