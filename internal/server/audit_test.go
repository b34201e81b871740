package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
)

// The audit routes serve the log through audit.Log: checkpoint, entries,
// entries found by serial or jti, and proofs; a range or key the log does
// not hold is a 404, a malformed query a 400.
func TestAuditRoutes(t *testing.T) {
	ctx := t.Context()
	a := newAuditServer(t, []string{auditor})
	st, entries, l := a.st, a.entries, a.log
	c := a.client(a.Client(t, auditor))
	get := func(t *testing.T, url string, status int) []byte {
		t.Helper()
		return getAs(t, c, url, status)
	}

	note, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if body := get(t, a.url+api.PathAuditCheckpoint, http.StatusOK); !bytes.Equal(body, note) {
		t.Errorf("checkpoint = %q, want %q", body, note)
	}
	cp, err := audit.PeekCheckpoint(note)
	if err != nil || cp.Size != 3 {
		t.Fatalf("checkpoint of size %d, %v; want 3", cp.Size, err)
	}
	var page api.AuditEntries
	decode(t, get(t, a.url+api.PathAuditEntries+"?start=1&end=3", http.StatusOK), &page)
	if len(page.Entries) != 2 || !bytes.Equal(page.Entries[0], entries[1]) || !bytes.Equal(page.Entries[1], entries[2]) {
		t.Errorf("entries [1, 3) = %q, want %q", page.Entries, entries[1:])
	}
	for _, tt := range []struct {
		query string
		index uint64
	}{{"?serial=cd34&size=3", 2}, {"?jti=j1&size=3", 1}, {"?index=0&size=3", 0}} {
		var proof api.AuditProof
		decode(t, get(t, a.url+api.PathAuditInclusion+tt.query, http.StatusOK), &proof)
		if proof.Index != tt.index || proof.Size != 3 {
			t.Errorf("inclusion %s = index %d, size %d; want index %d, size 3", tt.query, proof.Index, proof.Size, tt.index)
		}
		if err := audit.VerifyInclusion(audit.LeafHash(entries[tt.index]), tt.index, 3, proof.Hashes, cp.Hash); err != nil {
			t.Errorf("inclusion %s: %v", tt.query, err)
		}
	}
	var proof api.AuditProof
	decode(t, get(t, a.url+api.PathAuditConsistency+"?from=1&to=3", http.StatusOK), &proof)
	root1, err := audit.RootHash(ctx, store.AuditStorage(st), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifyConsistency(1, 3, proof.Hashes, root1, cp.Hash); err != nil || proof.From != 1 || proof.Size != 3 {
		t.Errorf("consistency [1, 3) = %+v: %v", proof, err)
	}
	for _, tt := range []struct {
		name, path string
		status     int
	}{
		{"entries-beyond-log", api.PathAuditEntries + "?start=2&end=4", http.StatusNotFound},
		{"entries-reversed", api.PathAuditEntries + "?start=2&end=1", http.StatusBadRequest},
		{"unknown-serial", api.PathAuditInclusion + "?serial=ffff&size=3", http.StatusNotFound},
		{"unknown-jti", api.PathAuditInclusion + "?jti=nope&size=3", http.StatusNotFound},
		{"size-beyond-log", api.PathAuditInclusion + "?index=0&size=4", http.StatusBadRequest},
		{"consistency-not-integer", api.PathAuditConsistency + "?from=x&to=3", http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) { get(t, a.url+tt.path, tt.status) })
	}
}

// Attack: read users' subjects, scopes, chains and denial reasons from
// the audit log without being an auditor. Entries and inclusion proofs
// (which find entries by serial or jti) answer 401 without an acceptable
// certificate (none, revoked, or issued by our CA but not on record) and
// 403 for another identity; checkpoints and consistency proofs stay
// public; a server with no readers lets nobody read entries.
func TestAuditReadersOnly(t *testing.T) {
	t.Parallel()
	a := newAuditServer(t, []string{auditor})
	revoked := a.Client(t, auditor)
	a.RevokeCertificate(t, revoked)
	unrecorded := tokenstest.Issue(t, a.CA, auditor, a.Evidence())
	callers := []struct {
		name   string
		w      *tokenstest.Workload
		status int
	}{
		{"no-certificate", nil, http.StatusUnauthorized},
		{"revoked-auditor", revoked, http.StatusUnauthorized},
		{"auditor-not-on-record", unrecorded, http.StatusUnauthorized},
		{"workload", a.Workload(t, "payments"), http.StatusForbidden},
		{"token-admin", a.Client(t, tokenstest.Admin), http.StatusForbidden},
	}
	private := []string{
		api.PathAuditEntries + "?start=0&end=3",
		api.PathAuditEntries + "?start=3&end=4", // past the checkpoint: would tell whether entries wait
		api.PathAuditInclusion + "?serial=cd34&size=3",
		api.PathAuditInclusion + "?jti=j1&size=3",
		api.PathAuditInclusion + "?index=0&size=3",
	}
	for _, caller := range callers {
		t.Run(caller.name, func(t *testing.T) {
			c := a.client(caller.w)
			for _, path := range private {
				body := getAs(t, c, a.url+path, caller.status)
				if bytes.Contains(body, []byte(`"entries"`)) || bytes.Contains(body, []byte(`"hashes"`)) {
					t.Errorf("GET %s refused, but the answer holds entry data: %s", path, body)
				}
			}
			getAs(t, c, a.url+api.PathAuditCheckpoint, http.StatusOK)
			getAs(t, c, a.url+api.PathAuditConsistency+"?from=1&to=3", http.StatusOK)
		})
	}
	t.Run("no-readers-configured", func(t *testing.T) {
		b := newAuditServer(t, nil)
		c := b.client(b.Client(t, auditor))
		getAs(t, c, b.url+api.PathAuditEntries+"?start=0&end=1", http.StatusForbidden)
		getAs(t, c, b.url+api.PathAuditCheckpoint, http.StatusOK)
	})
}

// auditor may read the audit log in these tests.
const auditor = "spiffe://sigil.test/ops/auditor"

// auditServer serves over mTLS an audit log of three entries, readable by
// readers, whose certificates come from the Env's CA and store.
type auditServer struct {
	*oauthServer
	st      store.Store
	log     *audit.Log
	entries [][]byte
}

func newAuditServer(t *testing.T, readers []string) *auditServer {
	t.Helper()
	ctx := t.Context()
	st, err := backend.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var entries [][]byte
	err = st.Tx(ctx, func(tx store.Tx) error {
		for i, key := range []string{"serial:ab12", "jti:j1", "serial:cd34"} {
			e, err := store.NewAuditEntry(audit.PolicyLoaded, time.Unix(int64(i), 0), audit.Policy{Version: key}, key)
			if err != nil {
				return err
			}
			entries = append(entries, e.Data)
			if err := store.AppendAuditEntries(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	l := newAuditLog(t, st)
	e := tokenstest.New(t)
	o := serve(t, e, nil, func(s *Server) { s.Audit, s.AuditReaders, s.Certificates = l, readers, e.Store })
	return &auditServer{oauthServer: o, st: st, log: l, entries: entries}
}

// newAuditLog returns the log of st with a software checkpoint key, its
// entries checkpointed.
func newAuditLog(t *testing.T, st store.Store) *audit.Log {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const origin = "sigil.test/sigil-audit"
	signer, err := audit.NewSigner(origin, k)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(store.AuditStorage(st), signer, origin)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Integrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return l
}

func getAs(t *testing.T, c *http.Client, url string, status int) []byte {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("GET %s = %d %s, want %d", url, resp.StatusCode, body, status)
	}
	return body
}

func decode(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}
