// Package tokenstest builds a token service for tests as sigild wires it:
// the CA and token signing keys on a fresh SoftHSM token, a SQLite store,
// the dev policy, and workload certificates issued by the CA and recorded
// as if enrolled on the device of a recorded, genuine enrollment
// (attest/testdata/evidence-genuine.json). Tests that use it must run
// testenv.Main from TestMain.
package tokenstest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/hsmkeys"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/testenv"
)

// Names of the test environment.
const (
	Issuer      = "https://sigil.test"
	TrustDomain = "sigil.test"
	// Admin may introspect and revoke any token.
	Admin = "spiffe://sigil.test/ops/admin"
	// OpaqueAudience gets reference tokens.
	OpaqueAudience = "spiffe://sigil.test/workload/legacy"
	IdPIssuer      = "https://idp.test"
)

// Env is a token service and what it is made of.
type Env struct {
	Service *tokens.Service
	Config  tokens.Config
	Store   store.Store
	HSM     *hsm.HSM
	Keys    *signer.KeySet
	Minter  *signer.Minter
	CA      *ca.CA
	Policy  *policy.Set
	IdP     *IdP
	// DBPath is the SQLite file of Store (New), empty for NewOn.
	DBPath string

	issuerKey crypto.Signer
	evidence  ca.Evidence
	ekHash    string
	digest    string
}

// Workload is a client: its key and its certificate, issued by the Env's
// CA (or another).
type Workload struct {
	ID   string
	Key  *ecdsa.PrivateKey
	Cert *x509.Certificate
	// Chain is the certificate and its issuing CA's, for TLS.
	Chain [][]byte
}

// New builds the environment on a SQLite store of its own; opts adjust
// the service's configuration. The service's revocation feed runs until
// the test ends.
func New(t testing.TB, opts ...func(*tokens.Config)) *Env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sigil.db")
	e := NewOn(t, "sqlite:"+path, opts...)
	e.DBPath = path
	return e
}

// NewOn is New on the store at dsn (a fresh database: testenv.PostgresDB),
// which replicas (Start, with another handle as Config.Store) may share.
func NewOn(t testing.TB, dsn string, opts ...func(*tokens.Config)) *Env {
	t.Helper()
	ctx := t.Context()
	e := &Env{}
	e.openHSM(t)
	e.newCA(t)
	var err error
	if e.Store, err = backend.Open(ctx, dsn); err != nil {
		t.Fatalf("backend.Open: %v", err)
	}
	t.Cleanup(func() { e.Store.Close() })
	if e.Policy, err = policy.Load(filepath.Join(root(), "testenv", "policy")); err != nil {
		t.Fatalf("policy.Load: %v", err)
	}
	verifier := e.recordDevice(t)
	e.IdP = newIdP(t)
	e.newSigner(t)
	verify, err := signer.NewVerifier(Issuer, e.Keys, signer.WithExternalIssuers(e.IdP.Issuer()), signer.WithLogger(Logger(t)))
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	e.Config = tokens.Config{
		Issuer: Issuer, TrustDomain: TrustDomain, Minter: e.Minter, Keys: e.Keys, Verifier: verify,
		Attest: verifier, Policy: e.Policy, Store: e.Store,
		MaxLifetime: 15 * time.Minute, DefaultTTL: 5 * time.Minute, MaxActDepth: 2,
		OpaqueAudiences: []string{OpaqueAudience}, Admins: []string{Admin},
		Log: Logger(t), PollInterval: 50 * time.Millisecond,
	}
	for _, o := range opts {
		o(&e.Config)
	}
	e.Service = e.Start(t, e.Config)
	return e
}

