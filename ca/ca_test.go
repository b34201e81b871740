package ca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/sigil-dev/sigil/ca"
)

const trustDomain = "sigil.test"

type fixture struct {
	ca        *ca.CA
	root      *x509.Certificate
	issuer    *x509.Certificate
	issuerKey crypto.Signer
}

func newFixture(t *testing.T, opts ...ca.Option) fixture {
	t.Helper()
	rootKey, issuerKey := signers(t)
	root, err := ca.NewRoot(rootKey, "sigil test root", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := ca.NewIssuer(root, rootKey, issuerKey.Public(), "sigil test issuing CA", trustDomain, 12*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(root, issuer, issuerKey, trustDomain, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{ca: c, root: root, issuer: issuer, issuerKey: issuerKey}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newCSR(t *testing.T, key crypto.Signer) *x509.CertificateRequest {
	t.Helper()
	return newCSRFor(t, key)
}

// newCSRFor is a CSR by key asking for the URI SANs uris.
func newCSRFor(t *testing.T, key crypto.Signer, uris ...string) *x509.CertificateRequest {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func evidence() ca.Evidence {
	d := sha256.Sum256([]byte("evidence"))
	ek := sha256.Sum256([]byte("ek"))
	return ca.Evidence{Digest: d[:], EKHash: ek[:], PolicyVersion: "sha256:0123abcd"}
}

func request(t *testing.T, key crypto.Signer, id string) ca.Request {
	t.Helper()
	return ca.Request{
		CSR:      newCSR(t, key),
		Key:      key.Public(),
		ID:       spiffeid.RequireFromString(id),
		Evidence: evidence(),
	}
}

func TestIssueProfile(t *testing.T) {
	f := newFixture(t)
	key := newKey(t)
	cert, err := f.ca.Issue(context.Background(), request(t, key, "spiffe://sigil.test/workload/orders"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.URIs; len(got) != 1 || got[0].String() != "spiffe://sigil.test/workload/orders" {
		t.Errorf("URI SANs = %v, want the SPIFFE ID alone", got)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature || cert.IsCA {
		t.Errorf("key usage %v, CA %v: want digitalSignature only, not a CA", cert.KeyUsage, cert.IsCA)
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("EKU = %v, want clientAuth", cert.ExtKeyUsage)
	}
	if life := cert.NotAfter.Sub(time.Now()); life > ca.DefaultTTL || life < ca.DefaultTTL-time.Minute {
		t.Errorf("lifetime %v, want about %v", life, ca.DefaultTTL)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Error("certificate key is not the requested key")
	}
	got, err := ca.EvidenceOf(cert)
	if err != nil {
		t.Fatal(err)
	}
	want := evidence()
	if !bytes.Equal(got.Digest, want.Digest) || !bytes.Equal(got.EKHash, want.EKHash) || got.PolicyVersion != want.PolicyVersion {
		t.Errorf("evidence = %+v, want %+v", got, want)
	}
}

func TestIssueIsAnX509SVID(t *testing.T) {
	f := newFixture(t)
	cert, err := f.ca.Issue(context.Background(), request(t, newKey(t), "spiffe://sigil.test/workload/a"))
	if err != nil {
		t.Fatal(err)
	}
	bundle := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(trustDomain), []*x509.Certificate{f.root})
	id, _, err := x509svid.Verify([]*x509.Certificate{cert, f.issuer}, bundle)
	if err != nil {
		t.Fatalf("go-spiffe rejects the SVID: %v", err)
	}
	if id.String() != "spiffe://sigil.test/workload/a" {
		t.Errorf("SVID ID = %s", id)
	}
}

func TestIssueVerifiesWithOpenSSL(t *testing.T) {
	f := newFixture(t)
	cert, err := f.ca.Issue(context.Background(), request(t, newKey(t), "spiffe://sigil.test/workload/a"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, c *x509.Certificate) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	out, err := exec.Command("openssl", "verify", "-purpose", "sslclient",
		"-CAfile", write("root.pem", f.root), "-untrusted", write("issuer.pem", f.issuer),
		write("leaf.pem", cert)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
}

func TestIssueRejects(t *testing.T) {
	f := newFixture(t)
	key := newKey(t)
	tests := []struct {
		name   string
		mutate func(*ca.Request)
		want   string
	}{
		{"csr-of-another-key", func(r *ca.Request) { r.CSR = newCSR(t, newKey(t)) }, "CSR public key is not the attested key"},
		{"other-trust-domain", func(r *ca.Request) { r.ID = spiffeid.RequireFromString("spiffe://evil.test/workload/a") }, `not in trust domain "sigil.test"`},
		{"no-csr", func(r *ca.Request) { r.CSR = nil }, "needs a CSR"},
		{"csr-asks-for-a-3000-byte-id", func(r *ca.Request) {
			r.CSR = newCSRFor(t, key, "spiffe://sigil.test/workload/"+strings.Repeat("x", 2971))
		}, "ca: CSR asks for URI SAN \"spiffe://sigil.test/workload/xxx"},
		{"csr-asks-for-another-id", func(r *ca.Request) { r.CSR = newCSRFor(t, key, "spiffe://sigil.test/workload/b") }, "not the identity spiffe://sigil.test/workload/a"},
		{"csr-asks-for-two-ids", func(r *ca.Request) {
			r.CSR = newCSRFor(t, key, "spiffe://sigil.test/workload/a", "spiffe://sigil.test/workload/b")
		}, "asks for 2 URI SANs"},
		{"id-over-spiffe-limit", func(r *ca.Request) {
			r.ID = spiffeid.RequireFromString("spiffe://sigil.test/workload/" + strings.Repeat("x", 2971))
		}, "ca: URI SAN: invalid SPIFFE ID: 3000 bytes, longer than 2048"},
		{"negative-ttl", func(r *ca.Request) { r.TTL = -time.Second }, "negative lifetime"},
		{"evidence-without-digest", func(r *ca.Request) { r.Evidence.Digest = nil }, "must be SHA-256 digests"},
		{"evidence-without-policy", func(r *ca.Request) { r.Evidence.PolicyVersion = "" }, "without a policy version"},
		{"tampered-csr", func(r *ca.Request) { r.CSR.Signature[len(r.CSR.Signature)-1] ^= 1 }, "CSR signature"},
		// A caller that checked the CSR's signature itself still gets
		// every other check.
		{"checked-csr-of-another-key", func(r *ca.Request) {
			r.CSR, r.CSRSignatureChecked = newCSR(t, newKey(t)), true
		}, "CSR public key is not the attested key"},
		{"checked-csr-asks-for-another-id", func(r *ca.Request) {
			r.CSR, r.CSRSignatureChecked = newCSRFor(t, key, "spiffe://sigil.test/workload/b"), true
		}, "not the identity spiffe://sigil.test/workload/a"},
		{"checked-no-csr", func(r *ca.Request) { r.CSR, r.CSRSignatureChecked = nil, true }, "needs a CSR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request(t, key, "spiffe://sigil.test/workload/a")
			tt.mutate(&r)
			_, err := f.ca.Issue(context.Background(), r)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Issue error = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestIssueSkipsCheckedCSRSignature: a CSR whose signature the caller
// checked (attest, in enrollment and renewal) is not checked again; the
// same CSR unchecked is refused (TestIssueRejects/tampered-csr).
func TestIssueSkipsCheckedCSRSignature(t *testing.T) {
	f := newFixture(t)
	key := newKey(t)
	r := request(t, key, "spiffe://sigil.test/workload/a")
	r.CSR.Signature[len(r.CSR.Signature)-1] ^= 1
	r.CSRSignatureChecked = true
	cert, err := f.ca.Issue(context.Background(), r)
	if err != nil {
		t.Fatalf("Issue with a checked CSR: %v", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Error("certificate key is not the attested key")
	}
}

func TestTTLIsCapped(t *testing.T) {
	f := newFixture(t, ca.WithTTL(10*time.Minute, 30*time.Minute))
	r := request(t, newKey(t), "spiffe://sigil.test/workload/a")
	r.TTL = 48 * time.Hour
	cert, err := f.ca.Issue(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if life := time.Until(cert.NotAfter); life > 30*time.Minute {
		t.Errorf("lifetime %v exceeds the 30m cap", life)
	}
}

// The issuing CA's name constraint holds even if a caller got past Issue's
// own check: a certificate for another trust domain does not verify.
func TestIssuerNameConstraint(t *testing.T) {
	f := newFixture(t)
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(7),
		URIs:         []*url.URL{spiffeid.RequireFromString("spiffe://evil.test/x").URL()},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, f.issuer, key.Public(), f.issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(f.root)
	inter := x509.NewCertPool()
	inter.AddCert(f.issuer)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	var invalid x509.CertificateInvalidError
	if !errors.As(err, &invalid) || invalid.Reason != x509.CANotAuthorizedForThisName {
		t.Fatalf("verify of an out-of-domain leaf = %v, want CANotAuthorizedForThisName", err)
	}
}

func TestServerCertificate(t *testing.T) {
	f := newFixture(t)
	key := newKey(t)
	cert, err := ca.NewServer(f.issuer, f.issuerKey, key.Public(), ca.ServerName{
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, ID: "spiffe://sigil.test/sigild",
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(f.root)
	inter := x509.NewCertPool()
	inter.AddCert(f.issuer)
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: roots, Intermediates: inter}); err != nil {
		t.Fatalf("server certificate does not verify for localhost: %v", err)
	}
}

func TestCRL(t *testing.T) {
	f := newFixture(t)
	der, err := f.ca.CRL(big.NewInt(3), []ca.Revoked{{Serial: big.NewInt(42), At: time.Now(), Reason: 4}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(f.issuer); err != nil {
		t.Fatalf("CRL not signed by the issuing CA: %v", err)
	}
	if n := len(crl.RevokedCertificateEntries); n != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Int64() != 42 {
		t.Fatalf("CRL entries = %+v", crl.RevokedCertificateEntries)
	}
}
