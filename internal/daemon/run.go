package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.step.sm/crypto/pemutil"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/internal/server"
	"github.com/sigil-dev/sigil/internal/ssf"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/witness"
	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/signer"
)

// Daemon is a running sigild.
type Daemon struct {
	cfg    *config.Config
	log    *slog.Logger
	hsm    *hsm.HSM
	store  store.Store
	policy *policy.Engine
	pki    *PKI
	ca     *ca.CA
	verify *attest.Verifier
	audit  *liveLog
	// checkpoints verifies the log's checkpoints (the audit key's), under
	// baseOrigin, the log's origin: the unsharded log's and the prefix of
	// its shards' (a shard's: checkpoints.Renamed(origin)).
	checkpoints *audit.Verifier
	baseOrigin  string
	// epoch is the database's, written into the anchor with each checkpoint.
	epoch  string
	tokens *tokens.Service
	keys   *signer.KeySet
	ssf    *ssf.Transmitter // nil without ssf.receivers
	srv    *http.Server
	// lease is the audit publisher's lease when replicas share the
	// store, else nil.
	lease     *publisherLease
	policyVer *policyMetric
	trust     *trustWatch
	// cosigner submits checkpoints to the configured witnesses, and
	// published serves them cosigned; both nil without witnesses.
	cosigner  *witness.Cosigner
	published *witness.Published
}

// OpenHSM opens the configured token.
func OpenHSM(ctx context.Context, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*hsm.HSM, error) {
	opts := []hsm.Option{hsm.WithLogger(log)}
	if cfg.HSM.PINEnv != "" {
		opts = append(opts, hsm.WithPINEnv(cfg.HSM.PINEnv))
	}
	if reg != nil {
		opts = append(opts, hsm.WithMetrics(reg))
	}
	return hsm.Open(ctx, cfg.HSM.URI, opts...)
}

