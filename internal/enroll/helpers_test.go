package enroll_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gattest "github.com/google/go-attestation/attest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/tpm"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	trustDomain = "sigil.test"
	// devPolicy is the dev stack's policy: dev PCRs pinned, debug firmware
	// forbidden, enroll/renew/rebind for spiffe://sigil.test/workload/NAME.
	devPolicy    = "../../testenv/policy"
	challengeTTL = time.Minute
)

// requiredPCRs are the SHA-256 PCRs the verifier makes every quote cover.
var requiredPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}

// server is the server side of enrollment as sigild wires it: a SoftHSM
// token holding the CA keys, a SQLite store, the policy and a verifier that
// trusts the test TPMs' EK CA.
type server struct {
	svc    *enroll.Service
	store  store.Store
	ca     *ca.CA
	policy *policy.Set
	dsn    string // the store's DSN, for a second handle on the database
}

// serverConfig adjusts newServer.
type serverConfig struct {
	policyDir string
	dsn       string // the store; a SQLite file of the test's if empty
}

// newServer builds the enrollment service for TPMs whose EK certificates
// come from ekCA.
func newServer(t testing.TB, ekCA *x509.Certificate, opts ...func(*serverConfig)) *server {
	t.Helper()
	cfg := serverConfig{policyDir: devPolicy}
	for _, o := range opts {
		o(&cfg)
	}
	ctx := testCtx(t)
	pol, err := policy.Load(cfg.policyDir)
	if err != nil {
		t.Fatalf("policy.Load(%s): %v", cfg.policyDir, err)
	}
	v, err := attest.NewVerifier(attest.Config{EKRoots: []*x509.Certificate{ekCA}, PCRs: requiredPCRs})
	if err != nil {
		t.Fatal(err)
	}
	dsn := cfg.dsn
	if dsn == "" {
		dsn = "sqlite:" + filepath.Join(t.TempDir(), "sigil.db")
	}
	st, err := backend.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := newCA(t)
	return &server{
		svc: &enroll.Service{
			Verifier: v, Policy: pol, CA: c, Store: st,
			TrustDomain:  spiffeid.RequireTrustDomainFromString(trustDomain),
			ChallengeTTL: challengeTTL,
			Log:          slog.New(slog.DiscardHandler),
		},
		store: st, ca: c, policy: pol, dsn: dsn,
	}
}

// withStore makes the server use the store at dsn.
func withStore(dsn string) func(*serverConfig) {
	return func(c *serverConfig) { c.dsn = dsn }
}

// withPolicy makes the server use the policy set in dir.
func withPolicy(dir string) func(*serverConfig) {
	return func(c *serverConfig) { c.policyDir = dir }
}

