// Package daemon wires sigild: the PKI setup (Init creates the HSM keys and
// the CA hierarchy, idempotently; Load finds them), the HTTPS service (New,
// Serve), the CRL (CRL; SharedCRL, produced once for all replicas) and the operator's key commands (OpenKeys: list
// the HSM keys, rotate the token key).
package daemon

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"go.step.sm/crypto/keyutil"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/store"
)

// PKI is the CA hierarchy and TLS identity, keys in the HSM.
type PKI struct {
	Root, Issuer, TLS          *x509.Certificate
	RootKey, IssuerKey, TLSKey *hsm.Key
	// AuditKey signs the audit log's checkpoints.
	AuditKey *hsm.Key
	// TokenKey is the first version of the token signing key; the token
	// service's key set follows its rotations.
	TokenKey *hsm.Key
}

// Init creates, idempotently, the root CA, issuing CA, TLS and audit keys in
// the HSM and the certificates (stored on the token beside the keys). Existing
// keys and certificates are kept; a certificate that does not match its key is
// an error, never silently replaced. Every key created is logged in st.
//
// Replicas sharing the HSM and a store.Locker store may run Init at once:
// each waits for the others' (keysLock), then finds what they created, so
// every key is created, and logged, once.
func Init(ctx context.Context, cfg *config.Config, h *hsm.HSM, st store.Store, log *slog.Logger) (*PKI, error) {
	unlock, err := lockKeys(ctx, st)
	if err != nil {
		return nil, err
	}
	defer unlock()
	p := &PKI{}
	for _, k := range []struct {
		dst           **hsm.Key
		name, purpose string
		alg           hsm.Alg
	}{
		{&p.RootKey, cfg.CA.RootLabel, "root CA", hsm.ES384},
		{&p.IssuerKey, cfg.CA.IssuerLabel, "issuing CA", hsm.ES256},
		{&p.TLSKey, cfg.TLS.KeyLabel, "TLS", hsm.ES256},
		{&p.AuditKey, cfg.Audit.KeyLabel, "audit", hsm.ES256},
		{&p.TokenKey, cfg.Tokens.KeyLabel, "token", hsm.Alg(cfg.Tokens.Alg)},
	} {
		if *k.dst, err = ensureKey(ctx, h, st, k.name, k.purpose, k.alg, log); err != nil {
			return nil, err
		}
	}
	steps := []struct {
		label  string
		key    *hsm.Key
		dst    **x509.Certificate
		create func() (*x509.Certificate, error)
	}{
		{cfg.CA.RootLabel, p.RootKey, &p.Root, func() (*x509.Certificate, error) {
			return ca.NewRoot(p.RootKey, cfg.TrustDomain+" root CA", cfg.CA.RootTTL)
		}},
		{cfg.CA.IssuerLabel, p.IssuerKey, &p.Issuer, func() (*x509.Certificate, error) {
			return ca.NewIssuer(p.Root, p.RootKey, p.IssuerKey.Public(), cfg.TrustDomain+" issuing CA", cfg.TrustDomain, cfg.CA.IssuerTTL)
		}},
		{cfg.TLS.KeyLabel, p.TLSKey, &p.TLS, func() (*x509.Certificate, error) {
			return ca.NewServer(p.Issuer, p.IssuerKey, p.TLSKey.Public(), serverName(cfg), cfg.TLS.TTL)
		}},
	}
	for _, s := range steps {
		if *s.dst, err = ensureCertificate(ctx, h, s.label, s.key, s.create, log); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Load finds the keys and certificates Init created.
func Load(ctx context.Context, cfg *config.Config, h *hsm.HSM) (*PKI, error) {
	p := &PKI{}
	for _, s := range []struct {
		label string
		key   **hsm.Key
		cert  **x509.Certificate
	}{
		{cfg.CA.RootLabel, &p.RootKey, &p.Root},
		{cfg.CA.IssuerLabel, &p.IssuerKey, &p.Issuer},
		{cfg.TLS.KeyLabel, &p.TLSKey, &p.TLS},
	} {
		var err error
		if *s.key, err = h.Find(ctx, s.label); err != nil {
			return nil, fmt.Errorf("%w (run `sigild init` first)", err)
		}
		if *s.cert, err = h.Certificate(ctx, s.label); err != nil {
			return nil, fmt.Errorf("%w (run `sigild init` first)", err)
		}
		if !keyutil.Equal((*s.key).Public(), (*s.cert).PublicKey) {
			return nil, fmt.Errorf("daemon: certificate %q is not for key %s: a key was rotated without its certificate", s.label, (*s.key).Label())
		}
	}
	k, err := h.Find(ctx, cfg.Audit.KeyLabel)
	if err != nil {
		return nil, fmt.Errorf("%w (run `sigild init` first)", err)
	}
	p.AuditKey = k
	return p, nil
}

func ensureKey(ctx context.Context, h *hsm.HSM, st store.Store, name, purpose string, alg hsm.Alg, log *slog.Logger) (*hsm.Key, error) {
	k, err := h.Find(ctx, name)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, hsm.ErrKeyNotFound) {
		return nil, err
	}
	k, err = h.Generate(ctx, name, alg)
	if err != nil {
		return nil, err
	}
	log.InfoContext(ctx, "created HSM key", "label", k.Label(), "alg", k.Alg(), "kid", k.KID())
	entry := audit.Key{Label: k.Label(), KID: k.KID(), Alg: string(k.Alg()), Purpose: purpose}
	if err := store.RecordAudit(ctx, st, audit.KeyCreated, entry, "kid:"+k.KID()); err != nil {
		return nil, fmt.Errorf("daemon: key %s was created but could not be logged: %w", k.Label(), err)
	}
	return k, nil
}

func ensureCertificate(ctx context.Context, h *hsm.HSM, label string, key *hsm.Key, create func() (*x509.Certificate, error), log *slog.Logger) (*x509.Certificate, error) {
	cert, err := h.Certificate(ctx, label)
	switch {
	case err == nil:
		if !keyutil.Equal(key.Public(), cert.PublicKey) {
			return nil, fmt.Errorf("daemon: certificate %q on the token is not for key %s", label, key.Label())
		}
		return cert, nil
	case !errors.Is(err, hsm.ErrCertificateNotFound):
		return nil, err
	}
	if cert, err = create(); err != nil {
		return nil, err
	}
	if err := h.PutCertificate(ctx, label, cert); err != nil {
		return nil, err
	}
	log.InfoContext(ctx, "created certificate", "label", label, "subject", cert.Subject.String(), "not_after", cert.NotAfter)
	return cert, nil
}

func serverName(cfg *config.Config) ca.ServerName {
	n := ca.ServerName{DNSNames: cfg.TLS.DNSNames, ID: cfg.SVIDIdentity()}
	for _, ip := range cfg.TLS.IPAddresses {
		n.IPs = append(n.IPs, net.ParseIP(ip))
	}
	return n
}
