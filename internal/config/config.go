// Package config is sigild's configuration: one YAML file, decoded strictly
// and validated in one place, with errors that name the field at fault.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/identity"
)

// maxFileSize bounds the configuration file.
const maxFileSize = 1 << 20

// Config is sigild's configuration file.
type Config struct {
	// Listen is the HTTPS address, host:port.
	Listen string `yaml:"listen"`
	// TrustDomain is the SPIFFE trust domain sigil issues identities in.
	TrustDomain string `yaml:"trust_domain"`
	// Store is the database DSN: "sqlite:PATH" (default) or "postgres://…"
	// (also "postgresql://…").
	Store string `yaml:"store"`
	HSM   HSM    `yaml:"hsm"`
	CA    CA     `yaml:"ca"`
	TLS   TLS    `yaml:"tls"`
	// Attestation configures what enrollment evidence must show.
	Attestation Attestation `yaml:"attestation"`
	Policy      Policy      `yaml:"policy"`
	Audit       Audit       `yaml:"audit"`
	Tokens      Tokens      `yaml:"tokens"`
	SSF         SSF         `yaml:"ssf"`
}

// Tokens configures the token service (OAuth 2.0 token exchange).
type Tokens struct {
	// Issuer is the "iss" of every token: the service's HTTPS URL, the
	// one clients reach it at, for they fetch its RFC 8414 metadata from
	// there and compare this with it (§3.3). Its host must be one the TLS
	// certificate names. Default: https://HOST:<listen port>, HOST being
	// the listen address if the certificate names it, else the first of
	// tls.dns_names, else the first of tls.ip_addresses.
	Issuer string `yaml:"issuer"`
	// KeyLabel names the HSM signing key; Alg is its algorithm for a new
	// key: ES256 (default), ES384 or PS256.
	KeyLabel string `yaml:"key_label"`
	Alg      string `yaml:"alg"`
	// DefaultTTL and MaxTTL bound token lifetimes; policy may narrow them.
	DefaultTTL time.Duration `yaml:"default_ttl"`
	MaxTTL     time.Duration `yaml:"max_ttl"`
	// MaxActDepth bounds the delegation chain.
	MaxActDepth int `yaml:"max_act_depth"`
	// RotationLead is how long a new key is published before it signs.
	RotationLead time.Duration `yaml:"rotation_lead"`
	// OpaqueAudiences get reference tokens, resolvable only by
	// introspection, instead of JWTs.
	OpaqueAudiences []string `yaml:"opaque_audiences"`
	// Admins are SPIFFE IDs that may introspect and revoke any token.
	Admins []string `yaml:"admins"`
	// External lists issuers whose tokens may start a delegation chain.
	External []ExternalIssuer `yaml:"external_issuers"`
	// Feed bounds the revocation feed's streams.
	Feed Feed `yaml:"revocation_feed"`
	// Retention is how long after it expires a token's record is kept:
	// then sigild deletes it (its audit entry stays, and an expired token
	// is refused whether its record is there or not). At least 10m, longer
	// than any verifier's clock leeway. Default 1h; 0 keeps records
	// forever.
	Retention *time.Duration `yaml:"retention"`
}

// TokenRetention is tokens.retention, with its default: 0 keeps records.
func (c *Config) TokenRetention() time.Duration {
	if c.Tokens.Retention == nil {
		return time.Hour
	}
	return *c.Tokens.Retention
}

// Feed bounds the concurrent streams of the revocation feed
// (GET /v1/revocations), so that no identity can take them all: a stream
// over MaxStreamsPerIdentity is answered 429, one over MaxStreams 503,
// both with Retry-After.
type Feed struct {
	// MaxStreams is how many streams the server holds open at once.
	// Default 1024.
	MaxStreams int `yaml:"max_streams"`
	// MaxStreamsPerIdentity is how many of them one SPIFFE ID may hold:
	// one per verifier process of that workload. Default 16; it must be
	// smaller than MaxStreams.
	MaxStreamsPerIdentity int `yaml:"max_streams_per_identity"`
}

// ExternalIssuer is a token issuer trusted for subject tokens, such as a
// user IdP.
type ExternalIssuer struct {
	Issuer     string   `yaml:"issuer"`
	JWKSFile   string   `yaml:"jwks_file"`
	Algorithms []string `yaml:"algorithms"`
	// SubClaim and ScopeClaim name the claims that give sub and scope
	// (defaults "sub" and "scope").
	SubClaim   string `yaml:"sub_claim"`
	ScopeClaim string `yaml:"scope_claim"`
}

