package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/identity"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// Decider decides policy requests; *policy.Engine and *policy.Set are
// ones.
type Decider interface {
	Decide(policy.Request) policy.Decision
}

// KeySet is what the service needs of the token key set: the published
// keys (JWKS) and signing the revocation feed's events with the version
// that signs tokens now. *signer.KeySet is one.
type KeySet interface {
	JWKS() ([]byte, error)
	Sign(ctx context.Context, typ token.Type, claims any) (jws, kid string, err error)
}

var _ KeySet = (*signer.KeySet)(nil)

// Defaults of Config.
const (
	DefaultPollInterval   = 200 * time.Millisecond
	DefaultMaxSubscribers = 256
)

// Config is what a Service needs. New checks it and names the field at
// fault.
type Config struct {
	// Issuer is the iss of every token, an https URL; the Minter and
	// Verifier must have been made for the same issuer.
	Issuer string
	// TrustDomain is sigil's trust domain (sigil.test): transaction
	// tokens are issued for it, with audience spiffe://TRUST_DOMAIN.
	TrustDomain string
	Minter      *signer.Minter
	// Keys is the Minter's key set: JWKS, and the revocation feed's
	// events are signed through it.
	Keys KeySet
	// Verifier checks subject and actor tokens: ours and those of the
	// configured external issuers.
	Verifier *signer.Verifier
	// Attest re-derives the device facts a caller's certificate was
	// issued on, for policy.
	Attest *attest.Verifier
	Policy Decider
	Store  store.Store

	// MaxLifetime caps every token (at most the key set's Retain, which
	// Minter enforces); DefaultTTL is the lifetime given when policy and
	// the subject token allow it. MaxActDepth is the most actors in an
	// act chain.
	MaxLifetime time.Duration
	DefaultTTL  time.Duration
	MaxActDepth int

	// OpaqueAudiences get reference tokens instead of JWTs.
	OpaqueAudiences []string
	// Admins are SPIFFE IDs that may introspect and revoke any token.
	Admins []string

	Log *slog.Logger
	// Now is the clock; nil means time.Now. Give the Minter, Verifier
	// and KeySet the same one.
	Now func() time.Time
	// Nudge, if set, is called after audit entries were committed, so the
	// log signs a checkpoint covering them soon.
	Nudge func()

	// PollInterval is how often the revocation feed reads the store for
	// revocations made by other replicas (DefaultPollInterval if zero);
	// this replica's own revocations are read as soon as they commit, and
	// other replicas' as soon as a store.FeedNotifier tells of them.
	PollInterval time.Duration
	// MaxSubscribers bounds the feed's concurrent subscribers
	// (DefaultMaxSubscribers if zero).
	MaxSubscribers int
}

// Service is the token service: the token, introspection and revocation
// endpoints' logic and the revocation feed. It is safe for concurrent use.
type Service struct {
	cfg    Config
	issuer string
	log    *slog.Logger
	now    func() time.Time
	opaque map[string]bool
	// txnAudience is the aud of transaction tokens: the trust domain's
	// SPIFFE ID.
	txnAudience string
	admins      map[string]bool
	facts       *factsCache
	clients     *clientCache // see authenticateIssuing
	feed        *feed
}

// New checks c and returns the service. Call Run in the background to
// serve the revocation feed.
func New(c Config) (*Service, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	s := &Service{
		cfg: c, issuer: c.Issuer, log: c.Log, now: c.Now,
		opaque: set(c.OpaqueAudiences), admins: set(c.Admins),
		txnAudience: spiffeid.RequireTrustDomainFromString(c.TrustDomain).IDString(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if c.PollInterval == 0 {
		s.cfg.PollInterval = DefaultPollInterval
	}
	if c.MaxSubscribers == 0 {
		s.cfg.MaxSubscribers = DefaultMaxSubscribers
	}
	s.clients = newClientCache()
	s.facts = newFactsCache(c.Store, c.Attest, s.now, maxCachedFacts)
	s.feed = newFeed(c.Store, s.signEvent, s.log, s.cfg.PollInterval, s.cfg.MaxSubscribers)
	return s, nil
}

func (c *Config) check() error {
	var missing []string
	for name, ok := range map[string]bool{
		"Minter": c.Minter != nil, "Keys": c.Keys != nil,
		"Verifier": c.Verifier != nil, "Attest": c.Attest != nil, "Policy": c.Policy != nil, "Store": c.Store != nil,
	} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("tokens: config: %s required", strings.Join(missing, ", "))
	}
	if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil || c.TrustDomain == "" {
		return fmt.Errorf("tokens: config: TrustDomain %q: want a trust domain name", c.TrustDomain)
	}
	u, err := url.Parse(c.Issuer)
	switch {
	case err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("tokens: config: Issuer %q: want an https URL without query or fragment", c.Issuer)
	case c.MaxLifetime <= 0:
		return errors.New("tokens: config: MaxLifetime must be positive")
	case c.DefaultTTL <= 0 || c.DefaultTTL > c.MaxLifetime:
		return fmt.Errorf("tokens: config: DefaultTTL %v must be positive and at most MaxLifetime %v", c.DefaultTTL, c.MaxLifetime)
	case c.MaxActDepth < 1:
		return errors.New("tokens: config: MaxActDepth must be at least 1")
	case c.PollInterval < 0 || c.MaxSubscribers < 0:
		return errors.New("tokens: config: PollInterval and MaxSubscribers may not be negative")
	}
	for _, a := range c.Admins {
		if _, err := identity.Workload(a); err != nil {
			return fmt.Errorf("tokens: config: Admins: %w", err)
		}
	}
	for _, a := range c.OpaqueAudiences {
		if a == "" {
			return errors.New("tokens: config: OpaqueAudiences: empty audience")
		}
	}
	return nil
}

func set(l []string) map[string]bool {
	m := make(map[string]bool, len(l))
	for _, s := range l {
		m[s] = true
	}
	return m
}

// Issuer is the iss of every token.
func (s *Service) Issuer() string { return s.issuer }

// JWKS returns the published verification keys (RFC 7517), which also
// verify the revocation feed's events.
func (s *Service) JWKS() ([]byte, error) { return s.cfg.Keys.JWKS() }

// Run serves the revocation feed until ctx ends: it reads new revocation
// events from the store as soon as this replica commits one and every
// PollInterval for other replicas', signs them and hands them to the
// subscribers. It returns ctx's error; subscriptions end with it. Call
// it once, in the background: without it subscribers get no live events.
func (s *Service) Run(ctx context.Context) error { return s.feed.run(ctx) }

func (s *Service) nudge() {
	if s.cfg.Nudge != nil {
		s.cfg.Nudge()
	}
}
