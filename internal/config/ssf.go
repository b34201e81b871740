package config

import (
	"fmt"
	"net/url"

	"github.com/sigil-dev/sigil/identity"
)

// SSF configures sigild as an OpenID Shared Signals transmitter
// (internal/ssf). It is off while Receivers is empty.
type SSF struct {
	// Audience is the aud of the bearer tokens receivers present: a token
	// sigil issues (policy must permit the audience to the receiver).
	// Default spiffe://TRUST_DOMAIN/sigild/ssf.
	Audience string `yaml:"audience"`
	// Receivers are the workloads that may have streams.
	Receivers []SSFReceiver `yaml:"receivers"`
	// PushRoots are PEM files of the CAs that push endpoints' certificates
	// chain to; empty means the system's roots.
	PushRoots []string `yaml:"push_roots"`
	// StreamsPerReceiver bounds a receiver's streams. Default 4.
	StreamsPerReceiver int `yaml:"streams_per_receiver"`
}

// SSFReceiver is a receiver: the SPIFFE ID its tokens are issued to, and
// the only URLs push delivery may post its SETs to.
type SSFReceiver struct {
	ID            string   `yaml:"id"`
	PushEndpoints []string `yaml:"push_endpoints"`
}

// SSFAudience is the audience of receivers' bearer tokens.
func (c *Config) SSFAudience() string {
	if c.SSF.Audience != "" {
		return c.SSF.Audience
	}
	return "spiffe://" + c.TrustDomain + "/sigild/ssf"
}

func (c *Config) validateSSF(bad reporter) {
	s := c.SSF
	if s.StreamsPerReceiver < 0 {
		bad("ssf.streams_per_receiver", "must not be negative")
	}
	seen := map[string]bool{}
	for i, r := range s.Receivers {
		field := fmt.Sprintf("ssf.receivers[%d]", i)
		if _, err := identity.Workload(r.ID); err != nil {
			bad(field+".id", "%v", err)
		}
		if seen[r.ID] {
			bad(field+".id", "%s is listed twice", r.ID)
		}
		seen[r.ID] = true
		for j, e := range r.PushEndpoints {
			u, err := url.Parse(e)
			if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
				bad(fmt.Sprintf("%s.push_endpoints[%d]", field, j), "want an https:// URL without user or fragment, got %q", e)
			}
		}
	}
}
