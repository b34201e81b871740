package config_test

import (
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sigil-dev/sigil/internal/config"
)

const valid = `
listen: 127.0.0.1:9443
trust_domain: sigil.test
store: sqlite:/tmp/x.db
hsm:
  uri: "pkcs11:token=sigil?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin"
ca:
  svid_ttl: 30m
attestation:
  ek_roots: [ek-ca.pem]
  pcrs: [0, 7]
policy:
  dir: policies
`

func TestParseValid(t *testing.T) {
	c, err := config.Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if c.CA.SVIDTTL != 30*time.Minute || c.CA.SVIDMaxTTL != 24*time.Hour {
		t.Errorf("svid ttl %v max %v: want 30m from the file and the 24h default", c.CA.SVIDTTL, c.CA.SVIDMaxTTL)
	}
	if got := c.Attestation.PCRs; len(got) != 2 || got[1] != 7 {
		t.Errorf("pcrs = %v", got)
	}
	if f := c.Tokens.Feed; f.MaxStreams != 1024 || f.MaxStreamsPerIdentity != 16 {
		t.Errorf("revocation_feed = %+v, want the defaults 1024 and 16", f)
	}
	if len(c.Audit.Readers) != 0 {
		t.Errorf("audit.readers = %v, want nobody by default", c.Audit.Readers)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name    string
		replace [2]string
		want    string
	}{
		{"unknown-field", [2]string{"listen:", "lisen:"}, "unknown field"},
		{"bad-listen", [2]string{"127.0.0.1:9443", "nowhere"}, "listen: want host:port"},
		{"bad-trust-domain", [2]string{"sigil.test", "Sigil Test"}, "trust_domain:"},
		{"pin-in-uri", [2]string{"pin-source=file:/run/pin", "pin-value=1234"}, "hsm.uri: pin-value would put the PIN"},
		{"not-a-pkcs11-uri", [2]string{`"pkcs11:`, `"file:`}, "hsm.uri: want an RFC 7512"},
		{"bad-store", [2]string{"sqlite:/tmp/x.db", "mysql://x"}, "store: want"},
		{"bad-store-hides-password", [2]string{"sqlite:/tmp/x.db", "mysql://root:hunter2@db"}, `store: want "sqlite:PATH" or "postgres://…", got a DSN starting "mysql:"`},
		{"pcr-out-of-range", [2]string{"[0, 7]", "[0, 24]"}, "attestation.pcrs[1]: 24 is not a PCR index"},
		{"no-pcrs", [2]string{"[0, 7]", "[]"}, "attestation.pcrs: required"},
		{"no-ek-trust", [2]string{"ek_roots: [ek-ca.pem]", "ek_roots: []"}, "attestation: needs ek_roots or ek_allow"},
		{"bad-duration", [2]string{"svid_ttl: 30m", "svid_ttl: soon"}, `invalid duration "soon"`},
		{"svid-ttl-over-cap", [2]string{"svid_ttl: 30m", "svid_ttl: 48h"}, "ca.svid_max_ttl: 24h0m0s is shorter than ca.svid_ttl"},
		{"public-url-not-http", [2]string{"svid_ttl: 30m", "svid_ttl: 30m\n  public_url: ldap://sigil.test"}, `ca.public_url: want an http:// or https:// URL, got "ldap://sigil.test"`},
		{"public-url-query", [2]string{"svid_ttl: 30m", "svid_ttl: 30m\n  public_url: https://sigil.test/?x=1"}, "ca.public_url: must have no query or fragment"},
		{"no-policy-dir", [2]string{"dir: policies", "dir: \"\""}, "policy.dir: required"},
		{"token-alg-hs256", [2]string{"dir: policies", "dir: policies\ntokens:\n  alg: HS256"}, "tokens.alg: want ES256, ES384 or PS256"},
		{"external-hs256", [2]string{"dir: policies", "dir: policies\ntokens:\n  external_issuers:\n    - {issuer: https://idp, jwks_file: j, algorithms: [HS256]}"}, "HS256 is not allowed"},
		{"feed-one-identity-takes-all", [2]string{"dir: policies", "dir: policies\ntokens:\n  revocation_feed: {max_streams: 8, max_streams_per_identity: 8}"}, "tokens.revocation_feed.max_streams_per_identity: want at least 1 and less than max_streams (8)"},
		{"feed-no-streams", [2]string{"dir: policies", "dir: policies\ntokens:\n  revocation_feed: {max_streams: 0}"}, "tokens.revocation_feed.max_streams: must be positive"},
		{"feed-per-identity-zero", [2]string{"dir: policies", "dir: policies\ntokens:\n  revocation_feed: {max_streams_per_identity: 0}"}, "tokens.revocation_feed.max_streams_per_identity: want at least 1"},
		{"audit-reader-not-spiffe", [2]string{"dir: policies", "dir: policies\naudit:\n  readers: [alice]"}, `audit.readers[0]: "alice" is not a SPIFFE ID`},
		{"issuer-http", [2]string{"dir: policies", "dir: policies\ntokens:\n  issuer: http://localhost:9443"}, "tokens.issuer: want an https:// URL"},
		{"issuer-query", [2]string{"dir: policies", "dir: policies\ntokens:\n  issuer: https://localhost:9443/?tenant=a"}, "tokens.issuer: must have no query or fragment"},
		{"issuer-fragment", [2]string{"dir: policies", "dir: policies\ntokens:\n  issuer: https://localhost:9443#x"}, "tokens.issuer: must have no query or fragment"},
		{"issuer-not-in-certificate", [2]string{"dir: policies", "dir: policies\ntokens:\n  issuer: https://sigil.example:9443"}, `tokens.issuer: host "sigil.example" is not in tls.dns_names`},
		{"svid-outlives-max-age", [2]string{"pcrs: [0, 7]", "pcrs: [0, 7]\n  max_age: 12h"}, "ca.svid_max_ttl: 24h0m0s exceeds attestation.max_age 12h0m0s"},
		{"svid-ttl-outlives-max-age", [2]string{"pcrs: [0, 7]", "pcrs: [0, 7]\n  max_age: 10m"}, "ca.svid_ttl: 30m0s exceeds attestation.max_age 10m0s"},
		{"max-age-zero", [2]string{"pcrs: [0, 7]", "pcrs: [0, 7]\n  max_age: 0s"}, "attestation.max_age: must be positive"},
		{"revoke-fraction-zero", [2]string{"dir: policies", "dir: policies\n  max_revoke_fraction: 0"}, "policy.max_revoke_fraction: 0 is not in (0, 1]"},
		{"revoke-fraction-above-one", [2]string{"dir: policies", "dir: policies\n  max_revoke_fraction: 1.5"}, "policy.max_revoke_fraction: 1.5 is not in (0, 1]"},
		{"policy-operator-not-spiffe", [2]string{"dir: policies", "dir: policies\n  operators: [bob]"}, `policy.operators[0]: "bob" is not a SPIFFE ID`},
		{"act-depth-zero", [2]string{"dir: policies", "dir: policies\ntokens:\n  max_act_depth: 0"}, "tokens.max_act_depth: want 1 to 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Replace(valid, tt.replace[0], tt.replace[1], 1)
			if in == valid {
				t.Fatalf("fixture does not contain %q", tt.replace[0])
			}
			_, err := config.Parse([]byte(in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte("listen: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data)
		if err == nil && c.Validate() != nil {
			t.Fatal("Parse accepted a config that does not validate")
		}
	})
}

// The dev stack's configuration (testenv/sigild.yaml) is valid once
// testenv/up.sh fills in its placeholders.
func TestDevStackConfig(t *testing.T) {
	raw, err := os.ReadFile("../../testenv/sigild.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer("@DIR@", "/srv/sigil", "@PORT@", "8443",
		"@HSM_URI@", "pkcs11:token=sigil?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/srv/sigil/hsm/pin").Replace(string(raw))
	c, err := config.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	// up.sh's SIGIL_SERVER is https://<listen>; an OAuth client compares
	// the metadata's issuer with it (RFC 8414 §3.3).
	if got, want := c.TokenIssuer(), "https://"+c.Listen; got != want {
		t.Errorf("dev stack issuer %s, want SIGIL_SERVER %s", got, want)
	}
}

// Certificates point at ca.public_url for the CRL and issuer, by default
// at the token issuer.
func TestPublicURL(t *testing.T) {
	c := config.Defaults()
	c.Listen, c.TLS.IPAddresses = "127.0.0.1:8443", []string{"127.0.0.1"}
	if got := c.PublicURL(); got != "https://127.0.0.1:8443" {
		t.Errorf("default PublicURL = %s, want the token issuer", got)
	}
	c.CA.PublicURL = "http://pki.example/sigil/"
	if got := c.PublicURL(); got != "http://pki.example/sigil" {
		t.Errorf("PublicURL = %s, want ca.public_url without the trailing slash", got)
	}
}

// TestTokenIssuerDefault: without tokens.issuer, the issuer is the URL
// clients reach sigild at: its listen address if the certificate names it.
func TestTokenIssuerDefault(t *testing.T) {
	tests := []struct {
		name, listen string
		dns, ips     []string
		want         string
	}{
		{"listen on a certified IP", "127.0.0.1:8443", []string{"localhost"}, []string{"127.0.0.1"}, "https://127.0.0.1:8443"},
		{"listen on a certified name", "sigil.example:8443", []string{"localhost", "SIGIL.example"}, nil, "https://sigil.example:8443"},
		{"listen on every address", ":8443", []string{"sigil.example"}, []string{"10.0.0.1"}, "https://sigil.example:8443"},
		{"listen on an uncertified IP", "10.0.0.9:8443", []string{"sigil.example"}, []string{"10.0.0.1"}, "https://sigil.example:8443"},
		{"only IPs certified", "[::]:8443", nil, []string{"10.0.0.1"}, "https://10.0.0.1:8443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Defaults()
			c.Listen, c.TLS.DNSNames, c.TLS.IPAddresses = tt.listen, tt.dns, tt.ips
			if got := c.TokenIssuer(); got != tt.want {
				t.Errorf("TokenIssuer = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestWitnessesAndRetention: audit.witnesses, audit.shard_period and
// tokens.retention are
// validated with errors naming the field.
func TestWitnessesAndRetention(t *testing.T) {
	_, key, err := note.GenerateKey(rand.Reader, "witness.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"ok", "audit:\n  witnesses:\n    - url: http://127.0.0.1:1\n      key: " + key + "\ntokens:\n  retention: 2h\n", ""},
		{"bad url", "audit:\n  witnesses:\n    - url: ftp://x\n      key: " + key + "\n", "audit.witnesses[0].url"},
		{"bad key", "audit:\n  witnesses:\n    - url: http://127.0.0.1:1\n      key: nope\n", "audit.witnesses[0].key"},
		{"twice", "audit:\n  witnesses:\n    - url: http://127.0.0.1:1\n      key: " + key + "\n    - url: http://127.0.0.1:2\n      key: " + key + "\n", "a second witness named"},
		{"short retention", "tokens:\n  retention: 1m\n", "tokens.retention"},
		{"keep forever", "tokens:\n  retention: 0s\n", ""},
		{"shards", "audit:\n  shard_period: 24h\n", ""},
		{"short shards", "audit:\n  shard_period: 10m\n", "audit.shard_period"},
		{"fractional shards", "audit:\n  shard_period: 1500ms\n  short_shard_periods_for_tests: true\n", "audit.shard_period"},
		{"test shards", "audit:\n  shard_period: 1s\n  short_shard_periods_for_tests: true\n", ""},
		{"shards and witnesses", "audit:\n  shard_period: 24h\n  witnesses:\n    - url: http://127.0.0.1:1\n      key: " + key + "\n", ""}, // each shard is cosigned under its origin (sigild audit witness-config),
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(valid + tc.yaml))
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
