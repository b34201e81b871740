package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	tclient "github.com/transparency-dev/tessera/client"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
)

// tiledServer serves a log of entries that a test grows.
type tiledServer struct {
	*oauthServer
	st      store.Store
	log     *audit.Log
	v       *audit.Verifier
	entries [][]byte
}

func newTiledServer(t *testing.T, readers []string) *tiledServer {
	t.Helper()
	st, err := backend.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	origin, err := audit.Origin("sigil.test", k.Public())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.NewSigner(origin, k)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(store.AuditStorage(st), signer, origin)
	if err != nil {
		t.Fatal(err)
	}
	e := tokenstest.New(t)
	o := serve(t, e, nil, func(s *Server) { s.Audit, s.AuditReaders, s.Certificates = l, readers, e.Store })
	return &tiledServer{oauthServer: o, st: st, log: l, v: signer.Verifier()}
}

// grow appends entries until the log has size, and signs a checkpoint.
func (s *tiledServer) grow(t *testing.T, size int) []byte {
	t.Helper()
	ctx := t.Context()
	err := s.st.Tx(ctx, func(tx store.Tx) error {
		var batch []store.AuditEntry
		for i := len(s.entries); i < size; i++ {
			e, err := store.NewAuditEntry(audit.PolicyLoaded, time.Unix(int64(i), 0), audit.Policy{Version: fmt.Sprintf("sha256:%04d", i)})
			if err != nil {
				return err
			}
			batch = append(batch, e)
			s.entries = append(s.entries, e.Data)
		}
		return store.AppendAuditEntries(ctx, tx, batch...)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.log.Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	note, err := s.log.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return note
}

// fetcher is tessera's HTTP client for the log under /log/, as caller.
func (s *tiledServer) fetcher(t *testing.T, caller *tokenstest.Workload) *tclient.HTTPFetcher {
	t.Helper()
	u, err := url.Parse(s.url + api.PathLog)
	if err != nil {
		t.Fatal(err)
	}
	f, err := tclient.NewHTTPFetcher(u, s.client(caller))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// An independent C2SP tlog-tiles client (transparency-dev/tessera's)
// reads sigil's log: it opens sigil's checkpoints with the log key, reads
// the entry bundles, whose entries' RFC 6962 leaf hashes are the level-0
// tile hashes, and its inclusion and consistency proofs, built from the
// hash tiles alone, verify against sigil's signed roots. Full tiles, a
// partial tile and a level-1 tile are all in play (600 entries).
func TestTilesReadByTessera(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTiledServer(t, []string{auditor})
	oldNote := s.grow(t, 257)
	s.grow(t, 600)
	f := s.fetcher(t, s.Client(t, auditor))

	cp, raw, _, err := tclient.FetchCheckpoint(ctx, f.ReadCheckpoint, s.v, s.v.Name())
	if err != nil || cp.Size != 600 {
		t.Fatalf("tessera FetchCheckpoint: size %v, %v", cp, err)
	}
	if served, _ := s.log.Checkpoint(ctx); !bytes.Equal(raw, served) {
		t.Fatalf("/log/checkpoint is not the log's checkpoint")
	}
	var bundled [][]byte
	for i := uint64(0); i*audit.TileWidth < cp.Size; i++ {
		b, err := tclient.GetEntryBundle(ctx, f.ReadEntryBundle, i, cp.Size)
		if err != nil {
			t.Fatalf("bundle %d: %v", i, err)
		}
		bundled = append(bundled, b.Entries...)
	}
	leaves, err := tclient.FetchLeafHashes(ctx, f.ReadTile, 0, cp.Size, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := tclient.NewProofBuilder(ctx, cp.Size, f.ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint64{0, 1, 255, 256, 511, 512, 599} {
		if !bytes.Equal(bundled[i], s.entries[i]) || !bytes.Equal(leaves[i], rfc6962.DefaultHasher.HashLeaf(bundled[i])) {
			t.Fatalf("entry %d: the bundle's entry or its tile leaf hash differs from the log's", i)
		}
		p, err := pb.InclusionProof(ctx, i)
		if err != nil {
			t.Fatalf("inclusion proof %d: %v", i, err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, cp.Size, leaves[i], p, cp.Hash); err != nil {
			t.Errorf("inclusion of %d: %v", i, err)
		}
	}
	if uint64(len(bundled)) != cp.Size {
		t.Fatalf("bundles hold %d entries, want %d", len(bundled), cp.Size)
	}
	old, err := audit.OpenCheckpoint(oldNote, s.v)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pb.ConsistencyProof(ctx, old.Size, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old.Size, cp.Size, p, old.Hash, cp.Hash); err != nil {
		t.Errorf("consistency %d -> %d: %v", old.Size, cp.Size, err)
	}
	// tessera's own follower: from the old checkpoint to the new one,
	// checking consistency itself.
	lst, err := tclient.NewLogStateTracker(ctx, f.ReadTile, oldNote, s.v, s.v.Name(), tclient.UnilateralConsensus(f.ReadCheckpoint))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := lst.Update(ctx); err != nil || lst.Latest().Size != cp.Size {
		t.Fatalf("tessera LogStateTracker.Update: %v (size %d)", err, lst.Latest().Size)
	}
}

// The tiles routes: what they serve, with which caching, and to whom.
// Hash tiles and the checkpoint are public; entry bundles follow the
// entries' rule (audit.readers over mTLS); a tile beyond the checkpoint is
// 404, a malformed path 400.
func TestTilesRoutes(t *testing.T) {
	t.Parallel()
	s := newTiledServer(t, []string{auditor})
	s.grow(t, 300)
	anyone, reader := s.client(nil), s.client(s.Client(t, auditor))
	for _, tt := range []struct {
		name   string
		c      *http.Client
		path   string
		status int
		cache  string
	}{
		{"checkpoint", anyone, "checkpoint", http.StatusOK, cacheShort},
		{"full-tile", anyone, "tile/0/000", http.StatusOK, cacheImmutable},
		{"partial-tile", anyone, "tile/0/001.p/44", http.StatusOK, cacheShort},
		{"narrower-partial-tile", anyone, "tile/0/001.p/3", http.StatusOK, cacheShort},
		{"level-1-partial-tile", anyone, "tile/1/000.p/1", http.StatusOK, cacheShort},
		{"full-bundle", reader, "tile/entries/000", http.StatusOK, cachePrivateImmutable},
		{"partial-bundle", reader, "tile/entries/001.p/44", http.StatusOK, cachePrivateShort},
		{"bundle-anonymous", anyone, "tile/entries/000", http.StatusUnauthorized, ""},
		{"bundle-other-identity", s.client(s.Workload(t, "payments")), "tile/entries/000", http.StatusForbidden, ""},
		{"tile-beyond-checkpoint", anyone, "tile/0/001", http.StatusNotFound, ""},
		{"partial-wider-than-tree", anyone, "tile/0/001.p/45", http.StatusNotFound, ""},
		{"bundle-beyond-checkpoint", reader, "tile/entries/002", http.StatusNotFound, ""},
		{"level-2-beyond-tree", anyone, "tile/2/000.p/1", http.StatusNotFound, ""},
		{"index-not-canonical", anyone, "tile/0/0", http.StatusBadRequest, ""},
		{"index-leading-zero-group", anyone, "tile/0/x000/001", http.StatusBadRequest, ""},
		{"width-256", anyone, "tile/0/000.p/256", http.StatusBadRequest, ""},
		{"width-0", anyone, "tile/0/000.p/0", http.StatusBadRequest, ""},
		{"level-64", anyone, "tile/64/000", http.StatusBadRequest, ""},
		{"bundle-path-without-slash", anyone, "tile/entries", http.StatusUnauthorized, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.c.Get(s.url + api.PathLog + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body bytes.Buffer
			body.ReadFrom(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("GET %s = %d %s, want %d", tt.path, resp.StatusCode, body.String(), tt.status)
			}
			if tt.status != http.StatusOK {
				if bytes.Contains(body.Bytes(), s.entries[0]) {
					t.Errorf("refused, but the answer holds entry data")
				}
				return
			}
			if got := resp.Header.Get("Cache-Control"); got != tt.cache {
				t.Errorf("Cache-Control = %q, want %q", got, tt.cache)
			}
		})
	}
}
