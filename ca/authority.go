package ca

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"go.step.sm/crypto/x509util"
)

// backdate absorbs clock skew between sigil and relying parties.
const backdate = time.Minute

// NewRoot creates a self-signed root CA certificate for the key behind signer.
func NewRoot(signer crypto.Signer, name string, lifetime time.Duration) (*x509.Certificate, error) {
	now := time.Now()
	tmpl := (&x509util.Certificate{
		Subject:          x509util.Subject{CommonName: name, Organization: []string{"sigil"}},
		NotBefore:        now.Add(-backdate),
		NotAfter:         now.Add(lifetime),
		KeyUsage:         x509util.KeyUsage(x509.KeyUsageCertSign | x509.KeyUsageCRLSign),
		BasicConstraints: &x509util.BasicConstraints{IsCA: true, MaxPathLen: 1},
		PublicKey:        signer.Public(),
	}).GetCertificate()
	tmpl.Issuer = tmpl.Subject
	cert, err := x509util.CreateCertificate(tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("ca: create root %q: %w", name, err)
	}
	return cert, nil
}

// NewIssuer creates the issuing CA certificate for pub, signed by the root.
// The issuing CA may only issue URI SANs inside trustDomain and no further CAs.
func NewIssuer(root *x509.Certificate, rootSigner crypto.Signer, pub crypto.PublicKey, name, trustDomain string, lifetime time.Duration) (*x509.Certificate, error) {
	now := time.Now()
	c := &x509util.Certificate{
		Subject:          x509util.Subject{CommonName: name, Organization: []string{"sigil"}},
		NotBefore:        now.Add(-backdate),
		NotAfter:         minTime(now.Add(lifetime), root.NotAfter),
		KeyUsage:         x509util.KeyUsage(x509.KeyUsageCertSign | x509.KeyUsageCRLSign),
		BasicConstraints: &x509util.BasicConstraints{IsCA: true, MaxPathLen: 0},
		NameConstraints: &x509util.NameConstraints{
			Critical:            true,
			PermittedURIDomains: []string{trustDomain},
		},
		PublicKey: pub,
	}
	return sign(c, root, rootSigner, "issuing CA "+name)
}

// ServerName names the sigild TLS endpoint: its DNS names and IP addresses,
// and the SPIFFE ID it presents.
type ServerName struct {
	DNSNames []string
	IPs      []net.IP
	ID       string
}

// NewServer creates sigild's TLS server certificate for pub, signed by the
// issuing CA.
func NewServer(issuer *x509.Certificate, issuerSigner crypto.Signer, pub crypto.PublicKey, name ServerName, lifetime time.Duration) (*x509.Certificate, error) {
	if len(name.DNSNames) == 0 && len(name.IPs) == 0 {
		return nil, errors.New("ca: server certificate needs a DNS name or an IP address")
	}
	id, err := url.Parse(name.ID)
	if err != nil || name.ID == "" {
		return nil, fmt.Errorf("ca: server SPIFFE ID %q: invalid", name.ID)
	}
	now := time.Now()
	c := &x509util.Certificate{
		Subject:     x509util.Subject{CommonName: firstName(name)},
		DNSNames:    name.DNSNames,
		IPAddresses: name.IPs,
		URIs:        x509util.MultiURL{id},
		NotBefore:   now.Add(-backdate),
		NotAfter:    minTime(now.Add(lifetime), issuer.NotAfter),
		KeyUsage:    x509util.KeyUsage(x509.KeyUsageDigitalSignature),
		ExtKeyUsage: x509util.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		PublicKey:   pub,
	}
	return sign(c, issuer, issuerSigner, "server certificate")
}

func sign(c *x509util.Certificate, parent *x509.Certificate, signer crypto.Signer, what string) (*x509.Certificate, error) {
	tmpl := c.GetCertificate()
	tmpl.Issuer = parent.Subject
	cert, err := x509util.CreateCertificate(tmpl, parent, c.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("ca: create %s: %w", what, err)
	}
	return cert, nil
}

func firstName(n ServerName) string {
	if len(n.DNSNames) > 0 {
		return n.DNSNames[0]
	}
	return n.IPs[0].String()
}

// checkURL accepts "" or an absolute http or https URL without a fragment.
func checkURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return err
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("%q is not an absolute http or https URL", s)
	case u.Fragment != "" || u.User != nil:
		return fmt.Errorf("%q has a fragment or user information", s)
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
