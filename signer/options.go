package signer

import (
	"errors"
	"log/slog"
	"time"
)

// Defaults of the options.
const (
	DefaultLead   = 10 * time.Minute // WithLead
	DefaultRetain = time.Hour        // WithRetain
	DefaultLeeway = 30 * time.Second // WithLeeway
)

// Option configures NewKeySet, NewMinter and NewVerifier. Each constructor
// ignores the options that do not concern it.
type Option func(*options)

type options struct {
	clock    func() time.Time
	log      *slog.Logger
	lead     time.Duration
	retain   time.Duration
	leeway   time.Duration
	external []ExternalIssuer
}

// WithClock sets the clock (time.Now by default). All of KeySet, Minter and
// Verifier take it.
func WithClock(now func() time.Time) Option { return func(o *options) { o.clock = now } }

// WithLogger sets the logger (discard by default). Tokens are never logged;
// key ids, jtis and rejection reasons are.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithLead sets how long a new key is published in JWKS before it signs
// (KeySet). It must exceed the interval at which every replica refreshes
// its KeySet and the time resource servers cache JWKS.
func WithLead(d time.Duration) Option { return func(o *options) { o.lead = d } }

// WithRetain sets the longest token lifetime (KeySet): a key stays in JWKS
// for Retain plus DefaultLeeway after it stops signing, and Minter refuses
// tokens that live longer than Retain.
func WithRetain(d time.Duration) Option { return func(o *options) { o.retain = d } }

// WithLeeway sets the clock skew allowed on exp, nbf and iat (Verifier);
// a KeySet keeps retired keys published that much longer.
func WithLeeway(d time.Duration) Option { return func(o *options) { o.leeway = d } }

// WithExternalIssuers adds issuers whose tokens the Verifier accepts besides
// its own, such as a user IdP.
func WithExternalIssuers(iss ...ExternalIssuer) Option {
	return func(o *options) { o.external = append(o.external, iss...) }
}

func newOptions(opts []Option) (*options, error) {
	o := &options{clock: time.Now, lead: DefaultLead, retain: DefaultRetain, leeway: DefaultLeeway}
	for _, opt := range opts {
		opt(o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.clock == nil:
		return nil, errors.New("signer: WithClock: nil clock")
	case o.lead < 0:
		return nil, errors.New("signer: WithLead: negative lead time")
	case o.retain <= 0:
		return nil, errors.New("signer: WithRetain: retain must be positive")
	case o.leeway < 0 || o.leeway > 5*time.Minute:
		return nil, errors.New("signer: WithLeeway: leeway must be between 0 and 5m")
	}
	return o, nil
}
