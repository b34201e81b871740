package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"
	"github.com/smallstep/certificates/cas/softcas"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/x509util"

	"github.com/sigil-dev/sigil/identity"
)

// Default and upper bound of an X.509-SVID's lifetime.
const (
	DefaultTTL = time.Hour
	MaxTTL     = 24 * time.Hour
)

// CA issues X.509-SVIDs with the issuing CA key. It is safe for concurrent use.
type CA struct {
	cas         *softcas.SoftCAS
	root        *x509.Certificate
	issuer      *x509.Certificate
	trustDomain spiffeid.TrustDomain
	defaultTTL  time.Duration
	maxTTL      time.Duration
	// crlURL and issuerURL, when set, go into every certificate issued:
	// its CRL distribution point and its authority information access
	// caIssuers URL (RFC 5280 §4.2.1.13, §4.2.2.1).
	crlURL, issuerURL string
}

// Option adjusts a CA.
type Option func(*CA)

// WithTTL sets the default lifetime and its cap (both > 0, def ≤ max).
func WithTTL(def, max time.Duration) Option {
	return func(c *CA) { c.defaultTTL, c.maxTTL = def, max }
}

// WithDistribution puts into every certificate issued where relying parties
// find its revocation status and its issuer: crlURL as the CRL
// distribution point and issuerURL as the caIssuers access location, each
// an absolute http or https URL (an empty one is left out).
func WithDistribution(crlURL, issuerURL string) Option {
	return func(c *CA) { c.crlURL, c.issuerURL = crlURL, issuerURL }
}

// New returns a CA that signs with signer, the key of issuer, under root.
func New(root, issuer *x509.Certificate, signer crypto.Signer, trustDomain string, opts ...Option) (*CA, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return nil, fmt.Errorf("ca: trust domain %q: %w", trustDomain, err)
	}
	if err := keyutil.VerifyPair(issuer.PublicKey, signer); err != nil {
		return nil, fmt.Errorf("ca: issuing key does not match the issuing CA certificate: %w", err)
	}
	if err := issuer.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("ca: issuing CA is not signed by the root: %w", err)
	}
	cas, err := softcas.New(context.Background(), apiv1.Options{
		CertificateChain: []*x509.Certificate{issuer, root},
		Signer:           signer,
	})
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	c := &CA{cas: cas, root: root, issuer: issuer, trustDomain: td, defaultTTL: DefaultTTL, maxTTL: MaxTTL}
	for _, o := range opts {
		o(c)
	}
	if c.defaultTTL <= 0 || c.maxTTL < c.defaultTTL {
		return nil, fmt.Errorf("ca: invalid lifetimes: default %v, max %v", c.defaultTTL, c.maxTTL)
	}
	for what, u := range map[string]string{"CRL distribution point": c.crlURL, "issuer URL": c.issuerURL} {
		if err := checkURL(u); err != nil {
			return nil, fmt.Errorf("ca: %s: %w", what, err)
		}
	}
	return c, nil
}

// Request asks for an X.509-SVID.
type Request struct {
	// CSR must be signed by Key and carry Key as its public key.
	CSR *x509.CertificateRequest
	// CSRSignatureChecked says the caller has checked CSR's signature
	// itself (attest does, for every CSR it returns), so the CA does not
	// check it a second time. The CA still checks that CSR carries Key and
	// what it asks for.
	CSRSignatureChecked bool
	// Key is the attested public key the certificate is for.
	Key crypto.PublicKey
	// ID is the SPIFFE ID; it must be in the CA's trust domain.
	ID spiffeid.ID
	// TTL is the requested lifetime: zero means the default; longer than the
	// maximum is capped.
	TTL time.Duration
	// ServerAuth adds the serverAuth extended key usage.
	ServerAuth bool
	// Evidence is recorded in the certificate's evidence extension.
	Evidence Evidence
}

// Issue signs an X.509-SVID for r. The certificate's public key is r.Key,
// never a key taken from the CSR alone.
func (c *CA) Issue(ctx context.Context, r Request) (*x509.Certificate, error) {
	if err := c.check(r); err != nil {
		return nil, err
	}
	ext, err := r.Evidence.extension()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	cert := &x509util.Certificate{
		Subject:     x509util.Subject{Organization: []string{"sigil"}},
		URIs:        x509util.MultiURL{r.ID.URL()},
		NotBefore:   now.Add(-backdate),
		NotAfter:    minTime(now.Add(c.ttl(r.TTL)), c.issuer.NotAfter),
		KeyUsage:    x509util.KeyUsage(x509.KeyUsageDigitalSignature),
		ExtKeyUsage: extKeyUsage(r.ServerAuth),
		Extensions:  []x509util.Extension{{ID: x509util.ObjectIdentifier(ext.Id), Value: ext.Value}},
		PublicKey:   r.Key,
	}
	if c.crlURL != "" {
		cert.CRLDistributionPoints = x509util.CRLDistributionPoints{c.crlURL}
	}
	if c.issuerURL != "" {
		cert.IssuingCertificateURL = x509util.IssuingCertificateURL{c.issuerURL}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ca: issue %s: %w", r.ID, err)
	}
	resp, err := c.cas.CreateCertificate(&apiv1.CreateCertificateRequest{
		Template: cert.GetCertificate(),
		Lifetime: c.ttl(r.TTL),
	})
	if err != nil {
		return nil, fmt.Errorf("ca: issue %s: %w", r.ID, err)
	}
	return resp.Certificate, nil
}

