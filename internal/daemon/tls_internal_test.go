package daemon

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/ca"
)

// pkiForTLS is a root, its issuing CA for sigil.test and a server
// certificate, with software keys.
type pkiForTLS struct {
	root, issuer *x509.Certificate
	rootKey      *ecdsa.PrivateKey
	issuerKey    *ecdsa.PrivateKey
	server       tls.Certificate
}

func newKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newPKIForTLS(t *testing.T, lifetime time.Duration) pkiForTLS {
	t.Helper()
	p := pkiForTLS{rootKey: newKey(t, elliptic.P384()), issuerKey: newKey(t, elliptic.P256())}
	var err error
	if p.root, err = ca.NewRoot(p.rootKey, "sigil.test root CA", time.Hour); err != nil {
		t.Fatal(err)
	}
	if p.issuer, err = ca.NewIssuer(p.root, p.rootKey, p.issuerKey.Public(), "sigil.test issuing CA", "sigil.test", lifetime); err != nil {
		t.Fatal(err)
	}
	tlsKey := newKey(t, elliptic.P256())
	srv, err := ca.NewServer(p.issuer, p.issuerKey, tlsKey.Public(), ca.ServerName{DNSNames: []string{"sigild"}, ID: "spiffe://sigil.test/sigild"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p.server = tls.Certificate{Certificate: [][]byte{srv.Raw, p.issuer.Raw}, PrivateKey: tlsKey, Leaf: srv}
	return p
}

// leaf is a client certificate for id signed by parent's key.
func leaf(t *testing.T, id string, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t, elliptic.P256())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// handshake presents chain as client certificate to serverTLS and returns
// the server's handshake error and the chains it verified.
func handshake(t *testing.T, p pkiForTLS, key crypto.Signer, chain ...*x509.Certificate) ([][]*x509.Certificate, error) {
	t.Helper()
	cs, ss := net.Pipe()
	defer cs.Close()
	defer ss.Close()
	cert := tls.Certificate{PrivateKey: key}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	client := tls.Client(cs, &tls.Config{
		// The server's side is under test; an expired issuing CA would
		// make the client refuse the server first.
		MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, //nolint:gosec // see above

		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
	})
	go func() {
		if client.Handshake() == nil {
			_, _ = client.Read(make([]byte, 1)) // until the server ends or refuses
		}
		client.Close()
	}()
	server := tls.Server(ss, serverTLS(p.server, p.issuer))
	err := server.Handshake()
	return server.ConnectionState().VerifiedChains, err
}

// TestClientCertificatesAnchoredAtIssuer: sigild verifies client
// certificates up to its issuing CA, not the root; what it issues is
// accepted with or without the issuing CA in the chain, and nothing else
// is: another CA under the same names, a self-signed certificate naming our issuing CA, a certificate
// outside the trust domain, the root signing a leaf directly, an expired
// issuing CA.
func TestClientCertificatesAnchoredAtIssuer(t *testing.T) {
	t.Parallel()
	p := newPKIForTLS(t, time.Hour)
	ours, ourKey := leaf(t, "spiffe://sigil.test/workload/a", p.issuer, p.issuerKey)

	for name, chain := range map[string][]*x509.Certificate{"with issuer": {ours, p.issuer}, "leaf only": {ours}} {
		chains, err := handshake(t, p, ourKey, chain...)
		if err != nil {
			t.Fatalf("%s: our own certificate refused: %v", name, err)
		}
		if len(chains) == 0 || !chains[0][0].Equal(ours) || !chains[0][len(chains[0])-1].Equal(p.issuer) {
			t.Fatalf("%s: verified chains %v; want ours up to the issuing CA", name, chains)
		}
	}

	other := newPKIForTLS(t, time.Hour) // same names, other keys
	foreign, foreignKey := leaf(t, "spiffe://sigil.test/workload/a", other.issuer, other.issuerKey)
	selfKey := newKey(t, elliptic.P256())
	self, selfLeafKey := leaf(t, "spiffe://sigil.test/workload/a", &x509.Certificate{Subject: p.issuer.Subject}, selfKey)
	outside, outsideKey := leaf(t, "spiffe://elsewhere.test/workload/a", p.issuer, p.issuerKey)
	byRoot, byRootKey := leaf(t, "spiffe://sigil.test/workload/a", p.root, p.rootKey)

	expired := newPKIForTLS(t, -time.Minute) // the issuing CA's NotAfter has passed
	late, lateKey := leaf(t, "spiffe://sigil.test/workload/a", expired.issuer, expired.issuerKey)

	for _, c := range []struct {
		name  string
		p     pkiForTLS
		key   crypto.Signer
		chain []*x509.Certificate
		want  string
	}{
		{"another CA with the same names", p, foreignKey, []*x509.Certificate{foreign, other.issuer}, "unknown authority"},
		{"another CA, presented with ours", p, foreignKey, []*x509.Certificate{foreign, p.issuer}, "unknown authority"},
		{"self-signed, naming our issuing CA", p, selfLeafKey, []*x509.Certificate{self, p.issuer}, "unknown authority"},
		{"outside the trust domain", p, outsideKey, []*x509.Certificate{outside, p.issuer}, "not authorized to sign for this name"},
		{"signed by the root directly", p, byRootKey, []*x509.Certificate{byRoot, p.root}, "unknown authority"},
		{"expired issuing CA", expired, lateKey, []*x509.Certificate{late, expired.issuer}, "expired"},
	} {
		chains, err := handshake(t, c.p, c.key, c.chain...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: handshake error %v, verified chains %v; want a refusal saying %q", c.name, err, chains, c.want)
		}
	}
}