// Audit configures the tamper-evident log.
type Audit struct {
	// KeyLabel names the HSM key that signs checkpoints.
	KeyLabel string `yaml:"key_label"`
	// Origin is the log's name in its checkpoints (C2SP tlog-checkpoint);
	// auditors must expect exactly this string. Default:
	// TRUST_DOMAIN/sigil-audit/ID, ID derived from the audit key
	// (audit.Origin), so that every log has its own; a log whose stored
	// checkpoints use the legacy TRUST_DOMAIN/sigil-audit keeps it.
	Origin string `yaml:"origin"`
	// CheckpointInterval is how often new entries get a signed checkpoint.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// Readers are the SPIFFE IDs that may read entries and inclusion
	// proofs (mTLS): the entries name users, scopes, delegation chains
	// and why attestations failed. Checkpoints and consistency proofs
	// are public. Empty: nobody reads entries over the API; `sigild audit
	// export` still works.
	Readers []string `yaml:"readers"`
	// Anchor is the file where sigild keeps the last checkpoint it signed
	// and the database's epoch, outside the database: a database older
	// than it (restored from a copy) is refused until an operator runs
	// `sigild restore acknowledge`. Keep it off the database's backups.
	// Default: sigild.anchor beside the configuration file.
	Anchor string `yaml:"anchor"`
	// Witnesses cosign the log's checkpoints (C2SP tlog-witness): sigild
	// submits each new checkpoint to each, with a consistency proof from
	// the last one it cosigned, and serves the checkpoint with their
	// cosignatures. Each must be configured with the log's origin and the
	// key `sigild audit witness-key` prints; a log sharded by time
	// (ShardPeriod) is a log per shard to a witness, each under its own
	// origin, known to the witness before its first checkpoint (`sigild
	// audit witness-config --next N`). Empty: no witnesses.
	Witnesses []Witness `yaml:"witnesses"`
	// WitnessTimeout bounds one submission to a witness. Default 10s.
	WitnessTimeout time.Duration `yaml:"witness_timeout"`
	// ShardPeriod shards the log by time: a new log (origin
	// ORIGIN/<period start in UTC>) every period, whose first entry
	// commits to the previous shard's final checkpoint, so that sealed
	// shards can be archived (`sigild audit archive`). At least 1h; 0
	// (default): one log, never sharded.
	ShardPeriod time.Duration `yaml:"shard_period"`
	// ShortShardPeriods lets ShardPeriod go down to 1s: for tests only.
	ShortShardPeriods bool `yaml:"short_shard_periods_for_tests"`
}

// Witness is one witness of the audit log.
type Witness struct {
	// URL is the witness's base URL: checkpoints are posted to
	// URL/add-checkpoint.
	URL string `yaml:"url"`
	// Key is the witness's signed-note verifier key, "name+keyid+base64"
	// (Ed25519 or ML-DSA-44, as the witness's operator publishes it).
	Key string `yaml:"key"`
}

// HSM locates the PKCS#11 token holding every signing key.
type HSM struct {
	// URI is an RFC 7512 pkcs11: URI with module-path, token and, for the
	// PIN, pin-source=file:… . A pin-value in the URI is refused.
	URI string `yaml:"uri"`
	// PINEnv names an environment variable holding the PIN, used when the
	// URI has no pin-source.
	PINEnv string `yaml:"pin_env"`
}

// CA sets the key labels and lifetimes of the CA hierarchy.
type CA struct {
	RootLabel   string        `yaml:"root_label"`
	IssuerLabel string        `yaml:"issuer_label"`
	RootTTL     time.Duration `yaml:"root_ttl"`
	IssuerTTL   time.Duration `yaml:"issuer_ttl"`
	// SVIDTTL is the default certificate lifetime; SVIDMaxTTL its cap.
	SVIDTTL    time.Duration `yaml:"svid_ttl"`
	SVIDMaxTTL time.Duration `yaml:"svid_max_ttl"`
	// PublicURL is sigild's base URL as relying parties reach it: every
	// certificate names PublicURL/v1/crl as its CRL distribution point
	// and PublicURL/v1/issuer.crt as its issuer (caIssuers). An http or
	// https URL without query or fragment, such as a mirror's; default:
	// the token issuer (tokens.issuer or its default).
	PublicURL string `yaml:"public_url"`
}

