package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/internal/ssf"
)

// openSSF builds the Shared Signals transmitter when receivers are
// configured, else returns nil: its SETs are signed with the token keys,
// receivers authenticate with bearer tokens the token service issued, and
// push goes only to the configured endpoints, trusting ssf.push_roots.
func (d *Daemon) openSSF(reg prometheus.Registerer) (*ssf.Transmitter, error) {
	c := d.cfg.SSF
	if len(c.Receivers) == 0 {
		return nil, nil
	}
	client, err := pushClient(c.PushRoots)
	if err != nil {
		return nil, err
	}
	receivers := make([]ssf.Receiver, len(c.Receivers))
	for i, r := range c.Receivers {
		receivers[i] = ssf.Receiver{ID: r.ID, PushEndpoints: r.PushEndpoints}
	}
	return ssf.New(ssf.Config{
		Issuer: d.cfg.TokenIssuer(), Audience: d.cfg.SSFAudience(), Receivers: receivers,
		Keys: d.keys, Auth: d.tokens, Store: d.store, PushClient: client, Log: d.log,
		StreamsPerReceiver: c.StreamsPerReceiver, Registerer: reg,
	})
}

// pushClient is the HTTP client of push delivery: TLS 1.2 or later to the
// CAs in roots (the system's if none).
func pushClient(roots []string) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(roots) > 0 {
		pool := x509.NewCertPool()
		for _, path := range roots {
			pem, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("daemon: ssf.push_roots: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("daemon: ssf.push_roots: %s holds no PEM certificate", path)
			}
		}
		tc.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig, tr.Proxy = tc, nil
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, nil
}
