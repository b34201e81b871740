package ca_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/ca"
)

const (
	crlURL    = "https://sigil.test:8443/v1/crl"
	issuerURL = "https://sigil.test:8443/v1/issuer.crt"
)

// Certificates name where their CRL and their issuer are, so that a TLS
// stack that checks revocation finds them; without the option they name
// none.
func TestIssueDistribution(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ca.WithDistribution(crlURL, issuerURL))
	cert, err := f.ca.Issue(context.Background(), request(t, newKey(t), "spiffe://sigil.test/workload/a"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cert.CRLDistributionPoints, []string{crlURL}) {
		t.Errorf("CRL distribution points = %v, want %s", cert.CRLDistributionPoints, crlURL)
	}
	if !slices.Equal(cert.IssuingCertificateURL, []string{issuerURL}) {
		t.Errorf("caIssuers = %v, want %s", cert.IssuingCertificateURL, issuerURL)
	}
	plain, err := newFixture(t).ca.Issue(context.Background(), request(t, newKey(t), "spiffe://sigil.test/workload/a"))
	if err != nil {
		t.Fatal(err)
	}
	if len(plain.CRLDistributionPoints) != 0 || len(plain.IssuingCertificateURL) != 0 {
		t.Errorf("without WithDistribution: %v, %v", plain.CRLDistributionPoints, plain.IssuingCertificateURL)
	}
}

func TestNewRejectsDistributionURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"ftp://sigil.test/crl", "/v1/crl", "https://sigil.test/crl#x", "https://user@sigil.test/crl"} {
		rootKey, issuerKey := signers(t)
		root, _ := ca.NewRoot(rootKey, "root", time.Hour)
		issuer, _ := ca.NewIssuer(root, rootKey, issuerKey.Public(), "issuer", trustDomain, time.Hour)
		if _, err := ca.New(root, issuer, issuerKey, trustDomain, ca.WithDistribution(u, "")); err == nil || !strings.Contains(err.Error(), "CRL distribution point") {
			t.Errorf("%s: %v, want an error naming the CRL distribution point", u, err)
		}
	}
}

// thisUpdate is backdated for clock skew, but never to before a
// revocation the CRL lists: not one made a moment ago, nor one stamped by
// another replica whose clock runs ahead.
func TestCRLThisUpdateNotBeforeRevocation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, at := range []time.Time{time.Now(), time.Now().Add(20 * time.Second)} {
		der, err := f.ca.CRL(big.NewInt(1), []ca.Revoked{{Serial: big.NewInt(7), At: at}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		rev := crl.RevokedCertificateEntries[0].RevocationTime
		if crl.ThisUpdate.Before(rev) {
			t.Errorf("thisUpdate %v is before the revocation it lists, %v", crl.ThisUpdate, rev)
		}
		if !crl.NextUpdate.After(crl.ThisUpdate) {
			t.Errorf("nextUpdate %v not after thisUpdate %v", crl.NextUpdate, crl.ThisUpdate)
		}
	}
	der, err := f.ca.CRL(big.NewInt(2), nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crl, _ := x509.ParseRevocationList(der)
	if skew := time.Since(crl.ThisUpdate); skew < 30*time.Second {
		t.Errorf("an empty CRL's thisUpdate is %v ago, want it backdated for clock skew", skew)
	}
}

// OpenSSL, as a TLS stack that checks CRLs does, refuses a revoked
// certificate and reads its reason code.
func TestCRLRevokesForOpenSSL(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ca.WithDistribution(crlURL, issuerURL))
	cert, err := f.ca.Issue(context.Background(), request(t, newKey(t), "spiffe://sigil.test/workload/a"))
	if err != nil {
		t.Fatal(err)
	}
	der, err := f.ca.CRL(big.NewInt(5), []ca.Revoked{{Serial: cert.SerialNumber, At: time.Now(), Reason: ca.ReasonKeyCompromise}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root, issuer, leaf := write("root.pem", "CERTIFICATE", f.root.Raw), write("issuer.pem", "CERTIFICATE", f.issuer.Raw), write("leaf.pem", "CERTIFICATE", cert.Raw)
	crl := write("crl.pem", "X509 CRL", der)
	out, err := exec.Command("openssl", "verify", "-crl_check", "-CAfile", root, "-untrusted", issuer, "-CRLfile", crl, leaf).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "certificate revoked") {
		t.Errorf("openssl verify -crl_check accepted a revoked certificate: %v\n%s", err, out)
	}
	text, err := exec.Command("openssl", "crl", "-in", crl, "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(string(text), "Key Compromise") {
		t.Errorf("openssl crl does not read the reason code: %v\n%s", err, text)
	}
}
