package daemon_test

import (
	"crypto/x509"
	"log/slog"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is a sigild configuration over a fresh SoftHSM token and store.
type env struct {
	cfg *config.Config
	h   *hsm.HSM
	st  store.Store
	log *slog.Logger
}

func newEnv(t *testing.T) *env {
	t.Helper()
	tok := testenv.SoftHSM(t)
	cfg := config.Defaults()
	cfg.TrustDomain = "sigil.test"
	cfg.HSM.URI = tok.URI
	cfg.Store = "sqlite:" + filepath.Join(t.TempDir(), "sigil.db")
	cfg.TLS.IPAddresses = []string{"127.0.0.1"}
	e := &env{cfg: cfg, log: slog.New(slog.DiscardHandler)}
	var err error
	if e.h, err = daemon.OpenHSM(t.Context(), cfg, e.log, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.h.Close() })
	if e.st, err = backend.Open(t.Context(), cfg.Store); err != nil {
		t.Fatal(err)
	}
	st := e.st
	t.Cleanup(func() { st.Close() })
	return e
}

func (e *env) init(t *testing.T) *daemon.PKI {
	t.Helper()
	p, err := daemon.Init(t.Context(), e.cfg, e.h, e.st, e.log)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return p
}

// loggedKinds returns the kinds of the audit log's entries, in order.
func loggedKinds(t *testing.T, st store.Store) []audit.Kind {
	t.Helper()
	ctx := t.Context()
	n, err := st.AuditSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []audit.Kind
	if n == 0 {
		return nil
	}
	entries, err := st.AuditEntries(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range entries {
		e, err := audit.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, e.Kind)
	}
	return kinds
}

// Init creates the five keys and the three certificates once, logs each
// key it creates, and a second run keeps them all; Load finds them.
func TestInitIsIdempotent(t *testing.T) {
	e := newEnv(t)
	first := e.init(t)
	second := e.init(t)
	for _, c := range []struct {
		name string
		a, b *hsm.Key
	}{{"root", first.RootKey, second.RootKey}, {"issuer", first.IssuerKey, second.IssuerKey}, {"tls", first.TLSKey, second.TLSKey},
		{"audit", first.AuditKey, second.AuditKey}, {"token", first.TokenKey, second.TokenKey}} {
		if c.a.KID() != c.b.KID() || !strings.HasSuffix(c.a.Label(), ".v1") {
			t.Errorf("%s key: %s (%s) then %s (%s)", c.name, c.a.Label(), c.a.KID(), c.b.Label(), c.b.KID())
		}
	}
	for _, c := range [][2]*x509.Certificate{{first.Root, second.Root}, {first.Issuer, second.Issuer}, {first.TLS, second.TLS}} {
		if !c[0].Equal(c[1]) {
			t.Errorf("certificate %s was replaced", c[0].Subject)
		}
	}
	if kinds := loggedKinds(t, e.st); !slices.Equal(kinds, slices.Repeat([]audit.Kind{audit.KeyCreated}, 5)) {
		t.Errorf("log = %v, want five key.created", kinds)
	}
	loaded, err := daemon.Load(t.Context(), e.cfg, e.h)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !loaded.Root.Equal(first.Root) || !loaded.TLS.Equal(first.TLS) || loaded.AuditKey.KID() != first.AuditKey.KID() {
		t.Error("Load found other keys or certificates than Init made")
	}
	checkChain(t, first)
}

// checkChain checks the TLS certificate chains to the root through the
// issuing CA and names the configured host.
func checkChain(t *testing.T, p *daemon.PKI) {
	t.Helper()
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.Root)
	inter.AddCert(p.Issuer)
	_, err := p.TLS.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "localhost", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		t.Errorf("TLS certificate: %v", err)
	}
}

// A key rotated without its certificate is refused by Init and Load, never
// silently given a new certificate.
func TestInitRefusesCertificateOfAnotherKey(t *testing.T) {
	e := newEnv(t)
	e.init(t)
	if _, err := e.h.Rotate(t.Context(), e.cfg.TLS.KeyLabel); err != nil {
		t.Fatal(err)
	}
	if _, err := daemon.Init(t.Context(), e.cfg, e.h, e.st, e.log); err == nil || !strings.Contains(err.Error(), `certificate "sigil-tls" on the token is not for key sigil-tls.v2`) {
		t.Errorf("Init = %v, want the mismatch named", err)
	}
	if _, err := daemon.Load(t.Context(), e.cfg, e.h); err == nil || !strings.Contains(err.Error(), "a key was rotated without its certificate") {
		t.Errorf("Load = %v, want the mismatch named", err)
	}
}

