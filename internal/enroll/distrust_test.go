package enroll_test

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/testenv"
)

// devFirmwarePCR0 is PCR 0 after testenv.DevMeasurements: the dev
// firmware, which the dev policy pins.
const devFirmwarePCR0 = "sha256:0:9c6142b4bb951bd4269c86154706ed7ac972b8e0116e9a133327d30b58c163ca"

// forbidDevFirmware is the dev policy plus a forbid on the dev firmware's
// PCR 0: what an operator adds when that firmware turns out vulnerable.
func forbidDevFirmware(t testing.TB) string {
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
	rule := `@id("no-dev-firmware-1.0")
forbid (principal is Sigil::Device, action, resource)
when { principal.pcrs.contains("` + devFirmwarePCR0 + `") };
`
	if err := os.WriteFile(filepath.Join(dir, "firmware.cedar"), []byte(rule), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// boundToken stores a token bound to cert, as the token service would.
func boundToken(t testing.TB, st store.Store, cert *x509.Certificate, jti string) {
	t.Helper()
	now := time.Now()
	err := st.InsertToken(testCtx(t), store.Token{
		JTI: jti, Sub: cert.URIs[0].String(), ClientID: cert.URIs[0].String(), Aud: []string{workload("payments")},
		IssuedAt: now, ExpiresAt: now.Add(time.Minute), CNF: store.Certificate{DER: cert.Raw}.Thumbprint(),
		Kind: store.TokenJWT, KID: "k1",
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A renewal whose evidence is the device's own (its bound AK over our
// nonce) but no longer satisfies policy is refused and revokes the device's
// certificate and the tokens bound to it, with the refused evidence, the
// decision and each revocation in the audit log.
func TestRenewalFailingAttestationRevokes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		tamper   func(t *testing.T, srv *server, r *api.RenewRequest)
		step     attest.Step // the attestation step that fails, or "" for a policy denial
		decision string      // in the revocation's decision
	}{
		{"event log no longer explains the quote", func(t *testing.T, srv *server, r *api.RenewRequest) {
			r.Platform.EventLog = testenv.DebugMeasurements().Log()
		}, attest.StepEventLog, "does not replay"},
		{"policy forbids the boot it proves", func(t *testing.T, srv *server, r *api.RenewRequest) {
			strict, err := policy.Load(forbidDevFirmware(t))
			if err != nil {
				t.Fatal(err)
			}
			srv.svc.Policy = strict
		}, "", `"no-dev-firmware-1.0"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDevice(t, testenv.DevMeasurements())
			srv := newServer(t, d.sw.EKCA.Cert)
			ctx := testCtx(t)
			a, iss := d.enroll(t, srv.svc, workload("orders"))
			cert := leaf(t, iss)
			boundToken(t, srv.store, cert, "jti-orders")

			ch, err := srv.svc.RenewChallenge(ctx, cert)
			if err != nil {
				t.Fatal(err)
			}
			r := renewRequest(t, a, ch)
			tc.tamper(t, srv, &r)
			_, err = srv.svc.Renew(ctx, cert, r)
			var revoked *enroll.RevokedError
			if !errors.As(err, &revoked) {
				t.Fatalf("Renew = %v, want a RevokedError", err)
			}
			var denied *enroll.DeniedError
			if got := stepOf(err); got != tc.step || (tc.step == "" && !errors.As(err, &denied)) {
				t.Fatalf("Renew = %v (step %q), want the refusal at step %q (\"\": a policy denial) kept", err, got, tc.step)
			}
			if !strings.Contains(err.Error(), "revoked 1 certificates") {
				t.Errorf("error %q does not say the certificate was revoked", err)
			}
			rec, err := srv.store.Certificate(ctx, device.Serial(cert))
			if err != nil || rec.RevokedAt == nil || rec.RevocationReason != store.ReasonAttestationFailed {
				t.Fatalf("certificate after the failed renewal: %+v, %v; want revoked, %s", rec, err, store.ReasonAttestationFailed)
			}
			tok, err := srv.store.Token(ctx, "jti-orders")
			if err != nil || tok.RevokedAt == nil || tok.RevocationReason != store.CertificateRevokedPrefix+store.ReasonAttestationFailed {
				t.Errorf("token bound to the certificate: %+v, %v; want revoked with it", tok, err)
			}
			checkDistrustLogged(t, srv.store, device.Serial(cert), tc.decision)
			if _, err := srv.svc.RenewChallenge(ctx, cert); !errors.Is(err, enroll.ErrNotRenewable) {
				t.Errorf("RenewChallenge with the revoked certificate = %v, want ErrNotRenewable", err)
			}
		})
	}
}

// checkDistrustLogged checks the last entries of the log: the refusal
// with the refused evidence, the certificate's revocation citing that
// evidence with the decision, and the bound token's revocation.
func checkDistrustLogged(t *testing.T, st store.Store, serial, decision string) {
	t.Helper()
	entries := loggedEntries(t, st)
	if len(entries) < 3 {
		t.Fatalf("%d audit entries", len(entries))
	}
	last := entries[len(entries)-3:]
	kinds := []audit.Kind{last[0].Kind, last[1].Kind, last[2].Kind}
	if kinds[0] != audit.EnrollmentDenied || kinds[1] != audit.CertificateRevoked || kinds[2] != audit.TokenRevoked {
		t.Fatalf("log ends with %v, want enrollment.denied, certificate.revoked, token.revoked", kinds)
	}
	p0, _ := last[0].Payload()
	p1, _ := last[1].Payload()
	den, rev := p0.(*audit.Denial), p1.(*audit.Certificate)
	if len(den.Evidence) == 0 || den.EvidenceDigest == "" {
		t.Errorf("refusal logged without its evidence: %+v", den)
	}
	if rev.Serial != serial || rev.Reason != store.ReasonAttestationFailed || rev.EvidenceDigest != den.EvidenceDigest || !strings.Contains(rev.Decision, decision) {
		t.Errorf("revocation logged as %+v; want serial %s, reason %s, the refused evidence %s and a decision naming %s",
			rev, serial, store.ReasonAttestationFailed, den.EvidenceDigest, decision)
	}
}

func loggedEntries(t *testing.T, st store.Store) []audit.Entry {
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
	out := make([]audit.Entry, len(data))
	for i, b := range data {
		if out[i], err = audit.Decode(b); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// Attack: evidence that is not the victim device's own quote over this
// renewal's nonce — garbage, another TPM's quote, the victim's recorded
// quote replayed with a debug event log — is refused and revokes nothing,
// even presented with the victim's certificate (which TLS would already
// have refused without its TPM key). Only the TPM holding the bound AK can
// make its device distrusted.
func TestRenewalGarbageEvidenceRevokesNothing(t *testing.T) {
	t.Parallel()
	victim, attacker, srv := twoDevices(t)
	ctx := testCtx(t)
	a, iss := victim.enroll(t, srv.svc, workload("victim"))
	cert := leaf(t, iss)
	boundToken(t, srv.store, cert, "jti-victim")
	evil, evilIss := attacker.enroll(t, srv.svc, workload("attacker"))
	evilCert := leaf(t, evilIss)
	debugLog := testenv.DebugMeasurements().Log()

	challenge := func(t *testing.T) *api.Challenge {
		ch, err := srv.svc.RenewChallenge(ctx, cert)
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	tests := []struct {
		name string
		peer *x509.Certificate
		req  func(t *testing.T, ch *api.Challenge) api.RenewRequest
	}{
		{"garbage quote", cert, func(t *testing.T, ch *api.Challenge) api.RenewRequest {
			p := quote(t, a.ak, ch.Nonce)
			p.Quotes[0].Signature = []byte("garbage")
			p.EventLog = debugLog
			return api.RenewRequest{ChallengeID: ch.ID, Platform: p, CSR: csrFor(t, a.key, a.identity)}
		}},
		{"another TPM's quote over the victim's nonce, with a debug event log", cert, func(t *testing.T, ch *api.Challenge) api.RenewRequest {
			p := quote(t, evil.ak, ch.Nonce)
			p.EventLog = debugLog
			return api.RenewRequest{ChallengeID: ch.ID, Platform: p, CSR: csrFor(t, a.key, a.identity)}
		}},
		{"the victim's recorded quote replayed with a debug event log", cert, func(t *testing.T, ch *api.Challenge) api.RenewRequest {
			p := a.req.Platform // from the enrollment, as its evidence in the audit log shows it
			p.EventLog = debugLog
			return api.RenewRequest{ChallengeID: ch.ID, Platform: p, CSR: csrFor(t, a.key, a.identity)}
		}},
		{"the attacker's own certificate on the victim's challenge", evilCert, func(t *testing.T, ch *api.Challenge) api.RenewRequest {
			p := quote(t, evil.ak, ch.Nonce)
			p.EventLog = debugLog
			return api.RenewRequest{ChallengeID: ch.ID, Platform: p, CSR: csrFor(t, evil.key, evil.identity)}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := srv.svc.Renew(ctx, tc.peer, tc.req(t, challenge(t)))
			var revoked *enroll.RevokedError
			if err == nil || errors.As(err, &revoked) || attest.QuoteAuthentic(err) {
				t.Fatalf("Renew = %v, want a refusal that revokes nothing", err)
			}
		})
	}
	for _, c := range []*x509.Certificate{cert, evilCert} {
		if rec, err := srv.store.Certificate(ctx, device.Serial(c)); err != nil || rec.RevokedAt != nil {
			t.Errorf("certificate %s: %+v, %v; want it unrevoked", device.Serial(c), rec, err)
		}
	}
	if tok, err := srv.store.Token(ctx, "jti-victim"); err != nil || tok.RevokedAt != nil {
		t.Errorf("victim's token: %+v, %v; want it unrevoked", tok, err)
	}
	for _, e := range loggedEntries(t, srv.store) {
		if e.Kind == audit.CertificateRevoked || e.Kind == audit.TokenRevoked {
			t.Errorf("audit log records a revocation: %s", e.Data)
		}
	}
	// The victim's own renewal still works.
	ch := challenge(t)
	if _, err := srv.svc.Renew(ctx, cert, renewRequest(t, a, ch)); err != nil {
		t.Errorf("the victim's genuine renewal after the attacks: %v", err)
	}
}
