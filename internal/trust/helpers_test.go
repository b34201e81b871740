package trust_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	gattest "github.com/google/go-attestation/attest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
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
	devPolicy   = "../../testenv/policy"
)

// fleet is a set of TPMs (each its own EK, one EK CA) enrolled through the
// enrollment service as sigild wires it, on one store.
type fleet struct {
	svc      *enroll.Service
	store    store.Store
	dsn      string
	verifier *attest.Verifier
	ekCA     *testenv.EKCA // the EK CA of every TPM of the fleet
	devices  []*member
}

// member is one enrolled device: its EK hash and certificate.
type member struct {
	ekHash string
	cert   *x509.Certificate
	serial string
}

// newFleet enrolls n TPMs booted with the dev measurements as
// workload/d0, d1, … on the store at dsn (a SQLite file if empty);
// enrolledAt, if not zero, is the enrollment service's clock.
func newFleet(t *testing.T, n int, dsn string, enrolledAt ...time.Time) *fleet {
	t.Helper()
	ctx := t.Context()
	ekCA, err := testenv.NewEKCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, err := attest.NewVerifier(attest.Config{EKRoots: []*x509.Certificate{ekCA.Cert}, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}})
	if err != nil {
		t.Fatal(err)
	}
	if dsn == "" {
		dsn = "sqlite:" + filepath.Join(t.TempDir(), "sigil.db")
	}
	st, err := backend.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pol, err := policy.Load(devPolicy)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{store: st, dsn: dsn, verifier: v, ekCA: ekCA, svc: &enroll.Service{
		Verifier: v, Policy: pol, CA: newCA(t), Store: st, TrustDomain: spiffeid.RequireTrustDomainFromString(trustDomain),
		ChallengeTTL: time.Minute, Log: slog.New(slog.DiscardHandler),
	}}
	for i := range n {
		svc := *f.svc
		if i < len(enrolledAt) && !enrolledAt[i].IsZero() {
			at := enrolledAt[i]
			svc.Now = func() time.Time { return at }
		}
		f.devices = append(f.devices, enrollTPM(t, &svc, ekCA, workload("d"+string(rune('0'+i)))))
	}
	return f
}

// enrollTPM starts a TPM of its own, boots it with the dev measurements
// and enrolls it as identity, as client.Enroll does.
func enrollTPM(t *testing.T, svc *enroll.Service, ekCA *testenv.EKCA, identity string) *member {
	t.Helper()
	ctx := t.Context()
	sw := testenv.SWTPM(t, testenv.WithEKCA(ekCA))
	testenv.Boot(t, sw, testenv.DevMeasurements())
	tt, err := tpm.Open(ctx, sw.Addr, tpm.WithEventLog(sw.EventLogPath))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tt.Close() })
	eks, err := tt.EKs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ek tpm.EK
	for _, e := range eks {
		if e.Certificate != nil {
			ek = e
			break
		}
	}
	ekPub, err := x509.MarshalPKIXPublicKey(ek.Public)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := tt.NewAK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := ak.AttestationParameters()
	ch, err := svc.Challenge(ctx, api.ChallengeRequest{
		EKCertificate: ek.Certificate.Raw, EKPublic: ekPub, Identity: identity,
		AK: api.AK{Public: p.Public, CreateData: p.CreateData, CreateAttestation: p.CreateAttestation, CreateSignature: p.CreateSignature},
	})
	if err != nil {
		t.Fatalf("Challenge: %v", err)
	}
	secret, err := ak.ActivateCredential(ctx, ek, gattest.EncryptedCredential{Credential: ch.Credential, Secret: ch.Secret})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ak.NewKey(ctx, ch.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { key.Close() })
	pp, err := ak.Quote(ctx, ch.Nonce, gattest.HashSHA256)
	if err != nil {
		t.Fatal(err)
	}
	plat := api.Platform{EventLog: pp.EventLog}
	for _, q := range pp.Quotes {
		plat.Quotes = append(plat.Quotes, api.Quote{Quote: q.Quote, Signature: q.Signature})
	}
	for _, pcr := range pp.PCRs {
		plat.PCRs = append(plat.PCRs, api.PCR{Index: pcr.Index, Alg: "sha256", Digest: pcr.Digest})
	}
	u, _ := url.Parse(identity)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	cp := key.CertificationParameters()
	iss, err := svc.Complete(ctx, api.CompleteRequest{ChallengeID: ch.ID, Secret: secret, Platform: plat, CSR: csr,
		Key: api.CertifiedKey{Public: cp.Public, CreateData: cp.CreateData, CreateAttestation: cp.CreateAttestation, CreateSignature: cp.CreateSignature}})
	if err != nil {
		t.Fatalf("Complete(%s): %v", identity, err)
	}
	cert, err := x509.ParseCertificate(iss.Certificate.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(ekPub)
	return &member{ekHash: hex.EncodeToString(sum[:]), cert: cert, serial: cert.SerialNumber.Text(16)}
}