// Load before Init says to run it.
func TestLoadBeforeInit(t *testing.T) {
	e := newEnv(t)
	if _, err := daemon.Load(t.Context(), e.cfg, e.h); err == nil || !strings.Contains(err.Error(), "run `sigild init` first") {
		t.Errorf("Load = %v", err)
	}
}

// The CRL lists every revoked, unexpired certificate with its revocation
// time, and nothing else, signed by the issuing CA.
func TestCRL(t *testing.T) {
	e := newEnv(t)
	p := e.init(t)
	c, err := ca.New(p.Root, p.Issuer, p.IssuerKey, e.cfg.TrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	revokedAt := now.Add(-time.Minute)
	storeCertificates(t, e.st, now, revokedAt)

	der, err := daemon.CRL(t.Context(), e.st, c, now)
	if err != nil {
		t.Fatalf("CRL: %v", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(p.Issuer); err != nil {
		t.Errorf("CRL signature: %v", err)
	}
	if crl.Number.Cmp(big.NewInt(now.Unix())) != 0 || crl.NextUpdate.Before(now.Add(daemon.CRLValidity-time.Minute)) {
		t.Errorf("CRL number %v, next update %v", crl.Number, crl.NextUpdate)
	}
	var got []string
	for _, r := range crl.RevokedCertificateEntries {
		got = append(got, r.SerialNumber.Text(16))
		if !r.RevocationTime.Equal(revokedAt) {
			t.Errorf("serial %x revoked at %v, want %v", r.SerialNumber, r.RevocationTime, revokedAt)
		}
		if r.ReasonCode != ca.ReasonKeyCompromise {
			t.Errorf("serial %x has reason code %d, want keyCompromise", r.SerialNumber, r.ReasonCode)
		}
	}
	if !slices.Equal(got, []string{"a1"}) {
		t.Errorf("CRL lists %v, want only a1 (a2 is not revoked, a3 expired)", got)
	}
}

// Each of sigil's revocation reasons is listed with its RFC 5280 reason
// code, a re-applied one with its original's; others are unspecified.
func TestCRLReason(t *testing.T) {
	for reason, want := range map[string]int{
		store.ReasonKeyCompromise:                          ca.ReasonKeyCompromise,
		store.ReasonAffiliationChanged:                     ca.ReasonAffiliationChanged,
		store.ReasonSuperseded:                             ca.ReasonSuperseded,
		store.ReasonCessationOfOperation:                   ca.ReasonCessationOfOperation,
		store.ReasonPrivilegeWithdrawn:                     ca.ReasonPrivilegeWithdrawn,
		store.ReasonDeviceDisabled:                         ca.ReasonCessationOfOperation,
		store.ReasonAttestationFailed:                      ca.ReasonPrivilegeWithdrawn,
		store.ReasonAttestationExpired:                     ca.ReasonPrivilegeWithdrawn,
		store.ReasonPolicyChanged:                          ca.ReasonPrivilegeWithdrawn,
		daemon.ReappliedPrefix + store.ReasonKeyCompromise: ca.ReasonKeyCompromise,
		"operator said so":                                 ca.ReasonUnspecified,
	} {
		if got := daemon.CRLReason(reason); got != want {
			t.Errorf("CRLReason(%q) = %d, want %d", reason, got, want)
		}
	}
	for _, r := range store.CertificateReasons {
		if daemon.CRLReason(r) == ca.ReasonUnspecified {
			t.Errorf("operator reason %q has no CRL reason code", r)
		}
	}
}

// storeCertificates stores a device with three certificates: a1 revoked,
// a2 valid, a3 revoked but expired.
func storeCertificates(t *testing.T, st store.Store, now, revokedAt time.Time) {
	t.Helper()
	ctx := t.Context()
	err := st.Tx(ctx, func(tx store.Tx) error {
		dev := store.Device{EKHash: "ek1", EKPublicDER: []byte("ek"), AKHash: "ak1", AKPublic: []byte("ak"), Status: store.DeviceActive, CreatedAt: now}
		if _, err := tx.BindDevice(ctx, dev, now); err != nil {
			return err
		}
		ev := store.Evidence{Digest: "d1", EKHash: "ek1", Kind: "enrollment", Bundle: []byte(`{}`), CreatedAt: now}
		if err := tx.PutEvidence(ctx, ev); err != nil {
			return err
		}
		for serial, notAfter := range map[string]time.Time{"a1": now.Add(time.Hour), "a2": now.Add(time.Hour), "a3": now.Add(-time.Second)} {
			cert := store.Certificate{Serial: serial, SPIFFEID: "spiffe://sigil.test/workload/w", EKHash: "ek1",
				NotBefore: now.Add(-2 * time.Hour), NotAfter: notAfter, EvidenceDigest: "d1", DER: []byte(serial)}
			if err := tx.InsertCertificate(ctx, cert); err != nil {
				return err
			}
		}
		for _, serial := range []string{"a1", "a3"} {
			if _, err := tx.RevokeCertificate(ctx, serial, "key compromise", revokedAt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Rotating the token key publishes the new version at once and signs with
// it only after the rotation lead; the old one signs until then. The
// rotation is logged, and key listing shows every HSM key.
func TestRotateTokenKeyPublishesBeforeSigning(t *testing.T) {
	e := newEnv(t)
	e.init(t)
	e.h.Close() // OpenKeys opens the HSM as the key commands do
	ctx := t.Context()
	keys, err := daemon.OpenKeys(ctx, e.cfg, e.log)
	if err != nil {
		t.Fatalf("OpenKeys: %v", err)
	}
	defer keys.Close()
	before := time.Now()
	v2, err := keys.RotateToken(ctx)
	if err != nil {
		t.Fatalf("RotateToken: %v", err)
	}
	if v2.Label != "sigil-token.v2" || v2.Seen.IsZero() || v2.Seen.After(time.Now()) || v2.Active.Before(before.Add(e.cfg.Tokens.RotationLead)) {
		t.Errorf("rotated %s: published %v, signs %v; want published now, signing after the %v lead", v2.Label, v2.Seen, v2.Active, e.cfg.Tokens.RotationLead)
	}
	list, err := keys.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byLabel := map[string]daemon.KeyStatus{}
	for _, k := range list {
		byLabel[k.Label] = k
	}
	for _, label := range []string{"sigil-root.v1", "sigil-issuer.v1", "sigil-tls.v1", "sigil-audit.v1"} {
		if k, ok := byLabel[label]; !ok || k.Token != nil || k.KID == "" {
			t.Errorf("key list: %s = %+v", label, k)
		}
	}
	v1 := byLabel["sigil-token.v1"].Token
	if v1 == nil || byLabel["sigil-token.v2"].Token == nil || v1.Active.After(time.Now()) || !v1.Retired.Equal(v2.Active) {
		t.Errorf("token keys: v1 %+v, v2 %+v; want v1 signing until v2 signs", v1, byLabel["sigil-token.v2"].Token)
	}
	if kinds := loggedKinds(t, e.st); kinds[len(kinds)-1] != audit.KeyRotated {
		t.Errorf("log = %v, want key.rotated last", kinds)
	}
	if _, err := store.AuditStorage(e.st).Find(ctx, "kid:"+v2.KID); err != nil {
		t.Errorf("rotation entry not findable by kid: %v", err)
	}
}

// TestSQLiteMetrics: sigild on SQLite exports its store's commits and
// checkpoints on /metrics (sigil_sqlite_*), none of them failed.
func TestSQLiteMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.init(t)
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	s := serve(t, replicaConfig(e.cfg), roots, p, e.st)
	if v := s.metric(t, "sigil_sqlite_checkpoint_failures_total"); v != 0 {
		t.Errorf("sigil_sqlite_checkpoint_failures_total = %v", v)
	}
	_, body := s.get(t, "/metrics")
	for _, series := range []string{`sigil_sqlite_commits_total{how="alone"}`, `sigil_sqlite_checkpoints_total{kind="passive"}`, "sigil_sqlite_wal_frames"} {
		if !strings.Contains(body, "\n"+series+" ") {
			t.Errorf("/metrics has no %s", series)
		}
	}
}
