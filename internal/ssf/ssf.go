package ssf

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/identity"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/token"
)

// Names from the Shared Signals Framework 1.0 and CAEP 1.0.
const (
	SpecVersion = "1_0"
	// MethodPush is RFC 8935 push delivery, MethodPoll RFC 8936 poll
	// delivery, as SSF names them.
	MethodPush = "urn:ietf:rfc:8935"
	MethodPoll = "urn:ietf:rfc:8936"

	// EventSessionRevoked is sent for every revoked token (CAEP 1.0 §3.1),
	// EventCredentialChange for every revoked certificate (§3.3, change
	// type revoke), EventVerification on a receiver's request (SSF §8.1.4).
	EventSessionRevoked   = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	EventCredentialChange = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
	EventVerification     = "https://schemas.openid.net/secevent/ssf/event-type/verification"

	// OAuthScheme is the authorization scheme of every endpoint but the
	// metadata: an RFC 6750 bearer token sigil issued (RFC 6749).
	OAuthScheme = "urn:ietf:rfc:6749"
)

// Paths of the transmitter's endpoints.
const (
	PathConfiguration = "/.well-known/ssf-configuration"
	PathStream        = "/ssf/stream"
	PathVerify        = "/ssf/verify"
	PathStatus        = "/ssf/status"
	PathAddSubject    = "/ssf/subjects:add"
	PathRemoveSubject = "/ssf/subjects:remove"
	PathPoll          = "/ssf/poll/" // + stream id
)

// Defaults and bounds of Config.
const (
	DefaultPollInterval       = 200 * time.Millisecond
	DefaultLongPoll           = 20 * time.Second
	DefaultStreamsPerReceiver = 4
	DefaultMaxEvents          = 100
	MaxEvents                 = 1000      // the most SETs one poll answers
	MaxBody                   = 256 << 10 // request bodies (acks of MaxEvents SETs fit)
)

// Supported lists the event types a stream can receive.
var Supported = []string{EventSessionRevoked, EventCredentialChange}

// Receiver is a party that may have streams: the SPIFFE ID its bearer
// tokens are issued to, and the https URLs push delivery may use for it.
type Receiver struct {
	ID            string
	PushEndpoints []string
}

// Authenticator checks the bearer token a receiver presents;
// *tokens.Service is one.
type Authenticator interface {
	Bearer(ctx context.Context, tok, aud string, peer *x509.Certificate) (sub string, err error)
}

// Signer signs SETs with the key that signs tokens now, so that they
// verify against the published JWKS; *signer.KeySet is one.
type Signer interface {
	Sign(ctx context.Context, typ token.Type, claims any) (jws, kid string, err error)
}

// Config is what a Transmitter needs. New checks it and names the field at
// fault.
type Config struct {
	// Issuer is the iss of every SET and the base URL of the endpoints:
	// the token issuer, whose JWKS verifies the SETs.
	Issuer string
	// Audience is the aud a receiver's bearer token must carry.
	Audience  string
	Receivers []Receiver
	Keys      Signer
	Auth      Authenticator
	Store     store.Store
	// PushClient posts SETs to receivers; nil is one that trusts the
	// system roots. Redirects are never followed.
	PushClient *http.Client
	Log        *slog.Logger
	Now        func() time.Time

	// PollInterval is how often the store is read for new revocation
	// events that no store.FeedNotifier announced: another process's
	// commits on SQLite, or any while notifications are down;
	// LongPoll is the longest an RFC 8936 poll without returnImmediately
	// waits; StreamsPerReceiver bounds a receiver's streams.
	PollInterval       time.Duration
	LongPoll           time.Duration
	StreamsPerReceiver int
	// PushBackoff is the first wait after a failed push, doubled up to
	// MaxPushBackoff (defaults 250 ms and 30 s).
	PushBackoff, MaxPushBackoff time.Duration
	// Registerer, if set, gets the transmitter's metrics
	// (sigil_ssf_sets_total).
	Registerer prometheus.Registerer
}

// Transmitter is sigild's Shared Signals transmitter. It is safe for
// concurrent use.
type Transmitter struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	receivers map[string]Receiver
	metrics   *metrics

	mu      sync.Mutex
	changed chan struct{}  // closed when something may be waiting to be delivered
	polls   map[string]int // polls running, by receiver
}

// New checks c and returns the transmitter. Run it in the background for
// push delivery and prompt long polls.
func New(c Config) (*Transmitter, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	t := &Transmitter{cfg: c, log: c.Log, now: c.Now, receivers: map[string]Receiver{}, changed: make(chan struct{}), polls: map[string]int{}}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.now == nil {
		t.now = time.Now
	}
	for _, r := range c.Receivers {
		t.receivers[r.ID] = r
	}
	t.metrics = newMetrics(c.Registerer)
	t.defaults()
	return t, nil
}

