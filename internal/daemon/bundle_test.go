package daemon_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/internal/daemon"
	"github.com/sigil-dev/sigil/signer"
)

// fakeKeys is a token key set as SPIFFEBundle reads it.
type fakeKeys struct {
	states []signer.KeyState
	pubs   map[string]crypto.PublicKey
}

func (k *fakeKeys) Status() []signer.KeyState { return k.states }

func (k *fakeKeys) Lookup(kid string) (signer.PublicKey, bool) {
	pub, ok := k.pubs[kid]
	return signer.PublicKey{KID: kid, Alg: "ES256", Key: pub}, ok
}

// add publishes a key version first seen at seen.
func (k *fakeKeys) add(t *testing.T, kid string, seen time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if k.pubs == nil {
		k.pubs = map[string]crypto.PublicKey{}
	}
	k.pubs[kid] = key.Public()
	k.states = append(k.states, signer.KeyState{KeyInfo: signer.KeyInfo{KID: kid, Alg: "ES256"}, Seen: seen})
}

// bundleCA is a CA of software keys under a root, for SPIFFEBundle.
func bundleCA(t *testing.T) (*ca.CA, *x509.Certificate, *x509.Certificate) {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	issuerKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root, err := ca.NewRoot(rootKey, "root", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := ca.NewIssuer(root, rootKey, issuerKey.Public(), "issuer", "sigil.test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(root, issuer, issuerKey, "sigil.test")
	if err != nil {
		t.Fatal(err)
	}
	return c, root, issuer
}

func parseBundle(t *testing.T, data []byte) *spiffebundle.Bundle {
	t.Helper()
	b, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("sigil.test"), data)
	if err != nil {
		t.Fatalf("go-spiffe does not read the bundle: %v\n%s", err, data)
	}
	return b
}

// go-spiffe's federation code reads the bundle: the root as X.509
// authority, which verifies an X.509-SVID the CA issued, the published
// token keys as JWT authorities by kid, the sequence and refresh hint.
func TestSPIFFEBundleReadByGoSPIFFE(t *testing.T) {
	t.Parallel()
	c, root, issuer := bundleCA(t)
	now := time.Now()
	var keys fakeKeys
	keys.add(t, "kid-1", now.Add(-time.Hour))
	keys.add(t, "kid-2", now.Add(-time.Minute))
	keys.add(t, "kid-3", now.Add(time.Minute)) // not seen yet: not published
	data, err := daemon.SPIFFEBundle(root, &keys, 10*time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	b := parseBundle(t, data)
	if auth := b.X509Authorities(); len(auth) != 1 || !auth[0].Equal(root) {
		t.Errorf("X.509 authorities = %d certificates, want the root", len(auth))
	}
	for kid, want := range map[string]bool{"kid-1": true, "kid-2": true, "kid-3": false} {
		if _, ok := b.FindJWTAuthority(kid); ok != want {
			t.Errorf("JWT authority %s in the bundle: %v, want %v", kid, ok, want)
		}
	}
	if hint, _ := b.RefreshHint(); hint != 5*time.Minute {
		t.Errorf("refresh hint %v, want half the rotation lead", hint)
	}
	if seq, _ := b.SequenceNumber(); seq != uint64(now.Add(-time.Minute).UnixMilli()) {
		t.Errorf("sequence %d, want the latest key's first sighting", seq)
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	req, _ := x509.ParseCertificateRequest(csr)
	leaf, err := c.Issue(context.Background(), ca.Request{CSR: req, Key: key.Public(), ID: spiffeid.RequireFromString("spiffe://sigil.test/workload/a"),
		Evidence: ca.Evidence{Digest: make([]byte, 32), EKHash: make([]byte, 32), PolicyVersion: "sha256:test"}})
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := x509svid.Verify([]*x509.Certificate{leaf, issuer}, b)
	if err != nil || id.String() != "spiffe://sigil.test/workload/a" {
		t.Fatalf("go-spiffe does not verify an issued SVID with the bundle: %v, %s", err, id)
	}
	_, otherRoot, _ := bundleCA(t)
	otherData, _ := daemon.SPIFFEBundle(otherRoot, &keys, 10*time.Minute, now)
	if _, _, err := x509svid.Verify([]*x509.Certificate{leaf, issuer}, parseBundle(t, otherData)); err == nil {
		t.Fatal("another trust domain's bundle verifies the SVID")
	}
}

// The sequence grows with each change to the bundle (a key published, a
// key withdrawn), and the same state gives the same bytes, as replicas
// reading one store do.
func TestSPIFFEBundleSequence(t *testing.T) {
	t.Parallel()
	_, root, _ := bundleCA(t)
	start := time.Now() // after the root's notBefore
	var keys fakeKeys
	keys.add(t, "kid-1", start)
	sequence := func(now time.Time) (uint64, []byte) {
		t.Helper()
		data, err := daemon.SPIFFEBundle(root, &keys, time.Minute, now)
		if err != nil {
			t.Fatal(err)
		}
		seq, _ := parseBundle(t, data).SequenceNumber()
		return seq, data
	}
	first, data := sequence(start.Add(time.Minute))
	if again, same := sequence(start.Add(2 * time.Minute)); again != first || string(same) != string(data) {
		t.Fatalf("unchanged bundle: sequence %d then %d, or other bytes", first, again)
	}
	keys.add(t, "kid-2", start.Add(3*time.Minute))
	published, _ := sequence(start.Add(4 * time.Minute))
	keys.states[0].Withdrawn = start.Add(5 * time.Minute)
	withdrawn, data := sequence(start.Add(6 * time.Minute))
	if !(first < published && published < withdrawn) {
		t.Errorf("sequences %d, %d (key published), %d (key withdrawn): want each larger", first, published, withdrawn)
	}
	if _, ok := parseBundle(t, data).FindJWTAuthority("kid-1"); ok {
		t.Error("a withdrawn key is still in the bundle")
	}
}