// Start makes a service of c and runs its revocation feed until the test
// ends: another replica on the same store, or the same one with a
// different configuration.
func (e *Env) Start(t testing.TB, c tokens.Config) *tokens.Service {
	t.Helper()
	svc, err := tokens.New(c)
	if err != nil {
		t.Fatalf("tokens.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = svc.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return svc
}

func (e *Env) openHSM(t testing.TB) {
	t.Helper()
	tok := testenv.SoftHSM(t)
	h, err := hsm.Open(t.Context(), tok.URI)
	if err != nil {
		t.Fatalf("hsm.Open: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	e.HSM = h
}

// newCA makes a root and an issuing CA with keys on the HSM.
func (e *Env) newCA(t testing.TB) {
	t.Helper()
	ctx := t.Context()
	rootKey, err := e.HSM.Generate(ctx, "root", hsm.ES256)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	issuerKey, err := e.HSM.Generate(ctx, "issuer", hsm.ES256)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	c, err := NewCA(rootKey, issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	e.CA, e.issuerKey = c, issuerKey
}

// NewCA makes a CA for the test trust domain with the given keys.
func NewCA(rootKey, issuerKey crypto.Signer) (*ca.CA, error) {
	r, err := ca.NewRoot(rootKey, "sigil test root", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	i, err := ca.NewIssuer(r, rootKey, issuerKey.Public(), "sigil test issuing CA", TrustDomain, 12*time.Hour)
	if err != nil {
		return nil, err
	}
	return ca.New(r, i, issuerKey, TrustDomain)
}

// newSigner makes the token signing key, its key set and minter.
func (e *Env) newSigner(t testing.TB) {
	t.Helper()
	ctx := t.Context()
	if _, err := e.HSM.Generate(ctx, "jwt", hsm.ES256); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	var err error
	if e.Keys, err = signer.NewKeySet(hsmkeys.New(e.HSM), "jwt", e.Store, signer.WithRetain(time.Hour), signer.WithLogger(Logger(t))); err != nil {
		t.Fatalf("NewKeySet: %v", err)
	}
	if err := e.Keys.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if e.Minter, err = signer.NewMinter(Issuer, e.Keys, signer.WithLogger(Logger(t))); err != nil {
		t.Fatalf("NewMinter: %v", err)
	}
}

// recordDevice stores the device and evidence of the recorded enrollment
// and returns a verifier that trusts its EK CA.
func (e *Env) recordDevice(t testing.TB) *attest.Verifier {
	t.Helper()
	ctx := t.Context()
	data, err := os.ReadFile(filepath.Join(root(), "attest", "testdata", "ek-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	ekCA, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	v, err := attest.NewVerifier(attest.Config{EKRoots: []*x509.Certificate{ekCA}, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}})
	if err != nil {
		t.Fatal(err)
	}
	if data, err = os.ReadFile(filepath.Join(root(), "attest", "testdata", "evidence-genuine.json")); err != nil {
		t.Fatal(err)
	}
	ev, err := attest.ParseEvidence(data)
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.Reverify(ev)
	if err != nil {
		t.Fatalf("recorded evidence: %v", err)
	}
	bundle, _ := json.Marshal(ev)
	digest, _ := ev.Digest()
	ekHash, _ := hex.DecodeString(res.EK.Hash)
	e.ekHash, e.digest = res.EK.Hash, hex.EncodeToString(digest)
	e.evidence = ca.Evidence{Digest: digest, EKHash: ekHash, PolicyVersion: e.Policy.Version()}
	now := time.Now()
	err = e.Store.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.BindDevice(ctx, store.Device{EKHash: res.EK.Hash, EKCertDER: ev.EKCertificate, EKPublicDER: ev.EKPublic,
			AKHash: res.AK.Hash, AKPublic: ev.AK.Public}, now); err != nil {
			return err
		}
		return tx.PutEvidence(ctx, store.Evidence{Digest: e.digest, EKHash: res.EK.Hash, Kind: "enroll", Bundle: bundle, CreatedAt: now})
	})
	if err != nil {
		t.Fatalf("record device: %v", err)
	}
	return v
}

// EvidenceDigest is the hex digest of the evidence every workload's
// certificate is issued on.
func (e *Env) EvidenceDigest() string { return e.digest }

// Workload issues a certificate for spiffe://sigil.test/workload/name and
// records it as enrolled.
func (e *Env) Workload(t testing.TB, name string) *Workload {
	t.Helper()
	return e.Client(t, "spiffe://"+TrustDomain+"/workload/"+name)
}

// Client issues a certificate for the SPIFFE ID id and records it as
// enrolled.
func (e *Env) Client(t testing.TB, id string) *Workload {
	t.Helper()
	w := Issue(t, e.CA, id, e.evidence)
	e.Record(t, w)
	return w
}

// Record records w's certificate as issued on the Env's device, as a
// renewal would.
func (e *Env) Record(t testing.TB, w *Workload) {
	t.Helper()
	err := e.Store.InsertCertificate(t.Context(), store.Certificate{
		Serial: device.Serial(w.Cert), SPIFFEID: w.ID, EKHash: e.ekHash, NotBefore: w.Cert.NotBefore, NotAfter: w.Cert.NotAfter,
		EvidenceDigest: e.digest, PolicyVersion: e.Policy.Version(), DER: w.Cert.Raw,
	})
	if err != nil {
		t.Fatalf("InsertCertificate: %v", err)
	}
}

// Issue has c issue a certificate for id on a new key, without recording
// it.
func Issue(t testing.TB, c *ca.CA, id string, ev ca.Evidence) *Workload {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.Issue(t.Context(), ca.Request{CSR: csr, Key: &key.PublicKey, ID: spiffeid.RequireFromString(id), Evidence: ev})
	if err != nil {
		t.Fatalf("Issue %s: %v", id, err)
	}
	return &Workload{ID: id, Key: key, Cert: cert, Chain: [][]byte{cert.Raw, c.Issuer().Raw}}
}

// Evidence is the evidence extension the Env's certificates carry.
func (e *Env) Evidence() ca.Evidence { return e.evidence }

// RevokeCertificate revokes w's certificate in the store.
func (e *Env) RevokeCertificate(t testing.TB, w *Workload) {
	t.Helper()
	if _, err := e.Store.RevokeCertificate(t.Context(), device.Serial(w.Cert), "key compromise", time.Now()); err != nil {
		t.Fatalf("RevokeCertificate: %v", err)
	}
}

// ServerTLS is sigild's TLS configuration: a server certificate from the
// issuing CA, client certificates verified against the root if given.
func (e *Env) ServerTLS(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.NewServer(e.CA.Issuer(), e.issuerKey, &key.PublicKey, ca.ServerName{
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, ID: "spiffe://" + TrustDomain + "/sigild",
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(e.CA.Root())
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw, e.CA.Issuer().Raw}, PrivateKey: key}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    roots,
	}
}

// ClientTLS is a client's TLS configuration trusting the Env's root,
// presenting w's certificate unless w is nil.
func (e *Env) ClientTLS(w *Workload) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(e.CA.Root())
	c := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots}
	if w != nil {
		c.Certificates = []tls.Certificate{{Certificate: w.Chain, PrivateKey: w.Key, Leaf: w.Cert}}
	}
	return c
}

// Logger logs to the test's output; benchmarks and fuzz targets log
// nothing.
func Logger(t testing.TB) *slog.Logger {
	switch t.(type) {
	case *testing.B, *testing.F:
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// root is the repository's root directory.
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}
