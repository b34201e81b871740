package client

import (
	"cmp"
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/tpm"
)

// Renewal defaults.
const (
	DefaultRenewAfter = 0.5 // of the certificate's lifetime
	renewTimeout      = 30 * time.Second
	minBackoff        = time.Second
	maxBackoff        = time.Minute
)

// Config configures New.
type Config struct {
	// StateDir holds the workload's enrollment, as `sigil enroll --state`
	// wrote it. Required unless Agent is set.
	StateDir string
	// Agent, instead of StateDir, is the Unix socket of the host agent
	// (sigil agent --host), which holds the TPM and the key: the workload
	// gets Identity through it, as the kernel identifies this process.
	Agent string
	// Identity is the SPIFFE ID asked of the agent (with Agent only).
	Identity string
	// ServerAuth asks the agent, at first enrollment, for a certificate
	// that also serves mTLS (with Agent only).
	ServerAuth bool
	// SharedTPM, if set, is a TPM the caller opened and shares between
	// workloads (the host agent does); the client does not close it.
	SharedTPM *tpm.TPM
	// Facts are sent with every renewal on SharedTPM: what the host agent
	// asserts about the process the workload is for.
	Facts *api.Workload
	// Enroll, if set, enrolls the workload first when StateDir holds no
	// enrollment yet; its StateDir is replaced by Config.StateDir.
	Enroll *EnrollConfig
	// RenewAfter is the fraction of the certificate's lifetime after which
	// it is renewed, jittered by a tenth of that either way; default 0.5.
	RenewAfter float64
	Log        *slog.Logger // default slog.Default()
	// Registerer, if set, gets the client's metrics (sigil_client_*,
	// labelled with the SPIFFE ID): renewals, token lookups and fetches,
	// and the certificate's expiry.
	Registerer prometheus.Registerer
	// Renewed, if set, is called with the new state after each renewal
	// (by the renewal loop or Renew), before Renew returns; for software
	// that reads the certificate from files, as sigil agent writes them.
	// It must not call Renew.
	Renewed func(*State)
}

// Client is a running workload identity: it keeps its X.509-SVID renewed
// with fresh quotes from the TPM, serves it for mTLS in both directions
// (it is an x509svid.Source and an x509bundle.Source for go-spiffe), and
// attaches tokens to outgoing requests (Transport).
type Client struct {
	w      *Workload
	bundle *x509bundle.Bundle
	log    *slog.Logger
	after  float64
	tokens *tokenCache
	met    *metrics // nil without Config.Registerer
	onNew  func(*State)

	revs revocations

	renewed chan struct{}   // a renewal outside the loop: reschedule
	ctx     context.Context // ends with Close
	stop    context.CancelFunc
	done    chan struct{}
}

// New opens the workload in cfg.StateDir, enrolling it first when there is
// none and cfg.Enroll says how, or, with cfg.Agent, through the host agent,
// and starts renewing its certificate. Close stops it.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.RenewAfter < 0 || cfg.RenewAfter >= 1 {
		return nil, fmt.Errorf("client: Config.RenewAfter %v: want a fraction in [0, 1)", cfg.RenewAfter)
	}
	w, err := open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	bundle, err := trustBundle(w.State())
	if err != nil {
		w.Close()
		return nil, err
	}
	met, err := newMetrics(cfg.Registerer, w)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("client: metrics: %w", err)
	}
	c := &Client{
		w: w, bundle: bundle, after: cmp.Or(cfg.RenewAfter, DefaultRenewAfter), tokens: newTokenCache(met), met: met, onNew: cfg.Renewed,
		log:     cmp.Or(cfg.Log, slog.Default()).With("spiffe_id", w.State().SPIFFEID),
		renewed: make(chan struct{}, 1), done: make(chan struct{}),
	}
	c.ctx, c.stop = context.WithCancel(context.WithoutCancel(ctx))
	go c.renewLoop(c.ctx)
	return c, nil
}

// open opens the workload as cfg says: through the host agent, on a shared
// TPM, or on the TPM of its state, enrolling it first if cfg.Enroll says
// how.
func open(ctx context.Context, cfg Config) (*Workload, error) {
	if cfg.Agent != "" {
		return OpenAgent(ctx, cfg.Agent, cfg.Identity, cfg.ServerAuth)
	}
	if cfg.StateDir == "" {
		return nil, errors.New("client: Config.StateDir or Config.Agent is required")
	}
	if _, err := LoadState(cfg.StateDir); errors.Is(err, fs.ErrNotExist) && cfg.Enroll != nil {
		ec := *cfg.Enroll
		ec.StateDir = cfg.StateDir
		if _, err := enrollOn(ctx, cfg.SharedTPM, ec); err != nil {
			return nil, err
		}
	}
	if cfg.SharedTPM != nil {
		return OpenShared(ctx, cfg.SharedTPM, cfg.StateDir, cfg.Facts)
	}
	return Open(ctx, cfg.StateDir)
}

// trustBundle is the bundle saved at enrollment, for st's trust domain.
func trustBundle(st *State) (*x509bundle.Bundle, error) {
	id, err := spiffeid.FromString(st.SPIFFEID)
	if err != nil {
		return nil, fmt.Errorf("client: state: %w", err)
	}
	return x509bundle.FromX509Authorities(id.TrustDomain(), st.bundle), nil
}

// Close stops renewing and following the revocation feed, and releases
// the TPM.
func (c *Client) Close() error {
	c.stop()
	<-c.done
	c.closeRevocations()
	return c.w.Close()
}