// TLS names sigild's server certificate.
type TLS struct {
	KeyLabel    string        `yaml:"key_label"`
	DNSNames    []string      `yaml:"dns_names"`
	IPAddresses []string      `yaml:"ip_addresses"`
	TTL         time.Duration `yaml:"ttl"`
}

// Attestation says which TPMs to trust and what they must quote.
type Attestation struct {
	// EKRoots are PEM files of CAs that issue EK certificates.
	EKRoots []string `yaml:"ek_roots"`
	// EKAllow lists hex SHA-256 digests of EK public keys (PKIX DER)
	// trusted without an EK certificate.
	EKAllow []string `yaml:"ek_allow"`
	// PCRs are the SHA-256 PCR indexes every quote must cover.
	PCRs []int `yaml:"pcrs"`
	// ChallengeTTL bounds the time between challenge and completion.
	ChallengeTTL time.Duration `yaml:"challenge_ttl"`
	// MaxAge: a device that has not attested successfully (enrolled or
	// renewed) within it loses its certificates and their tokens. No
	// certificate lifetime may exceed it.
	MaxAge time.Duration `yaml:"max_age"`
}

// Policy locates the Cedar policy directory.
type Policy struct {
	Dir            string        `yaml:"dir"`
	ReloadInterval time.Duration `yaml:"reload_interval"`
	// MaxRevokeFraction: a new policy set that would revoke certificates
	// of more than this fraction of the active devices (and more than one)
	// is held until an operator confirms it (`sigild policy confirm`).
	MaxRevokeFraction float64 `yaml:"max_revoke_fraction"`
	// Operators are the SPIFFE IDs that may ask sigild, over mTLS, what a
	// candidate policy set would revoke (`sigil policy what-if`).
	Operators []string `yaml:"operators"`
}

// Load reads, decodes and validates the file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("config: %s is larger than %d bytes", path, maxFileSize)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if c.Audit.Anchor == "" {
		c.Audit.Anchor = filepath.Join(filepath.Dir(path), "sigild.anchor")
	}
	return c, nil
}

// Parse decodes and validates a configuration. Unknown fields are errors.
func Parse(data []byte) (*Config, error) {
	c := Defaults()
	if err := decode(data, c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func decode(data []byte, c *Config) (err error) {
	// go-yaml v1.19.2 panics on some malformed documents (a tag on an
	// empty sequence, found by FuzzParse): report those as errors too.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("config: malformed YAML: %v", r)
		}
	}()
	if err := yaml.UnmarshalWithOptions(data, c, yaml.Strict(), yaml.DisallowUnknownField()); err != nil {
		// Errors from value parsers (durations) carry no position: the
		// value itself is quoted in the message.
		return fmt.Errorf("config: %s", yaml.FormatError(err, false, true))
	}
	return nil
}

// Defaults returns the values used for fields a file leaves out.
func Defaults() *Config {
	return &Config{
		Listen: "127.0.0.1:8443",
		Store:  "sqlite:sigil.db",
		HSM:    HSM{PINEnv: "SIGIL_HSM_PIN"},
		CA: CA{
			RootLabel: "sigil-root", IssuerLabel: "sigil-issuer",
			RootTTL: 10 * 365 * 24 * time.Hour, IssuerTTL: 365 * 24 * time.Hour,
			SVIDTTL: time.Hour, SVIDMaxTTL: 24 * time.Hour,
		},
		TLS:         TLS{KeyLabel: "sigil-tls", DNSNames: []string{"localhost"}, TTL: 30 * 24 * time.Hour},
		Attestation: Attestation{PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7}, ChallengeTTL: time.Minute, MaxAge: 24 * time.Hour},
		Policy:      Policy{ReloadInterval: 2 * time.Second, MaxRevokeFraction: 0.2},
		Audit:       Audit{KeyLabel: "sigil-audit", CheckpointInterval: time.Second},
		Tokens: Tokens{
			KeyLabel: "sigil-token", Alg: "ES256", DefaultTTL: 5 * time.Minute, MaxTTL: time.Hour,
			MaxActDepth: 4, RotationLead: 10 * time.Minute,
			Feed: Feed{MaxStreams: 1024, MaxStreamsPerIdentity: 16},
		},
	}
}