// New opens everything sigild needs. The HSM must have been initialised
// (Init); New never creates keys.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Daemon, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d := &Daemon{cfg: cfg, log: log}
	var err error
	if d.hsm, err = OpenHSM(ctx, cfg, log, reg); err != nil {
		return nil, err
	}
	if err := d.open(ctx, reg); err != nil {
		d.Close()
		return nil, err
	}
	handler := d.server(reg).Handler()
	d.srv = &http.Server{
		Addr:              cfg.Listen,
		Handler:           handler,
		TLSConfig:         d.tlsConfig(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return d, nil
}

func (d *Daemon) open(ctx context.Context, reg prometheus.Registerer) error {
	var err error
	if d.pki, err = Load(ctx, d.cfg, d.hsm); err != nil {
		return err
	}
	public := d.cfg.PublicURL()
	d.ca, err = ca.New(d.pki.Root, d.pki.Issuer, d.pki.IssuerKey, d.cfg.TrustDomain, ca.WithTTL(d.cfg.CA.SVIDTTL, d.cfg.CA.SVIDMaxTTL),
		ca.WithDistribution(public+api.PathCRL, public+api.PathIssuerCert))
	if err != nil {
		return err
	}
	if d.verify, err = verifier(d.cfg.Attestation); err != nil {
		return err
	}
	if d.store, err = backend.Open(ctx, d.cfg.Store); err != nil {
		return err
	}
	if c, ok := d.store.(prometheus.Collector); ok { // SQLite's committer and checkpointer
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	if d.audit, err = d.openAudit(ctx, reg); err != nil {
		return err
	}
	if err := d.checkAnchor(ctx); err != nil {
		return err
	}
	if d.policyVer, err = newPolicyMetric(reg); err != nil {
		return err
	}
	if err := d.openTrust(reg); err != nil {
		return err
	}
	d.policy, err = policy.NewEngine(ctx, d.cfg.Policy.Dir, policy.WithLogger(d.log),
		policy.WithPollInterval(d.cfg.Policy.ReloadInterval), policy.WithOnLoad(d.policyLoaded),
		policy.WithGate(d.trust.reeval.Gate), policy.WithOnActive(d.trust.reeval.Active))
	if err != nil {
		return err
	}
	if d.tokens, d.keys, err = d.openTokens(ctx); err != nil {
		return err
	}
	d.ssf, err = d.openSSF(reg)
	return err
}

// openAudit opens the log, at its current shard if it is sharded, and
// checks the stored entries against its latest signed checkpoint: a
// tampered database stops the service here.
func (d *Daemon) openAudit(ctx context.Context, reg prometheus.Registerer) (*liveLog, error) {
	origin, err := AuditOrigin(ctx, d.cfg, d.store, d.pki.AuditKey.Public(), d.log)
	if err != nil {
		return nil, err
	}
	signer, err := audit.NewSigner(origin, d.pki.AuditKey)
	if err != nil {
		return nil, err
	}
	d.checkpoints, d.baseOrigin = signer.Verifier(), origin
	opts := []audit.Option{audit.WithInterval(d.cfg.Audit.CheckpointInterval), audit.WithLogger(d.log), audit.WithMetrics(reg)}
	if lk, ok := d.store.(store.Locker); ok {
		d.lease = &publisherLease{locker: lk}
		opts = append(opts, audit.WithLease(d.lease))
	}
	sh, sharded, err := currentShard(ctx, d.store)
	if err != nil {
		return nil, err
	}
	var l *audit.Log
	if sharded {
		l, err = d.shardLog(nil, sh, opts)
	} else {
		l, err = audit.New(store.AuditStorage(d.store), signer, origin, opts...)
	}
	if err != nil {
		return nil, err
	}
	ll := newLiveLog(l, sh)
	if err := d.openWitnesses(ll, sharded || d.cfg.Audit.ShardPeriod != 0, reg); err != nil {
		return nil, err
	}
	return ll, l.Init(ctx)
}

// policyLoaded logs every policy set that takes effect: its version and
// how many policies it holds.
func (d *Daemon) policyLoaded(s *policy.Set) {
	d.policyVer.loaded(s)
	ctx := context.Background()
	if err := store.RecordAudit(ctx, d.store, audit.PolicyLoaded, audit.Policy{Version: s.Version(), Policies: s.Len()}); err != nil {
		d.log.ErrorContext(ctx, "audit: cannot record a policy load", "version", s.Version(), "err", err)
		return
	}
	d.audit.Nudge()
}

func (d *Daemon) server(reg *prometheus.Registry) *server.Server {
	td := spiffeid.RequireTrustDomainFromString(d.cfg.TrustDomain)
	return &server.Server{
		Enroll: &enroll.Service{
			Verifier: d.verify, Policy: d.policy, CA: d.ca, Store: d.store,
			TrustDomain: td, ChallengeTTL: d.cfg.Attestation.ChallengeTTL, Log: d.log,
			Nudge: d.audit.Nudge,
		},
		Audit:        d.auditLog(),
		AuditShards:  d.auditShards(),
		AuditReaders: d.cfg.Audit.Readers,
		Certificates: d.store,
		Tokens:       d.tokens,
		SSF:          d.ssf,
		FeedStreams:  d.cfg.Tokens.Feed.MaxStreams, FeedStreamsPerIdentity: d.cfg.Tokens.Feed.MaxStreamsPerIdentity,
		Bundle:     d.ca.Bundle(),
		IssuerCert: d.pki.Issuer.Raw,
		CRL:        func(ctx context.Context) ([]byte, error) { return SharedCRL(ctx, d.store, d.ca, time.Now()) },
		SPIFFEBundle: func(context.Context) ([]byte, error) {
			return SPIFFEBundle(d.pki.Root, d.keys, d.cfg.Tokens.RotationLead, time.Now())
		},
		Ready: map[string]server.Checker{
			"hsm":   server.CheckFunc(d.hsm.Healthy),
			"store": server.CheckFunc(d.store.Ping),
		},
		PolicyVersion:     func() string { return d.policy.Set().Version() },
		PolicyHeld:        d.trust.heldLine,
		PolicyPlanner:     d.trust.reeval,
		PolicyOperators:   d.cfg.Policy.Operators,
		MaxRevokeFraction: d.cfg.Policy.MaxRevokeFraction,
		Log:               d.log,
		Registry:          reg,
	}
}

func (d *Daemon) tlsConfig() *tls.Config {
	return serverTLS(tls.Certificate{
		Certificate: [][]byte{d.pki.TLS.Raw, d.pki.Issuer.Raw},
		PrivateKey:  d.pki.TLSKey,
		Leaf:        d.pki.TLS,
	}, d.pki.Issuer)
}

// serverTLS is sigild's TLS configuration: TLS 1.3, cert, and client
// certificates verified when given.
//
// Client certificates are verified against the issuing CA itself as the
// trust anchor, not the root: every certificate sigild issues (the root
// allows one CA below it, and sigild makes only this one) is signed by
// issuer, so a chain up to the root says nothing more, yet checking it
// costs the root's P-384 signature on the issuing CA at every handshake.
// The issuing CA's own validity period and its name constraints (the
// trust domain) still apply, as they do to any anchor; whether the
// certificate is still live (issued here, not revoked, its device active)
// is checked for each request that uses it, against the store.
func serverTLS(cert tls.Certificate, issuer *x509.Certificate) *tls.Config {
	anchors := x509.NewCertPool()
	anchors.AddCert(issuer)
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Enrollment is server-authenticated only; renewal and tokens
		// present the workload's X.509-SVID.
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  anchors,
	}
}

// Serve answers on the configured address until ctx ends, then shuts down
// gracefully.
func (d *Daemon) Serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", d.cfg.Listen)
	if err != nil {
		return fmt.Errorf("daemon: listen: %w", err)
	}
	return d.ServeListener(ctx, ln)
}