// Workload is the enrolled workload, for direct calls to sigild (Token,
// Introspect, Revoke).
func (c *Client) Workload() *Workload { return c.w }

// ID is the workload's SPIFFE ID.
func (c *Client) ID() spiffeid.ID { return c.svid().ID }

// GetX509SVID returns the current X.509-SVID; its private key is the TPM
// key. It makes Client an x509svid.Source.
func (c *Client) GetX509SVID() (*x509svid.SVID, error) { return c.svid(), nil }

func (c *Client) svid() *x509svid.SVID { return identitySVID(c.w.cur.Load(), c.w) }

func identitySVID(id *identity, _ *Workload) *x509svid.SVID {
	var key crypto.Signer
	if id.cert != nil {
		key, _ = id.cert.PrivateKey.(crypto.Signer) // newIdentity sets the workload's signer
	}
	return &x509svid.SVID{ID: spiffeid.RequireFromURI(id.state.Chain[0].URIs[0]), Certificates: id.state.Chain, PrivateKey: key}
}

// GetX509BundleForTrustDomain returns the trust bundle saved at enrollment
// for the workload's own trust domain. It makes Client an
// x509bundle.Source.
func (c *Client) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return c.bundle.GetX509BundleForTrustDomain(td)
}

// ServerTLSConfig serves mTLS with the workload's current certificate
// (enroll with ServerAuth) and accepts clients of the trust domain that
// authorize allows, for example tlsconfig.AuthorizeMemberOf(td), whose
// certificate sigild's revocation feed has not revoked (checked on every
// handshake, resumed sessions included; see Verifier). Put verify's
// Middleware behind it for the tokens.
func (c *Client) ServerTLSConfig(authorize tlsconfig.Authorizer) *tls.Config {
	cfg := tlsconfig.MTLSServerConfig(c, c, authorize)
	cfg.MinVersion = tls.VersionTLS13
	return c.withRevocation(cfg)
}

// ClientTLSConfig is mTLS to the workload server, checked by its SPIFFE
// ID and refused if its certificate is revoked (as ServerTLSConfig),
// presenting the current certificate.
func (c *Client) ClientTLSConfig(server spiffeid.ID) *tls.Config {
	cfg := tlsconfig.MTLSClientConfig(c, c, tlsconfig.AuthorizeID(server))
	cfg.MinVersion = tls.VersionTLS13
	return c.withRevocation(cfg)
}

// Renew renews the certificate now, as the renewal loop does when it is
// due; the loop then counts from the new certificate.
func (c *Client) Renew(ctx context.Context) (*State, error) {
	st, err := c.renew(ctx)
	if err == nil {
		select {
		case c.renewed <- struct{}{}:
		default:
		}
	}
	return st, err
}

// RevokeSubject ends a subject's session, as on a user's logout: it has
// sigild revoke subject (a token this workload was given: sigil's, or an
// external issuer's such as the user's IdP token) and with it every token
// exchanged from it, at any depth of the chain, and drops the tokens
// cached on its behalf.
func (c *Client) RevokeSubject(ctx context.Context, subject string) error {
	c.tokens.forgetSubject(subjectDigest(subject))
	return c.w.Revoke(ctx, subject)
}

// renew renews the certificate and counts the outcome.
func (c *Client) renew(ctx context.Context) (*State, error) {
	st, err := c.w.Renew(ctx)
	c.met.renewed(err)
	if err == nil && c.onNew != nil {
		c.onNew(st)
	}
	return st, err
}

// renewLoop renews the certificate after cfg.RenewAfter of its lifetime,
// retrying with jittered exponential backoff; the current certificate is
// served until a new one is in hand.
func (c *Client) renewLoop(ctx context.Context) {
	defer close(c.done)
	var backoff time.Duration
	for {
		wait := backoff
		if wait == 0 { // at most one renewal a second, however small RenewAfter is
			wait = max(c.renewIn(time.Now()), minBackoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.renewed:
			t.Stop()
			backoff = 0
			continue
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, renewTimeout)
		st, err := c.renew(rctx)
		cancel()
		switch {
		case err == nil:
			backoff = 0
			c.log.Info("certificate renewed", "serial", st.Chain[0].SerialNumber.Text(16), "expires", st.ExpiresAt)
			continue
		case ctx.Err() != nil:
			return
		}
		backoff = min(max(2*backoff, minBackoff), maxBackoff)
		backoff = backoff/2 + rand.N(backoff/2+1)
		level := slog.LevelWarn
		if errors.Is(err, ErrDenied) {
			level = slog.LevelError // retried, in case the policy changes
		}
		c.log.Log(ctx, level, "certificate renewal failed; the current one is served until it expires",
			"err", err, "expires", c.w.State().ExpiresAt, "retry_in", backoff)
	}
}

// renewIn is the time until the current certificate is due for renewal.
func (c *Client) renewIn(now time.Time) time.Duration {
	leaf := c.w.State().Chain[0]
	due := time.Duration(float64(leaf.NotAfter.Sub(leaf.NotBefore)) * c.after)
	jitter := due / 10
	due += rand.N(2*jitter+1) - jitter
	return max(leaf.NotBefore.Add(due).Sub(now), 0)
}

// HTTPClient is an HTTPS client for calls to the workload server, with
// Transport(server, scope...).
func (c *Client) HTTPClient(server spiffeid.ID, scope ...string) *http.Client {
	return &http.Client{Transport: c.Transport(server, scope...), Timeout: 30 * time.Second}
}

// peerTransports caches, per identity, the transports to workload servers.
type peerTransports struct {
	mu sync.Mutex
	m  map[spiffeid.ID]*http.Transport
}
