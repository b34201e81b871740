package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
)

// tileLog serves a log of entries as tiles, counting bundle requests.
type tileLog struct {
	entries [][]byte
	note    []byte
	bundles atomic.Int32
}

func (l *tileLog) LeafHashes(_ context.Context, start, end uint64) ([][]byte, error) {
	out := make([][]byte, 0, end-start)
	for _, e := range l.entries[start:end] {
		out = append(out, audit.LeafHash(e))
	}
	return out, nil
}

func (l *tileLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == api.PathLogCheckpoint {
		w.Write(l.note)
		return
	}
	t, err := audit.ParseTilePath(strings.TrimPrefix(r.URL.Path, api.PathLog))
	first := t.Index * audit.TileWidth
	if err != nil || !t.Entries || first+t.Width > uint64(len(l.entries)) {
		http.NotFound(w, r)
		return
	}
	l.bundles.Add(1)
	b, _ := audit.EncodeBundle(l.entries[first : first+t.Width])
	w.Write(b)
}

// grow appends entries to size n and signs a checkpoint over them.
func (l *tileLog) grow(t *testing.T, s *audit.Signer, n int) {
	for i := len(l.entries); i < n; i++ {
		e, err := audit.Encode(audit.Entry{Kind: audit.PolicyLoaded, Time: time.Unix(int64(i), 0).UTC(), Data: []byte(fmt.Sprintf(`{"version":"v%d","policies":1}`, i))})
		if err != nil {
			t.Fatal(err)
		}
		l.entries = append(l.entries, e)
	}
	root, err := audit.RootHash(t.Context(), l, uint64(n))
	if err != nil {
		t.Fatal(err)
	}
	if l.note, err = s.Sign(audit.Checkpoint{Origin: s.Name(), Size: uint64(n), Hash: root}); err != nil {
		t.Fatal(err)
	}
}

// The auditor verifies a log read from entry bundles: reads that cross
// bundles and end inside a partial one, first in full, then incrementally
// from the state (fetching only the bundles that hold new entries).
func TestTileSourceVerify(t *testing.T) {
	t.Parallel()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.NewSigner("sigil.test/sigil-audit/test", k)
	if err != nil {
		t.Fatal(err)
	}
	l := &tileLog{}
	srv := httptest.NewServer(l)
	t.Cleanup(srv.Close)
	src := &TileSource{server: srv.URL, hc: srv.Client()}
	state := filepath.Join(t.TempDir(), "state")
	for _, tt := range []struct {
		size    int
		from    uint64
		bundles int32
	}{{1100, 0, 5}, {1100, 1100, 0}, {1300, 1100, 2}, {1301, 1300, 1}} {
		l.grow(t, signer, tt.size)
		l.bundles.Store(0)
		rep, err := audit.Verify(t.Context(), src, signer.Verifier(), audit.VerifyOptions{StatePath: state})
		if err != nil {
			t.Fatalf("size %d: %v\n%s", tt.size, err, rep)
		}
		if rep.From != tt.from || rep.Entries != uint64(tt.size)-tt.from || l.bundles.Load() != tt.bundles {
			t.Errorf("size %d: read %d entries from %d with %d bundles, want from %d with %d", tt.size, rep.Entries, rep.From, l.bundles.Load(), tt.from, tt.bundles)
		}
	}
}
