package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
)

// The audit routes serve the log through audit.Log: checkpoint, entries,
// entries found by serial or jti, and proofs; a range or key the log does
// not hold is a 404, a malformed query a 400.
func TestAuditRoutes(t *testing.T) {
	ctx := t.Context()
	st, err := backend.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "sigil.db"))
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
	srv := httptest.NewServer((&Server{Audit: l, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry()}).Handler())
	t.Cleanup(srv.Close)

	note, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if body := get(t, srv.URL+api.PathAuditCheckpoint, http.StatusOK); !bytes.Equal(body, note) {
		t.Errorf("checkpoint = %q, want %q", body, note)
	}
	cp, err := audit.PeekCheckpoint(note)
	if err != nil || cp.Size != 3 {
		t.Fatalf("checkpoint of size %d, %v; want 3", cp.Size, err)
	}
	var page api.AuditEntries
	decode(t, get(t, srv.URL+api.PathAuditEntries+"?start=1&end=3", http.StatusOK), &page)
	if len(page.Entries) != 2 || !bytes.Equal(page.Entries[0], entries[1]) || !bytes.Equal(page.Entries[1], entries[2]) {
		t.Errorf("entries [1, 3) = %q, want %q", page.Entries, entries[1:])
	}
	for _, tt := range []struct {
		query string
		index uint64
	}{{"?serial=cd34&size=3", 2}, {"?jti=j1&size=3", 1}, {"?index=0&size=3", 0}} {
		var proof api.AuditProof
		decode(t, get(t, srv.URL+api.PathAuditInclusion+tt.query, http.StatusOK), &proof)
		if proof.Index != tt.index || proof.Size != 3 {
			t.Errorf("inclusion %s = index %d, size %d; want index %d, size 3", tt.query, proof.Index, proof.Size, tt.index)
		}
		if err := audit.VerifyInclusion(audit.LeafHash(entries[tt.index]), tt.index, 3, proof.Hashes, cp.Hash); err != nil {
			t.Errorf("inclusion %s: %v", tt.query, err)
		}
	}
	var proof api.AuditProof
	decode(t, get(t, srv.URL+api.PathAuditConsistency+"?from=1&to=3", http.StatusOK), &proof)
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
		t.Run(tt.name, func(t *testing.T) { get(t, srv.URL+tt.path, tt.status) })
	}
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

func get(t *testing.T, url string, status int) []byte {
	t.Helper()
	resp, err := http.Get(url)
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