// newCA makes a root and an issuing CA on a fresh SoftHSM token.
func newCA(t *testing.T) *ca.CA {
	t.Helper()
	ctx := t.Context()
	h, err := hsm.Open(ctx, testenv.SoftHSM(t).URI)
	if err != nil {
		t.Fatal(err)
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

// policyWith writes the dev policy plus rules (a file of Cedar policies)
// to a new directory and loads it.
func policyWith(t *testing.T, rules string) *policy.Set {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"enroll.cedar", "tokens.cedar"} {
		b, err := os.ReadFile(filepath.Join(devPolicy, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if rules != "" {
		if err := os.WriteFile(filepath.Join(dir, "extra.cedar"), []byte(rules), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := policy.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// forbidDevice is a policy rule that forbids the device ekHash.
func forbidDevice(ekHash string) string {
	return `@id("forbid-` + ekHash[:8] + `")
forbid (principal is Sigil::Device, action, resource) when { principal.ek_hash == "sha256:` + ekHash + `" };
`
}

// forbidDevFirmware forbids the dev firmware's PCR 0: every dev TPM.
const forbidDevFirmware = `@id("no-dev-firmware-1.0")
forbid (principal is Sigil::Device, action, resource)
when { principal.pcrs.contains("sha256:0:9c6142b4bb951bd4269c86154706ed7ac972b8e0116e9a133327d30b58c163ca") };
`

// boundToken stores a token bound to cert.
func boundToken(t *testing.T, st store.Store, cert *x509.Certificate, jti string) {
	t.Helper()
	now := time.Now()
	err := st.InsertToken(t.Context(), store.Token{
		JTI: jti, Sub: cert.URIs[0].String(), ClientID: cert.URIs[0].String(), IssuedAt: now, ExpiresAt: now.Add(time.Minute),
		CNF: store.Certificate{DER: cert.Raw}.Thumbprint(), Kind: store.TokenJWT, KID: "k1",
	})
	if err != nil {
		t.Fatal(err)
	}
}

// revokedEntries returns the certificate.revoked entries of the log.
func revokedEntries(t *testing.T, st store.Store) []*audit.Certificate {
	t.Helper()
	ctx := context.Background()
	n, err := st.AuditSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data, err := st.AuditEntries(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	var out []*audit.Certificate
	for _, b := range data {
		e, err := audit.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind != audit.CertificateRevoked {
			continue
		}
		p, err := e.Payload()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p.(*audit.Certificate))
	}
	return out
}

// certificate reads the stored record of m's certificate.
func (f *fleet) certificate(t *testing.T, m *member) store.Certificate {
	t.Helper()
	c, err := f.store.Certificate(t.Context(), m.serial)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func workload(name string) string { return "spiffe://" + trustDomain + "/workload/" + name }