// Validate checks every field and reports all problems at once, each
// prefixed with its YAML path.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "want host:port, got %q", c.Listen)
	}
	if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
		bad("trust_domain", "%q is not a SPIFFE trust domain (%v)", c.TrustDomain, err)
	}
	if !strings.HasPrefix(c.Store, "sqlite:") && !strings.HasPrefix(c.Store, "postgres://") && !strings.HasPrefix(c.Store, "postgresql://") {
		scheme, _, _ := strings.Cut(c.Store, ":") // the rest may hold a password
		bad("store", `want "sqlite:PATH" or "postgres://…", got a DSN starting %q`, scheme+":")
	}
	c.validateHSM(bad)
	c.validateCA(bad)
	c.validateTLS(bad)
	c.validateAttestation(bad)
	if c.Policy.Dir == "" {
		bad("policy.dir", "required")
	}
	if c.Policy.ReloadInterval < 0 {
		bad("policy.reload_interval", "must not be negative")
	}
	if f := c.Policy.MaxRevokeFraction; !(f > 0 && f <= 1) {
		bad("policy.max_revoke_fraction", "%g is not in (0, 1]", f)
	}
	spiffeIDs(bad, "policy.operators", c.Policy.Operators)
	c.validateAudit(bad)
	c.validateTokens(bad)
	c.validateSSF(bad)
	return errors.Join(errs...)
}

type reporter func(field, format string, args ...any)

func (c *Config) validateHSM(bad reporter) {
	switch {
	case !strings.HasPrefix(c.HSM.URI, "pkcs11:"):
		bad("hsm.uri", "want an RFC 7512 pkcs11: URI")
	case strings.Contains(c.HSM.URI, "pin-value="):
		bad("hsm.uri", "pin-value would put the PIN in the file: use pin-source=file:… or hsm.pin_env")
	}
}

func (c *Config) validateCA(bad reporter) {
	for field, label := range map[string]string{"ca.root_label": c.CA.RootLabel, "ca.issuer_label": c.CA.IssuerLabel, "tls.key_label": c.TLS.KeyLabel, "audit.key_label": c.Audit.KeyLabel} {
		if label == "" {
			bad(field, "required")
		}
	}
	if c.CA.RootLabel == c.CA.IssuerLabel {
		bad("ca.issuer_label", "must differ from ca.root_label")
	}
	positive(bad, "ca.root_ttl", c.CA.RootTTL)
	positive(bad, "ca.issuer_ttl", c.CA.IssuerTTL)
	positive(bad, "ca.svid_ttl", c.CA.SVIDTTL)
	if c.CA.IssuerTTL > c.CA.RootTTL {
		bad("ca.issuer_ttl", "%v outlives ca.root_ttl %v", c.CA.IssuerTTL, c.CA.RootTTL)
	}
	if c.CA.SVIDMaxTTL < c.CA.SVIDTTL {
		bad("ca.svid_max_ttl", "%v is shorter than ca.svid_ttl %v", c.CA.SVIDMaxTTL, c.CA.SVIDTTL)
	}
	if u := c.CA.PublicURL; u != "" {
		p, err := url.Parse(u)
		switch {
		case err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.User != nil:
			bad("ca.public_url", "want an http:// or https:// URL, got %q", u)
		case p.RawQuery != "" || p.ForceQuery || p.Fragment != "" || strings.Contains(u, "#"):
			bad("ca.public_url", "must have no query or fragment, got %q", u)
		}
	}
}

// PublicURL is the base URL of the CRL and issuer URLs in certificates:
// ca.public_url, or the token issuer; without a trailing slash.
func (c *Config) PublicURL() string {
	if c.CA.PublicURL != "" {
		return strings.TrimRight(c.CA.PublicURL, "/")
	}
	return strings.TrimRight(c.TokenIssuer(), "/")
}

func (c *Config) validateTLS(bad reporter) {
	if len(c.TLS.DNSNames) == 0 && len(c.TLS.IPAddresses) == 0 {
		bad("tls", "needs dns_names or ip_addresses")
	}
	for i, ip := range c.TLS.IPAddresses {
		if net.ParseIP(ip) == nil {
			bad(fmt.Sprintf("tls.ip_addresses[%d]", i), "%q is not an IP address", ip)
		}
	}
	positive(bad, "tls.ttl", c.TLS.TTL)
}