// ServeListener is Serve on a given listener.
func (d *Daemon) ServeListener(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 8)
	go func() { errc <- d.srv.ServeTLS(ln, "", "") }()
	background := map[string]func(context.Context) error{
		"audit log":       d.audit.Run,
		"token keys":      func(ctx context.Context) error { return d.keys.Run(ctx, keyRefresh(d.cfg.Tokens.RotationLead)) },
		"revocation feed": d.tokens.Run,
		"audit anchor":    d.keepAnchor,
		"change of trust": d.trust.run,
		"token retention": d.purgeTokens,
	}
	if d.cosigner != nil {
		background["audit witnesses"] = d.cosigner.Run
	}
	if d.cfg.Audit.ShardPeriod > 0 {
		background["audit shards"] = d.runShards
	}
	if d.ssf != nil {
		background["shared signals"] = d.ssf.Run
	}
	for name, run := range background {
		go func() {
			if err := run(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("daemon: %s: %w", name, err)
			}
		}()
	}
	d.log.InfoContext(ctx, "serving", "addr", ln.Addr().String(), "trust_domain", d.cfg.TrustDomain, "policy_version", d.policy.Set().Version())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	// Cover what the last requests appended, and anchor it; then let
	// another replica publish at once.
	err := d.anchorNow(shutdown)
	if errors.Is(err, audit.ErrNoCheckpoint) {
		err = nil // a replica following another that has signed nothing yet: nothing to anchor
	}
	if d.lease != nil {
		d.lease.Release()
	}
	return err
}

// Reload re-reads the policy directory and the token signing keys (SIGHUP):
// after `sigild key rotate`, replicas publish the new key at once rather
// than at their next periodic refresh.
func (d *Daemon) Reload(ctx context.Context) error {
	return errors.Join(d.policy.Reload(), d.keys.Refresh(ctx))
}

// Close releases the HSM and the store.
func (d *Daemon) Close() {
	if d.store != nil {
		d.store.Close()
	}
	if d.hsm != nil {
		d.hsm.Close()
	}
}

func verifier(c config.Attestation) (*attest.Verifier, error) {
	var roots []*x509.Certificate
	for _, path := range c.EKRoots {
		certs, err := pemutil.ReadCertificateBundle(path)
		if err != nil {
			return nil, fmt.Errorf("daemon: attestation.ek_roots: %w", err)
		}
		roots = append(roots, certs...)
	}
	return attest.NewVerifier(attest.Config{EKRoots: roots, EKAllow: c.EKAllow, PCRs: c.PCRs})
}