// newCA makes a root and an issuing CA whose keys live on a fresh SoftHSM
// token.
func newCA(t testing.TB) *ca.CA {
	t.Helper()
	ctx := testCtx(t)
	tok := testenv.SoftHSM(t)
	h, err := hsm.Open(ctx, tok.URI)
	if err != nil {
		t.Fatalf("hsm.Open: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	rootKey, err := h.Generate(ctx, "root", hsm.ES256)
	if err != nil {
		t.Fatal(err)
	}
	issuerKey, err := h.Generate(ctx, "issuer", hsm.ES256)
	if err != nil {
		t.Fatal(err)
	}
	root, err := ca.NewRoot(rootKey, "sigil test root", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := ca.NewIssuer(root, rootKey, issuerKey.Public(), "sigil test issuing CA", trustDomain, 12*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(root, issuer, issuerKey, trustDomain)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// noRebindPolicy writes the dev policy without the rebind action to a
// temporary directory and returns it.
func noRebindPolicy(t testing.TB) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(devPolicy, "enroll.cedar"))
	if err != nil {
		t.Fatal(err)
	}
	const rebind = `, Sigil::Action::"rebind"]`
	if n := strings.Count(string(src), rebind); n != 1 {
		t.Fatalf("dev policy names the rebind action %d times, want 1: update noRebindPolicy", n)
	}
	dir := t.TempDir()
	out := strings.Replace(string(src), rebind, "]", 1)
	if err := os.WriteFile(filepath.Join(dir, "enroll.cedar"), []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// machine is the workload side: a booted swtpm opened through the tpm
// package, with the EK it enrolls with.
type machine struct {
	sw    *testenv.TPM
	tpm   *tpm.TPM
	ek    tpm.EK
	ekPub []byte  // PKIX DER
	host  *tpm.AK // the AK every enrollment of the device shares, made by the first
}

// newDevice starts a swtpm (a copy of the process's shared TPM identity),
// runs the measured boot m on it and opens it with its event log.
func newDevice(t testing.TB, m testenv.MeasuredBoot) *machine {
	t.Helper()
	return newDeviceWith(t, m, testenv.SharedIdentity())
}

// newDeviceWith is newDevice for a swtpm started with opts: with
// testenv.WithEKCA, a TPM of its own whose EK certificate ca issued.
func newDeviceWith(t testing.TB, m testenv.MeasuredBoot, opts ...testenv.Option) *machine {
	t.Helper()
	sw := testenv.SWTPM(t, opts...)
	testenv.Boot(t, sw, m)
	ctx := testCtx(t)
	tt, err := tpm.Open(ctx, sw.Addr, tpm.WithEventLog(sw.EventLogPath))
	if err != nil {
		t.Fatalf("tpm.Open(%s): %v", sw.Addr, err)
	}
	t.Cleanup(func() { tt.Close() })
	d := &machine{sw: sw, tpm: tt}
	if d.ek, err = pickEK(ctx, tt); err != nil {
		t.Fatal(err)
	}
	if d.ekPub, err = x509.MarshalPKIXPublicKey(d.ek.Public); err != nil {
		t.Fatal(err)
	}
	return d
}

// pickEK picks the EK as client.Enroll does: the first with a certificate.
func pickEK(ctx context.Context, t *tpm.TPM) (tpm.EK, error) {
	eks, err := t.EKs(ctx)
	if err != nil {
		return tpm.EK{}, err
	}
	for _, ek := range eks {
		if ek.Certificate != nil {
			return ek, nil
		}
	}
	return tpm.EK{}, errors.New("the TPM has no EK with a certificate")
}

func (d *machine) newAK(t testing.TB) *tpm.AK {
	t.Helper()
	ak, err := d.tpm.NewAK(testCtx(t))
	if err != nil {
		t.Fatalf("NewAK: %v", err)
	}
	return ak
}

// challengeRequest is step 1 of the protocol, as client.Enroll sends it.
func (d *machine) challengeRequest(ak *tpm.AK, identity string) api.ChallengeRequest {
	p := ak.AttestationParameters()
	return api.ChallengeRequest{
		EKCertificate: d.ek.Certificate.Raw, EKPublic: d.ekPub, Identity: identity,
		AK: api.AK{Public: p.Public, CreateData: p.CreateData, CreateAttestation: p.CreateAttestation, CreateSignature: p.CreateSignature},
	}
}

// attempt is one enrollment in progress on the workload side: the challenge
// it answers, the certified key and the completion it will send.
type attempt struct {
	identity string
	ak       *tpm.AK
	ch       *api.Challenge
	key      *tpm.Key
	req      api.CompleteRequest
}

// begin asks svc for a challenge for ak and answers it (see answer).
func (d *machine) begin(t testing.TB, svc *enroll.Service, ak *tpm.AK, identity string) *attempt {
	t.Helper()
	return d.beginRequest(t, svc, ak, d.challengeRequest(ak, identity))
}

// beginReplace is begin for an enrollment that replaces the device's AK.
func (d *machine) beginReplace(t testing.TB, svc *enroll.Service, ak *tpm.AK, identity string) *attempt {
	t.Helper()
	req := d.challengeRequest(ak, identity)
	req.ReplaceAK = true
	return d.beginRequest(t, svc, ak, req)
}

func (d *machine) beginRequest(t testing.TB, svc *enroll.Service, ak *tpm.AK, creq api.ChallengeRequest) *attempt {
	t.Helper()
	ctx := testCtx(t)
	identity := creq.Identity
	ch, err := svc.Challenge(ctx, creq)
	if err != nil {
		t.Fatalf("Challenge(%s): %v", identity, err)
	}
	req, key, err := d.answer(ctx, ak, ch, identity)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { key.Close() })
	return &attempt{identity: identity, ak: ak, ch: ch, key: key, req: req}
}

// answer answers a challenge as client.Enroll does: activate the
// credential, certify a new key over the nonce, quote the SHA-256 bank over
// the nonce, sign a CSR with the key. The caller closes the key.
func (d *machine) answer(ctx context.Context, ak *tpm.AK, ch *api.Challenge, identity string) (api.CompleteRequest, *tpm.Key, error) {
	secret, err := ak.ActivateCredential(ctx, d.ek, gattest.EncryptedCredential{Credential: ch.Credential, Secret: ch.Secret})
	if err != nil {
		return api.CompleteRequest{}, nil, fmt.Errorf("ActivateCredential: %w", err)
	}
	key, err := ak.NewKey(ctx, ch.Nonce)
	if err != nil {
		return api.CompleteRequest{}, nil, fmt.Errorf("NewKey: %w", err)
	}
	platform, err := quotePlatform(ctx, ak, ch.Nonce)
	if err != nil {
		key.Close()
		return api.CompleteRequest{}, nil, fmt.Errorf("Quote: %w", err)
	}
	csr, err := makeCSR(key, identity)
	if err != nil {
		key.Close()
		return api.CompleteRequest{}, nil, fmt.Errorf("CSR: %w", err)
	}
	return api.CompleteRequest{ChallengeID: ch.ID, Secret: secret, Platform: platform, Key: certified(key), CSR: csr}, key, nil
}

// enroll runs a whole enrollment with the device's AK, as client.Enroll
// does with the host state, and fails the test unless it succeeds.
func (d *machine) enroll(t testing.TB, svc *enroll.Service, identity string) (*attempt, *enroll.Issued) {
	t.Helper()
	if d.host == nil {
		d.host = d.newAK(t)
	}
	a := d.begin(t, svc, d.host, identity)
	iss, err := svc.Complete(testCtx(t), a.req)
	if err != nil {
		t.Fatalf("Complete(%s): %v", identity, err)
	}
	return a, iss
}

func newKey(t testing.TB, ak *tpm.AK, nonce []byte) *tpm.Key {
	t.Helper()
	key, err := ak.NewKey(testCtx(t), nonce)
	if err != nil {
		t.Fatalf("NewKey: %v", err)
	}
	t.Cleanup(func() { key.Close() })
	return key
}

// quote quotes all SHA-256 PCRs over nonce, with the event log.
func quote(t testing.TB, ak *tpm.AK, nonce []byte) api.Platform {
	t.Helper()
	p, err := quotePlatform(testCtx(t), ak, nonce)
	if err != nil {
		t.Fatalf("Quote: %v", err)
	}
	return p
}

func quotePlatform(ctx context.Context, ak *tpm.AK, nonce []byte) (api.Platform, error) {
	pp, err := ak.Quote(ctx, nonce, gattest.HashSHA256)
	if err != nil {
		return api.Platform{}, err
	}
	out := api.Platform{EventLog: pp.EventLog}
	for _, q := range pp.Quotes {
		out.Quotes = append(out.Quotes, api.Quote{Quote: q.Quote, Signature: q.Signature})
	}
	for _, p := range pp.PCRs {
		out.PCRs = append(out.PCRs, api.PCR{Index: p.Index, Alg: "sha256", Digest: p.Digest})
	}
	return out, nil
}

func certified(k *tpm.Key) api.CertifiedKey {
	p := k.CertificationParameters()
	return api.CertifiedKey{Public: p.Public, CreateData: p.CreateData, CreateAttestation: p.CreateAttestation, CreateSignature: p.CreateSignature}
}

// csrFor is a CSR for identity signed by signer, DER.
func csrFor(t testing.TB, signer crypto.Signer, identity string) []byte {
	t.Helper()
	der, err := makeCSR(signer, identity)
	if err != nil {
		t.Fatalf("CSR: %v", err)
	}
	return der
}

func makeCSR(signer crypto.Signer, identity string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{}
	if u, err := url.Parse(identity); err == nil {
		tmpl.URIs = []*url.URL{u}
	}
	return x509.CreateCertificateRequest(rand.Reader, tmpl, signer)
}

func softKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func randomNonce(t testing.TB) []byte {
	t.Helper()
	n := make([]byte, attest.NonceSize)
	if _, err := rand.Read(n); err != nil {
		t.Fatal(err)
	}
	return n
}

// leaf parses the certificate an enrollment or renewal issued.
func leaf(t testing.TB, iss *enroll.Issued) *x509.Certificate {
	t.Helper()
	if iss == nil || iss.Certificate == nil || len(iss.Certificate.Chain) == 0 {
		t.Fatal("no certificate issued")
	}
	c, err := x509.ParseCertificate(iss.Certificate.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// deviceCertificates counts the certificates the store holds for the EK.
func deviceCertificates(t testing.TB, st store.Store, ekHash string) int {
	t.Helper()
	certs, err := st.DeviceCertificates(testCtx(t), ekHash)
	if err != nil {
		t.Fatal(err)
	}
	return len(certs)
}

// storedEvidence reads back the evidence bundle recorded under digest.
func storedEvidence(t testing.TB, st store.Store, digest string) (store.Evidence, *attest.Evidence) {
	t.Helper()
	rec, err := st.Evidence(testCtx(t), digest)
	if err != nil {
		t.Fatalf("Evidence(%s): %v", digest, err)
	}
	ev, err := attest.ParseEvidence(rec.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	return rec, ev
}

// stepOf is the attest step err failed at, "" when err is no attestation
// failure.
func stepOf(err error) attest.Step {
	var e *attest.Error
	if errors.As(err, &e) {
		return e.Step
	}
	return ""
}

// testCtx bounds one test's TPM, HSM and store work.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func workload(name string) string { return "spiffe://" + trustDomain + "/workload/" + name }

// samePublic reports whether a and b are the same public key.
func samePublic(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