func (c *Config) validateAttestation(bad reporter) {
	a := c.Attestation
	if len(a.EKRoots) == 0 && len(a.EKAllow) == 0 {
		bad("attestation", "needs ek_roots or ek_allow: no TPM would be trusted")
	}
	for i, h := range a.EKAllow {
		if len(h) != 64 || strings.Trim(strings.ToLower(h), "0123456789abcdef") != "" {
			bad(fmt.Sprintf("attestation.ek_allow[%d]", i), "want a hex SHA-256 digest")
		}
	}
	if len(a.PCRs) == 0 {
		bad("attestation.pcrs", "required: a quote must cover at least one PCR")
	}
	for i, p := range a.PCRs {
		if p < 0 || p > 23 {
			bad(fmt.Sprintf("attestation.pcrs[%d]", i), "%d is not a PCR index (0-23)", p)
		}
	}
	positive(bad, "attestation.challenge_ttl", a.ChallengeTTL)
	positive(bad, "attestation.max_age", a.MaxAge)
	for _, f := range []struct {
		name string
		ttl  time.Duration
	}{{"ca.svid_ttl", c.CA.SVIDTTL}, {"ca.svid_max_ttl", c.CA.SVIDMaxTTL}} {
		if a.MaxAge > 0 && f.ttl > a.MaxAge {
			bad(f.name, "%v exceeds attestation.max_age %v: a certificate would outlive its device's last attestation", f.ttl, a.MaxAge)
		}
	}
	if a.ChallengeTTL > 10*time.Minute {
		bad("attestation.challenge_ttl", "%v is longer than 10m", a.ChallengeTTL)
	}
}

func (c *Config) validateAudit(bad reporter) {
	if o := c.Audit.Origin; strings.ContainsAny(o, "\n\r") || strings.TrimSpace(o) != o {
		bad("audit.origin", "must be one line without surrounding spaces")
	}
	if c.Audit.CheckpointInterval <= 0 || c.Audit.CheckpointInterval > time.Minute {
		bad("audit.checkpoint_interval", "want between 0 and 1m, got %v", c.Audit.CheckpointInterval)
	}
	spiffeIDs(bad, "audit.readers", c.Audit.Readers)
	least := audit.MinShardPeriod
	if c.Audit.ShortShardPeriods {
		least = audit.MinTestShardPeriod
	}
	if p := c.Audit.ShardPeriod; p != 0 && (p < least || p%time.Second != 0) {
		bad("audit.shard_period", "want 0 (not sharded) or whole seconds of at least %v, got %v", least, p)
	}
	if c.Audit.WitnessTimeout < 0 || c.Audit.WitnessTimeout > 5*time.Minute {
		bad("audit.witness_timeout", "want between 0 and 5m, got %v", c.Audit.WitnessTimeout)
	}
	seen := map[string]bool{}
	for i, w := range c.Audit.Witnesses {
		field := fmt.Sprintf("audit.witnesses[%d]", i)
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(field+".url", "want http(s)://host[:port][/path], got %q", w.URL)
		}
		if _, err := audit.ParseWitnessKey(w.Key); err != nil {
			bad(field+".key", "want the witness's verifier key name+keyid+base64: %v", err)
		} else if name, _, _ := strings.Cut(w.Key, "+"); seen[name] {
			bad(field+".key", "a second witness named %q", name)
		} else {
			seen[name] = true
		}
	}
}

// spiffeIDs checks each of ids is a workload's SPIFFE ID (identity.Workload:
// the SPIFFE ID standard's grammar and limits, and a path).
func spiffeIDs(bad reporter, field string, ids []string) {
	for i, id := range ids {
		if _, err := identity.Workload(id); err != nil {
			bad(fmt.Sprintf("%s[%d]", field, i), "%s is not a SPIFFE ID of a workload (%v)", identity.Quote(id), err)
		}
	}
}