func (c *CA) check(r Request) error {
	if r.CSR == nil || r.Key == nil {
		return errors.New("ca: request needs a CSR and the attested key")
	}
	if !r.CSRSignatureChecked {
		if err := r.CSR.CheckSignature(); err != nil {
			return fmt.Errorf("ca: CSR signature: %w", err)
		}
	}
	if !keyutil.Equal(r.Key, r.CSR.PublicKey) {
		return errors.New("ca: CSR public key is not the attested key")
	}
	if err := identity.Check(r.ID); err != nil {
		return fmt.Errorf("ca: URI SAN: %w", err)
	}
	if r.ID.TrustDomain() != c.trustDomain {
		return fmt.Errorf("ca: SPIFFE ID %q is not in trust domain %q", r.ID, c.trustDomain)
	}
	if err := csrAsksFor(r.CSR, r.ID); err != nil {
		return err
	}
	if r.TTL < 0 {
		return fmt.Errorf("ca: negative lifetime %v", r.TTL)
	}
	return nil
}

// csrAsksFor checks the URI SANs a CSR asks for: none, or exactly id. The
// certificate's SAN is always id, never taken from the CSR; a CSR that
// asks for another URI, or several, is refused rather than silently
// answered with something else.
func csrAsksFor(csr *x509.CertificateRequest, id spiffeid.ID) error {
	switch {
	case len(csr.URIs) == 0:
		return nil
	case len(csr.URIs) > 1:
		return fmt.Errorf("ca: CSR asks for %d URI SANs; an X.509-SVID has one", len(csr.URIs))
	case csr.URIs[0].String() != id.String():
		return fmt.Errorf("ca: CSR asks for URI SAN %s, not the identity %s", identity.Quote(csr.URIs[0].String()), id)
	}
	return nil
}

func (c *CA) ttl(requested time.Duration) time.Duration {
	switch {
	case requested == 0:
		return c.defaultTTL
	case requested > c.maxTTL:
		return c.maxTTL
	default:
		return requested
	}
}

func extKeyUsage(serverAuth bool) x509util.ExtKeyUsage {
	if serverAuth {
		return x509util.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
	}
	return x509util.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
}

// Root returns the root CA certificate.
func (c *CA) Root() *x509.Certificate { return c.root }

// Issuer returns the issuing CA certificate.
func (c *CA) Issuer() *x509.Certificate { return c.issuer }

// Bundle returns the trust bundle: the root CA certificate as PEM.
func (c *CA) Bundle() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.root.Raw})
}

// Chain returns the PEM of the issuing CA certificate, to send after a leaf.
func (c *CA) Chain() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.issuer.Raw})
}

// Revoked names one revoked certificate for the CRL.
type Revoked struct {
	Serial *big.Int
	At     time.Time
	// Reason is an RFC 5280 CRLReason code (0 unspecified).
	Reason int
}

// RFC 5280 CRLReason codes (§5.3.1) sigil uses; Unspecified leaves the
// reason out of the entry, as the RFC asks.
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonPrivilegeWithdrawn   = 9
)

// CRL returns a DER CRL signed by the issuing CA, valid for validity. Its
// thisUpdate is backdated to absorb relying parties' clock skew, but never
// to before a revocation it lists (whichever replica's clock stamped it):
// a relying party that compares a revocation date with thisUpdate, or a
// CRL's thisUpdate with when it learnt of a revocation, must not read the
// list as older than what it holds.
func (c *CA) CRL(number *big.Int, revoked []Revoked, validity time.Duration) ([]byte, error) {
	now := time.Now()
	list := &x509.RevocationList{
		Number:     number,
		ThisUpdate: now.Add(-backdate),
		NextUpdate: now.Add(validity),
	}
	for _, r := range revoked {
		if r.At.After(list.ThisUpdate) {
			list.ThisUpdate = r.At
		}
	}
	if !list.NextUpdate.After(list.ThisUpdate) {
		list.NextUpdate = list.ThisUpdate.Add(validity)
	}
	for _, r := range revoked {
		list.RevokedCertificateEntries = append(list.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: r.Serial, RevocationTime: r.At, ReasonCode: r.Reason,
		})
	}
	resp, err := c.cas.CreateCRL(&apiv1.CreateCRLRequest{RevocationList: list})
	if err != nil {
		return nil, fmt.Errorf("ca: create CRL: %w", err)
	}
	return resp.CRL, nil
}