func (t *Transmitter) defaults() {
	c := &t.cfg
	setDefault(&c.PollInterval, DefaultPollInterval)
	setDefault(&c.LongPoll, DefaultLongPoll)
	setDefault(&c.PushBackoff, 250*time.Millisecond)
	setDefault(&c.MaxPushBackoff, 30*time.Second)
	if c.StreamsPerReceiver == 0 {
		c.StreamsPerReceiver = DefaultStreamsPerReceiver
	}
	if c.PushClient == nil {
		c.PushClient = &http.Client{Timeout: 10 * time.Second}
	}
	client := *c.PushClient
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.PushClient = &client
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d == 0 {
		*d = v
	}
}

func (c *Config) check() error {
	switch {
	case c.Keys == nil || c.Auth == nil || c.Store == nil:
		return errors.New("ssf: config: Keys, Auth and Store required")
	case !httpsURL(c.Issuer):
		return fmt.Errorf("ssf: config: Issuer %q: want an https URL without query or fragment", c.Issuer)
	case c.Audience == "":
		return errors.New("ssf: config: Audience required")
	case c.PollInterval < 0 || c.LongPoll < 0 || c.StreamsPerReceiver < 0 || c.PushBackoff < 0 || c.MaxPushBackoff < 0:
		return errors.New("ssf: config: durations and StreamsPerReceiver may not be negative")
	}
	seen := map[string]bool{}
	for i, r := range c.Receivers {
		if _, err := identity.Workload(r.ID); err != nil {
			return fmt.Errorf("ssf: config: Receivers[%d].ID: %w", i, err)
		}
		if seen[r.ID] {
			return fmt.Errorf("ssf: config: Receivers[%d]: %s listed twice", i, r.ID)
		}
		seen[r.ID] = true
		for j, e := range r.PushEndpoints {
			if !httpsURL(e) {
				return fmt.Errorf("ssf: config: Receivers[%d].PushEndpoints[%d] %q: want an https URL without fragment", i, j, e)
			}
		}
	}
	return nil
}

// httpsURL reports whether s is an absolute https URL without user
// information or fragment.
func httpsURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https" && u.Host != "" && u.User == nil && u.Fragment == "" && !strings.Contains(s, "#")
}

// Metadata is the SSF 1.0 Transmitter Configuration Metadata.
type Metadata struct {
	SpecVersion              string                `json:"spec_version"`
	Issuer                   string                `json:"issuer"`
	JWKSURI                  string                `json:"jwks_uri"`
	DeliveryMethodsSupported []string              `json:"delivery_methods_supported"`
	ConfigurationEndpoint    string                `json:"configuration_endpoint"`
	VerificationEndpoint     string                `json:"verification_endpoint"`
	StatusEndpoint           string                `json:"status_endpoint"`
	AddSubjectEndpoint       string                `json:"add_subject_endpoint"`
	RemoveSubjectEndpoint    string                `json:"remove_subject_endpoint"`
	AuthorizationSchemes     []AuthorizationScheme `json:"authorization_schemes"`
	DefaultSubjects          string                `json:"default_subjects"`
}

// AuthorizationScheme names the specification of an authorization scheme.
type AuthorizationScheme struct {
	SpecURN string `json:"spec_urn"`
}

// Metadata returns the transmitter's configuration metadata, served at
// PathConfiguration. Every subject's events go to every stream
// (default_subjects ALL) but those its receiver removed (subjects.go).
func (t *Transmitter) Metadata() Metadata {
	base := strings.TrimSuffix(t.cfg.Issuer, "/")
	return Metadata{
		SpecVersion: SpecVersion, Issuer: t.cfg.Issuer, JWKSURI: base + "/jwks.json",
		DeliveryMethodsSupported: []string{MethodPush, MethodPoll},
		ConfigurationEndpoint:    base + PathStream, VerificationEndpoint: base + PathVerify, StatusEndpoint: base + PathStatus,
		AddSubjectEndpoint: base + PathAddSubject, RemoveSubjectEndpoint: base + PathRemoveSubject,
		AuthorizationSchemes: []AuthorizationScheme{{SpecURN: OAuthScheme}}, DefaultSubjects: "ALL",
	}
}

// receiver authenticates a request's bearer token and returns the
// configured receiver it was issued to.
func (t *Transmitter) receiver(ctx context.Context, bearer string, peer *x509.Certificate) (Receiver, error) {
	sub, err := t.cfg.Auth.Bearer(ctx, bearer, t.cfg.Audience, peer)
	if err != nil {
		return Receiver{}, err
	}
	r, ok := t.receivers[sub]
	if !ok {
		t.log.WarnContext(ctx, "ssf: a token holder that is no configured receiver", "sub", sub)
		return Receiver{}, errForbidden
	}
	return r, nil
}

// wake tells waiting polls and pushers that something may be deliverable.
func (t *Transmitter) wake() {
	t.mu.Lock()
	defer t.mu.Unlock()
	close(t.changed)
	t.changed = make(chan struct{})
}

// changes returns a channel closed at the next wake.
func (t *Transmitter) changes() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}

func supported(ev string) bool { return slices.Contains(Supported, ev) }
