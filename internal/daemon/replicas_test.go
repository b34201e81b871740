package daemon_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/testenv"
)

// replica is one sigild's handles on the shared HSM token and database.
type replica struct {
	h  *hsm.HSM
	st store.Store
}

// newReplicas opens n handles on one SoftHSM token and one PostgreSQL
// database, as n replicas would, with cfg pointing at both.
func newReplicas(t *testing.T, n int) (*config.Config, []replica) {
	t.Helper()
	tok := testenv.SoftHSM(t)
	cfg := config.Defaults()
	cfg.TrustDomain = "sigil.test"
	cfg.HSM.URI = tok.URI
	cfg.Store = testenv.PostgresDB(t)
	cfg.TLS.IPAddresses = []string{"127.0.0.1"}
	rs := make([]replica, n)
	for i := range rs {
		var err error
		if rs[i].h, err = daemon.OpenHSM(t.Context(), cfg, slog.New(slog.DiscardHandler), nil); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs[i].h.Close() })
		if rs[i].st, err = backend.Open(t.Context(), cfg.Store); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs[i].st.Close() })
	}
	return cfg, rs
}

// TestConcurrentInitCreatesEachKeyOnce: `sigild init` on three replicas
// at once, over one HSM token and one database, creates each of the five
// keys once (one version of each on the token), logs five key.created
// entries, and every replica ends up with the same keys and certificates.
func TestConcurrentInitCreatesEachKeyOnce(t *testing.T) {
	cfg, rs := newReplicas(t, 3)
	pkis := make([]*daemon.PKI, len(rs))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, r := range rs {
		wg.Go(func() {
			<-start
			p, err := daemon.Init(t.Context(), cfg, r.h, r.st, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Errorf("replica %d: Init: %v", i, err)
			}
			pkis[i] = p
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	keys, err := rs[0].h.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, k := range keys {
		labels = append(labels, k.Label)
	}
	slices.Sort(labels)
	want := []string{cfg.Audit.KeyLabel + ".v1", cfg.CA.IssuerLabel + ".v1", cfg.CA.RootLabel + ".v1", cfg.TLS.KeyLabel + ".v1", cfg.Tokens.KeyLabel + ".v1"}
	slices.Sort(want)
	if !slices.Equal(labels, want) {
		t.Errorf("keys on the token: %v, want each once: %v", labels, want)
	}
	if kinds := loggedKinds(t, rs[0].st); !slices.Equal(kinds, slices.Repeat([]audit.Kind{audit.KeyCreated}, 5)) {
		t.Errorf("log = %v, want five key.created", kinds)
	}
	for i, p := range pkis[1:] {
		if !p.Root.Equal(pkis[0].Root) || !p.TLS.Equal(pkis[0].TLS) || p.TokenKey.KID() != pkis[0].TokenKey.KID() {
			t.Errorf("replica %d ended with other keys or certificates than replica 0", i+1)
		}
	}
}

// serving is a replica's daemon serving on a loopback port.
type serving struct {
	url    string
	stop   context.CancelFunc
	done   chan struct{} // closed when Serve has returned
	client *http.Client
}

// serve starts a sigild of cfg (another replica of the same HSM token
// and database, initialised as p; st is a handle on the database) until
// the test ends or stop. Each replica keeps its own anchor, written as
// `sigild init` does when it joins the database.
func serve(t *testing.T, cfg *config.Config, roots *x509.CertPool, p *daemon.PKI, st store.Store) *serving {
	t.Helper()
	own := *cfg
	own.Audit.Anchor = filepath.Join(t.TempDir(), "sigild.anchor")
	if _, err := daemon.JoinReplica(t.Context(), &own, st, p); err != nil {
		t.Fatalf("JoinReplica: %v", err)
	}
	d, err := daemon.New(t.Context(), &own, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("daemon.New: %v", err)
	}
	t.Cleanup(d.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &serving{url: "https://" + ln.Addr().String(), stop: cancel, done: make(chan struct{}),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}}
	go func() {
		defer close(s.done)
		if err := d.ServeListener(ctx, ln); err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-s.done })
	return s
}

// get returns the status and body of path.
func (s *serving) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := s.client.Get(s.url + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the unlabelled sample name on /metrics.
func (s *serving) metric(t *testing.T, name string) float64 {
	t.Helper()
	_, body := s.get(t, "/metrics")
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// replicaConfig is cfg for a replica serving in tests: the test policy,
// a short checkpoint interval.
func replicaConfig(cfg *config.Config) *config.Config {
	c := *cfg
	c.Policy.Dir = filepath.Join("..", "..", "testenv", "policy")
	c.Audit.CheckpointInterval = 100 * time.Millisecond
	c.Attestation.EKAllow = []string{strings.Repeat("ab", 32)} // no TPM enrolls here
	return &c
}

// appendEntries appends n entries through st, as requests to any replica
// would, and waits for a stored checkpoint to cover them.
func appendEntries(t *testing.T, st store.Store, n int) uint64 {
	t.Helper()
	for i := range n {
		if err := store.RecordAudit(t.Context(), st, audit.PolicyLoaded, audit.Policy{Version: fmt.Sprintf("test-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	size, err := st.AuditSize(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "a checkpoint of every entry", func() bool {
		cps, err := st.Checkpoints(t.Context())
		return err == nil && len(cps) > 0 && cps[len(cps)-1].Size == size
	})
	return size
}

// TestOnePublisherAcrossReplicas: of two replicas on one database, one
// holds the checkpoint lease and signs; the other signs nothing and serves
// the same checkpoints; when the leader stops, the other takes over; every
// stored checkpoint is consistent with the next (no fork). Both report the
// policy version they run in /readyz.
func TestOnePublisherAcrossReplicas(t *testing.T) {
	cfg, rs := newReplicas(t, 1)
	p, err := daemon.Init(t.Context(), cfg, rs[0].h, rs[0].st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	c := replicaConfig(cfg)
	a := serve(t, c, roots, p, rs[0].st)
	appendEntries(t, rs[0].st, 1)
	b := serve(t, c, roots, p, rs[0].st)
	appendEntries(t, rs[0].st, 5)
	leader, follower := a, b
	if a.metric(t, "sigil_audit_checkpoint_leader") != 1 {
		leader, follower = b, a
	}
	if leader.metric(t, "sigil_audit_checkpoint_leader") != 1 || follower.metric(t, "sigil_audit_checkpoint_leader") != 0 {
		t.Fatal("want exactly one replica leading")
	}
	if n := follower.metric(t, "sigil_audit_checkpoints_signed_total"); n != 0 {
		t.Fatalf("the follower signed %v checkpoints", n)
	}
	size := appendEntries(t, rs[0].st, 3)
	testenv.WaitFor(t, 10*time.Second, "both replicas to serve the latest checkpoint", func() bool {
		_, na := a.get(t, api.PathAuditCheckpoint)
		_, nb := b.get(t, api.PathAuditCheckpoint)
		return na == nb && strings.Contains(na, "\n"+strconv.FormatUint(size, 10)+"\n")
	})
	for _, s := range []*serving{a, b} {
		status, body := s.get(t, "/readyz")
		if status != http.StatusOK || !strings.Contains(body, "policy_version: sha256:") {
			t.Errorf("/readyz = %d %q, want ready with the policy version", status, body)
		}
	}
	signed := leader.metric(t, "sigil_audit_checkpoints_signed_total")
	leader.stop()
	<-leader.done
	appendEntries(t, rs[0].st, 4)
	if follower.metric(t, "sigil_audit_checkpoint_leader") != 1 || follower.metric(t, "sigil_audit_checkpoints_signed_total") == 0 {
		t.Fatal("the other replica did not take over signing")
	}
	t.Logf("old leader signed %v checkpoints, new leader %v", signed, follower.metric(t, "sigil_audit_checkpoints_signed_total"))
	checkNoFork(t, rs[0].st, cfg, p)
}

// checkNoFork checks every stored checkpoint's signature and that each is
// consistent with the next, by consistency proofs from the stored log:
// whoever signed them, they are of one append-only tree.
func checkNoFork(t *testing.T, st store.Store, cfg *config.Config, p *daemon.PKI) {
	t.Helper()
	ctx := t.Context()
	origin, err := daemon.AuditOrigin(ctx, cfg, st, p.AuditKey.Public(), nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := audit.NewVerifier(origin, p.AuditKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	stored, err := st.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var prev *audit.Checkpoint
	for _, s := range stored {
		cp, err := audit.OpenCheckpoint(s.Note, v)
		if err != nil || cp.Size != s.Size {
			t.Fatalf("stored checkpoint of size %d: %+v, %v", s.Size, cp, err)
		}
		if prev != nil {
			proof, err := audit.ConsistencyProof(ctx, store.AuditStorage(st), prev.Size, cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := audit.VerifyConsistency(prev.Size, cp.Size, proof, prev.Hash, cp.Hash); err != nil {
				t.Fatalf("checkpoints of sizes %d and %d fork: %v", prev.Size, cp.Size, err)
			}
		}
		prev = &cp
	}
	t.Logf("%d stored checkpoints, consistent", len(stored))
}

// TestDatabaseDown: with its PostgreSQL stopped, a replica answers 503
// promptly, to /readyz and to requests that need the database, and serves
// again once the database is back, without a restart.
func TestDatabaseDown(t *testing.T) {
	pg := testenv.StartPostgres(t)
	tok := testenv.SoftHSM(t)
	cfg := config.Defaults()
	cfg.TrustDomain = "sigil.test"
	cfg.HSM.URI = tok.URI
	cfg.Store = pg.NewDatabase(t)
	cfg.TLS.IPAddresses = []string{"127.0.0.1"}
	log := slog.New(slog.DiscardHandler)
	h, err := daemon.OpenHSM(t.Context(), cfg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	st, err := backend.Open(t.Context(), cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, err := daemon.Init(t.Context(), cfg, h, st, log)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	s := serve(t, replicaConfig(cfg), roots, p, st)
	for _, path := range []string{"/readyz", api.PathCRL} {
		if status, body := s.get(t, path); status != http.StatusOK {
			t.Fatalf("GET %s with the database up = %d %q", path, status, body)
		}
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	const bound = 3 * time.Second
	for _, path := range []string{"/readyz", api.PathCRL} {
		began := time.Now()
		status, body := s.get(t, path)
		took := time.Since(began)
		t.Logf("GET %s with the database down: %d in %v", path, status, took.Round(time.Millisecond))
		if status != http.StatusServiceUnavailable || took > bound {
			t.Errorf("GET %s with the database down = %d %q in %v, want 503 within %v", path, status, body, took, bound)
		}
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the replica to be ready again", func() bool {
		status, _ := s.get(t, "/readyz")
		return status == http.StatusOK
	})
	if status, body := s.get(t, api.PathCRL); status != http.StatusOK {
		t.Fatalf("GET CRL after the database came back = %d %q", status, body)
	}
	// Its audit log signs again: new entries get a checkpoint it serves.
	// (The test's own handle may hold connections the restart ended.)
	testenv.WaitForNil(t, 10*time.Second, "the test's store handle to read again", func() error {
		_, err := st.AuditSize(t.Context())
		return err
	})
	size := appendEntries(t, st, 2)
	testenv.WaitFor(t, 10*time.Second, "the replica to serve a checkpoint of the new entries", func() bool {
		_, note := s.get(t, api.PathAuditCheckpoint)
		return strings.Contains(note, "\n"+strconv.FormatUint(size, 10)+"\n")
	})
}

// TestSharedCRL: replicas serve the one CRL that one of them produced and
// stored: concurrent requests over three replicas get the same signed
// CRL; a certificate revoked through any replica is in the next CRL any
// replica serves, under a larger number; after CRLRefresh one is produced
// again.
func TestSharedCRL(t *testing.T) {
	cfg, rs := newReplicas(t, 3)
	log := slog.New(slog.DiscardHandler)
	p, err := daemon.Init(t.Context(), cfg, rs[0].h, rs[0].st, log)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(p.Root, p.Issuer, p.IssuerKey, cfg.TrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	storeCertificates(t, rs[0].st, now, now.Add(-time.Minute))
	concurrently := func(at time.Time) *x509.RevocationList {
		t.Helper()
		ders := make([][]byte, 3*4)
		var wg sync.WaitGroup
		for i := range ders {
			wg.Go(func() {
				var err error
				if ders[i], err = daemon.SharedCRL(t.Context(), rs[i%3].st, c, at); err != nil {
					t.Errorf("SharedCRL: %v", err)
				}
			})
		}
		wg.Wait()
		for _, d := range ders[1:] {
			if !bytes.Equal(d, ders[0]) {
				t.Fatal("replicas served different CRLs: each produced its own")
			}
		}
		crl, err := x509.ParseRevocationList(ders[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(p.Issuer); err != nil {
			t.Fatal(err)
		}
		for _, r := range crl.RevokedCertificateEntries {
			if crl.ThisUpdate.Before(r.RevocationTime) {
				t.Fatalf("CRL thisUpdate %v is before the revocation of %x it lists, %v", crl.ThisUpdate, r.SerialNumber, r.RevocationTime)
			}
			if r.ReasonCode != ca.ReasonKeyCompromise {
				t.Fatalf("CRL lists %x with reason code %d, want keyCompromise (%d)", r.SerialNumber, r.ReasonCode, ca.ReasonKeyCompromise)
			}
		}
		return crl
	}
	serials := func(crl *x509.RevocationList) []string {
		var s []string
		for _, r := range crl.RevokedCertificateEntries {
			s = append(s, r.SerialNumber.Text(16))
		}
		slices.Sort(s)
		return s
	}
	first := concurrently(now)
	if got := serials(first); !slices.Equal(got, []string{"a1"}) {
		t.Fatalf("CRL lists %v, want a1", got)
	}
	if again := concurrently(now.Add(time.Minute)); again.Number.Cmp(first.Number) != 0 {
		t.Fatalf("CRL number %v a minute later without revocations, want the stored %v", again.Number, first.Number)
	}
	// Revoked through another replica a moment ago, and the CRL fetched
	// at once: its thisUpdate is not before the revocation.
	if _, err := rs[2].st.RevokeCertificate(t.Context(), "a2", store.ReasonKeyCompromise, time.Now()); err != nil {
		t.Fatal(err)
	}
	second := concurrently(now.Add(time.Minute))
	if got := serials(second); !slices.Equal(got, []string{"a1", "a2"}) || second.Number.Cmp(first.Number) <= 0 {
		t.Fatalf("CRL after revoking a2 through another replica: number %v (was %v), lists %v; want a larger number listing a1 and a2", second.Number, first.Number, got)
	}
	if third := concurrently(now.Add(time.Minute + daemon.CRLRefresh)); third.Number.Cmp(second.Number) <= 0 {
		t.Fatalf("CRL after CRLRefresh: number %v, want one above %v", third.Number, second.Number)
	}
}

// TestRotationServedByAllReplicas: a token-key rotation done on one
// replica (`sigild key rotate`) is published by every replica within the
// key refresh period, with identical JWKS.
func TestRotationServedByAllReplicas(t *testing.T) {
	cfg, rs := newReplicas(t, 1)
	cfg.Tokens.RotationLead = 8 * time.Second // refresh every 2 s
	p, err := daemon.Init(t.Context(), cfg, rs[0].h, rs[0].st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	c := replicaConfig(cfg)
	a := serve(t, c, roots, p, rs[0].st)
	appendEntries(t, rs[0].st, 1)
	b := serve(t, c, roots, p, rs[0].st)
	keys, err := daemon.OpenKeys(t.Context(), c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	before := sameSPIFFEBundle(t, a, b)
	rotated, err := keys.RotateToken(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	testenv.WaitFor(t, 20*time.Second, "both replicas to publish the rotated key, alike", func() bool {
		_, ja := a.get(t, api.PathJWKS)
		_, jb := b.get(t, api.PathJWKS)
		return ja == jb && strings.Contains(ja, `"`+rotated.KID+`"`)
	})
	t.Logf("rotated key %s published by both replicas after %v", rotated.KID, time.Since(began).Round(time.Millisecond))
	after := sameSPIFFEBundle(t, a, b)
	if _, ok := after.FindJWTAuthority(rotated.KID); !ok {
		t.Errorf("the SPIFFE bundle does not carry the rotated key %s", rotated.KID)
	}
	if seq, _ := after.SequenceNumber(); seq <= mustSequence(t, before) {
		t.Errorf("spiffe_sequence %d after the rotation, want more than %d", seq, mustSequence(t, before))
	}
}

// sameSPIFFEBundle fetches the SPIFFE bundle from both replicas, checks
// they serve the same bytes, and parses it with go-spiffe.
func sameSPIFFEBundle(t *testing.T, a, b *serving) *spiffebundle.Bundle {
	t.Helper()
	status, ba := a.get(t, api.PathSPIFFEBundle)
	_, bb := b.get(t, api.PathSPIFFEBundle)
	if status != http.StatusOK || ba != bb {
		t.Fatalf("replicas serve different SPIFFE bundles (status %d):\n%s\n%s", status, ba, bb)
	}
	bundle, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("sigil.test"), []byte(ba))
	if err != nil {
		t.Fatalf("go-spiffe does not read the SPIFFE bundle: %v\n%s", err, ba)
	}
	return bundle
}

func mustSequence(t *testing.T, b *spiffebundle.Bundle) uint64 {
	t.Helper()
	seq, ok := b.SequenceNumber()
	if !ok {
		t.Fatal("the SPIFFE bundle has no spiffe_sequence")
	}
	return seq
}