func (c *Config) validateTokens(bad reporter) {
	if r := c.Tokens.Retention; r != nil && *r != 0 && *r < 10*time.Minute {
		bad("tokens.retention", "want 0 (keep) or at least 10m, got %v", *r)
	}
	t := c.Tokens
	if t.Issuer != "" {
		c.validateIssuer(bad)
	}
	if t.KeyLabel == "" {
		bad("tokens.key_label", "required")
	}
	if t.Alg != "ES256" && t.Alg != "ES384" && t.Alg != "PS256" {
		bad("tokens.alg", "want ES256, ES384 or PS256, got %q", t.Alg)
	}
	positive(bad, "tokens.default_ttl", t.DefaultTTL)
	if t.MaxTTL < t.DefaultTTL {
		bad("tokens.max_ttl", "%v is shorter than tokens.default_ttl %v", t.MaxTTL, t.DefaultTTL)
	}
	if t.MaxActDepth < 1 || t.MaxActDepth > 16 {
		bad("tokens.max_act_depth", "want 1 to 16, got %d", t.MaxActDepth)
	}
	if t.RotationLead < 0 {
		bad("tokens.rotation_lead", "must not be negative")
	}
	spiffeIDs(bad, "tokens.admins", t.Admins)
	validateFeed(bad, t.Feed)
	for i, e := range t.External {
		field := fmt.Sprintf("tokens.external_issuers[%d]", i)
		switch {
		case e.Issuer == "":
			bad(field+".issuer", "required")
		case e.JWKSFile == "":
			bad(field+".jwks_file", "required")
		case len(e.Algorithms) == 0:
			bad(field+".algorithms", "required: the algorithms this issuer signs with")
		}
		for _, alg := range e.Algorithms {
			if strings.HasPrefix(alg, "HS") || strings.EqualFold(alg, "none") {
				bad(field+".algorithms", "%s is not allowed: only asymmetric signatures", alg)
			}
		}
	}
}

func validateFeed(bad reporter, f Feed) {
	if f.MaxStreams < 1 {
		bad("tokens.revocation_feed.max_streams", "must be positive, got %d", f.MaxStreams)
	}
	if f.MaxStreamsPerIdentity < 1 || f.MaxStreamsPerIdentity >= f.MaxStreams {
		bad("tokens.revocation_feed.max_streams_per_identity",
			"want at least 1 and less than max_streams (%d), so that one identity cannot take every stream; got %d",
			f.MaxStreams, f.MaxStreamsPerIdentity)
	}
}

// TokenIssuer is the "iss" of sigil's tokens and the issuer of its RFC
// 8414 metadata: tokens.issuer, or the default described there.
func (c *Config) TokenIssuer() string {
	if c.Tokens.Issuer != "" {
		return c.Tokens.Issuer
	}
	host, port, _ := net.SplitHostPort(c.Listen)
	if !c.TLS.Names(host) {
		host = "localhost"
		if len(c.TLS.DNSNames) > 0 {
			host = c.TLS.DNSNames[0]
		} else if len(c.TLS.IPAddresses) > 0 {
			host = c.TLS.IPAddresses[0]
		}
	}
	return "https://" + net.JoinHostPort(host, port)
}

// Names reports whether the server certificate names host: one of
// dns_names (case-insensitively) or ip_addresses.
func (t TLS) Names(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return slices.ContainsFunc(t.IPAddresses, func(s string) bool { return ip.Equal(net.ParseIP(s)) })
	}
	return host != "" && slices.ContainsFunc(t.DNSNames, func(s string) bool { return strings.EqualFold(s, host) })
}

// validateIssuer checks tokens.issuer is an RFC 8414 §2 issuer identifier
// (https, no query or fragment) whose host the server certificate names:
// clients fetch the metadata from the issuer URL itself (§3.3).
func (c *Config) validateIssuer(bad reporter) {
	u, err := url.Parse(c.Tokens.Issuer)
	switch {
	case err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil:
		bad("tokens.issuer", "want an https:// URL, got %q", c.Tokens.Issuer)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(c.Tokens.Issuer, "#"):
		bad("tokens.issuer", "must have no query or fragment (RFC 8414 §2), got %q", c.Tokens.Issuer)
	case !c.TLS.Names(u.Hostname()):
		bad("tokens.issuer", "host %q is not in tls.dns_names or tls.ip_addresses: clients could not verify the server at its issuer URL", u.Hostname())
	}
}

func positive(bad reporter, field string, d time.Duration) {
	if d <= 0 {
		bad(field, "must be positive, got %v", d)
	}
}

// SVIDIdentity is the SPIFFE ID sigild presents in its own TLS certificate.
func (c *Config) SVIDIdentity() string {
	return "spiffe://" + c.TrustDomain + "/sigild"
}
