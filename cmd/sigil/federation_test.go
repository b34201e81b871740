package main_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// stackGet fetches url from the stack's sigild, trusting its bundle.
func stackGet(t testing.TB, s *stack, url string) []byte {
	t.Helper()
	roots := x509.NewCertPool()
	for _, c := range readPEM(t, s.env["SIGIL_CA_BUNDLE"]) {
		roots.AddCert(c)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, body)
	}
	return body
}

// checkFederation: sigild's SPIFFE bundle, read by go-spiffe's federation
// code, verifies the workload's real X.509-SVID; and the certificate names
// where its issuer and its CRL are, sigild serves them there.
func checkFederation(t *testing.T, s *stack, state string) {
	t.Helper()
	chain := readPEM(t, filepath.Join(state, "cert.pem"))
	bundle, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("sigil.test"), stackGet(t, s, s.env["SIGIL_SERVER"]+"/v1/spiffe-bundle"))
	if err != nil {
		t.Fatalf("go-spiffe does not read sigild's SPIFFE bundle: %v", err)
	}
	if id, _, err := x509svid.Verify(chain, bundle); err != nil || id.String() != "spiffe://sigil.test/workload/orders" {
		t.Fatalf("the SPIFFE bundle does not verify the workload's SVID: %v %s", err, id)
	}
	if len(bundle.JWTAuthorities()) == 0 {
		t.Error("the SPIFFE bundle has no jwt-svid keys (the token signing keys)")
	}
	leaf := chain[0]
	if len(leaf.IssuingCertificateURL) != 1 || len(leaf.CRLDistributionPoints) != 1 {
		t.Fatalf("certificate names issuers %v and CRLs %v, want one of each", leaf.IssuingCertificateURL, leaf.CRLDistributionPoints)
	}
	issuer, err := x509.ParseCertificate(stackGet(t, s, leaf.IssuingCertificateURL[0]))
	if err != nil || !issuer.Equal(chain[1]) {
		t.Fatalf("the issuer URL %s serves %v, err %v; want the issuing CA", leaf.IssuingCertificateURL[0], issuer, err)
	}
	if err := leaf.CheckSignatureFrom(issuer); err != nil {
		t.Fatalf("the certificate served at its issuer URL did not sign it: %v", err)
	}
}

// distributedCRL fetches the CRL from the distribution point a
// certificate names, and checks what every relying party relies on: the
// issuing CA signed it, and it lists each of certs with reason, no later
// than its thisUpdate.
func distributedCRL(t *testing.T, s *stack, issuer *x509.Certificate, reason int, certs ...*x509.Certificate) {
	t.Helper()
	crl, err := x509.ParseRevocationList(stackGet(t, s, certs[0].CRLDistributionPoints[0]))
	if err != nil {
		t.Fatalf("CRL: %v", err)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		t.Fatalf("CRL is not signed by the issuing CA: %v", err)
	}
	for _, c := range certs {
		var found bool
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(c.SerialNumber) != 0 {
				continue
			}
			found = true
			if e.ReasonCode != reason {
				t.Errorf("certificate %x is listed with reason %d, want %d", c.SerialNumber, e.ReasonCode, reason)
			}
			if crl.ThisUpdate.Before(e.RevocationTime) {
				t.Errorf("CRL thisUpdate %v is before the revocation of %x it lists (%v)", crl.ThisUpdate, c.SerialNumber, e.RevocationTime)
			}
		}
		if !found {
			t.Errorf("certificate %x is not in the CRL", c.SerialNumber)
		}
	}
}
