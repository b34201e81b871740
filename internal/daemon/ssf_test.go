package daemon_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"testing"

	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
)

// TestServesSharedSignals: sigild serves the Shared Signals transmitter
// when ssf.receivers names one, with the token issuer as its issuer, and
// not otherwise.
func TestServesSharedSignals(t *testing.T) {
	s := newStack(t)
	for _, tc := range []struct {
		name      string
		receivers []config.SSFReceiver
		status    int
	}{
		{"no receivers", nil, http.StatusNotFound},
		{"a receiver", []config.SSFReceiver{{ID: "spiffe://sigil.test/workload/siem"}}, http.StatusOK},
	} {
		s.cfg.SSF.Receivers = tc.receivers
		d, err := daemon.New(t.Context(), s.cfg, s.log)
		if err != nil {
			t.Fatal(err)
		}
		pki, err := daemon.Load(t.Context(), s.cfg, s.h)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- d.ServeListener(ctx, ln) }()
		roots := x509.NewCertPool()
		roots.AddCert(pki.Root)
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
		get := func(path string) (int, map[string]any) {
			resp, err := client.Get("https://" + ln.Addr().String() + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var m map[string]any
			json.NewDecoder(resp.Body).Decode(&m)
			return resp.StatusCode, m
		}
		status, meta := get("/.well-known/ssf-configuration")
		if status != tc.status || (status == http.StatusOK && meta["issuer"] != s.cfg.TokenIssuer()) {
			t.Errorf("%s: metadata %d %v, want %d with issuer %s", tc.name, status, meta, tc.status, s.cfg.TokenIssuer())
		}
		if status, body := get("/ssf/stream"); tc.status == http.StatusOK && (status != http.StatusUnauthorized || body["error"] != "invalid_token") {
			t.Errorf("%s: streams without a token: %d %v, want 401 invalid_token", tc.name, status, body)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Serve: %v", err)
		}
		d.Close()
	}
}
