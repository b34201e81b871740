package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
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

// sealedShards serves the sealed shards of a store (server.LogShards).
type sealedShards struct {
	list []api.LogShard
	logs map[string]*audit.Sealed
}

func (s sealedShards) Shards(context.Context) ([]api.LogShard, error) { return s.list, nil }

func (s sealedShards) Shard(_ context.Context, name string) (ShardLog, error) {
	if l, ok := s.logs[name]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrNoShard, name)
}

// findingShards are sealedShards that find entries by key: "jti:in-s1"
// is entry 5 of s1, "jti:in-s0" in archived shard s0, any other in the
// current shard.
type findingShards struct {
	sealedShards
	s1 store.ShardLog
}

func (f findingShards) FindSealed(ctx context.Context, key string) (api.AuditProof, error) {
	switch key {
	case "jti:in-s1":
		size := f.list[0].Size
		hashes, err := audit.InclusionProof(ctx, f.s1, 5, size)
		return api.AuditProof{Index: 5, Size: size, Hashes: hashes, Shard: "s1", Checkpoint: f.list[0].Checkpoint}, err
	case "jti:in-s0":
		return api.AuditProof{}, fmt.Errorf("%w (shard s0)", ErrArchivedShard)
	}
	return api.AuditProof{}, ErrInCurrentShard
}

// appendPolicies appends n entries to st, named from first.
func appendPolicies(t *testing.T, st store.Store, first, n int) [][]byte {
	t.Helper()
	var data [][]byte
	err := st.Tx(t.Context(), func(tx store.Tx) error {
		var batch []store.AuditEntry
		for i := first; i < first+n; i++ {
			e, err := store.NewAuditEntry(audit.PolicyLoaded, time.Unix(int64(i), 0), audit.Policy{Version: fmt.Sprintf("sha256:%04d", i)})
			if err != nil {
				return err
			}
			batch, data = append(batch, e), append(data, e.Data)
		}
		return store.AppendAuditEntries(t.Context(), tx, batch...)
	})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// tessera reads a sealed shard that starts at no tile boundary (global
// index 300) through /log/shard/NAME/: its final checkpoint is the seal
// the next shard's first entry carries, its bundles hold its own entries
// (its link first), and inclusion and consistency proofs built from its
// hash tiles verify against its signed roots.
func TestShardTilesReadByTessera(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, err := backend.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := audit.Origin("sigil.test", k.Public())
	appendPolicies(t, st, 0, 300)
	s1, err := store.StartShard(ctx, st, k, base, "s1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := audit.NewSigner(s1.Origin, k)
	l, err := audit.New(store.ShardStorage(st, s1, 0), signer, s1.Origin)
	if err != nil {
		t.Fatal(err)
	}
	appendPolicies(t, st, 300, 300)
	if err := l.Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	oldNote, _ := l.Checkpoint(ctx)
	entries := append(appendPolicies(t, st, 600, 300), nil)
	if err := l.Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	s2, err := store.StartShard(ctx, st, k, base, "s2", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	first, _ := st.AuditEntries(ctx, s2.Start, s2.Start+1)
	e, _ := audit.Decode(first[0])
	p, _ := e.Payload()
	seal := p.(*audit.ShardLink).Previous
	v := signer.Verifier()
	sealed, err := audit.NewSealed(store.ShardStorage(st, s1, s2.Start), []byte(seal.Checkpoint), v)
	if err != nil {
		t.Fatal(err)
	}
	shards := sealedShards{
		list: []api.LogShard{{Name: "s1", Origin: s1.Origin, Start: s1.Start, Size: seal.Size, Sealed: true, Checkpoint: seal.Checkpoint}},
		logs: map[string]*audit.Sealed{"s1": sealed},
	}
	w := tokenstest.New(t)
	o := serve(t, w, nil, func(s *Server) {
		s.Audit, s.AuditShards, s.AuditReaders, s.Certificates = l, findingShards{shards, store.ShardStorage(st, s1, s2.Start)}, []string{auditor}, w.Store
	})

	// An entry found by key in a sealed shard: its proof against the
	// shard's final checkpoint, the shard named; in an archived one, 410
	// naming it; in the current one, the log's answer (none here: 404).
	reader := o.client(o.Client(t, auditor))
	for query, want := range map[string]int{"?jti=in-s1&size=3": http.StatusOK, "?jti=in-s0&size=3": http.StatusGone, "?jti=nope&size=3": http.StatusNotFound} {
		resp, err := reader.Get(o.url + api.PathAuditInclusion + query)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			api.AuditProof
			Description string `json:"error_description"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != want {
			t.Fatalf("inclusion %s = %d (%v), want %d", query, resp.StatusCode, err, want)
		}
		switch want {
		case http.StatusOK:
			sealCP, err := audit.OpenCheckpoint([]byte(body.Checkpoint), v)
			if err != nil || body.Shard != "s1" || body.Size != sealCP.Size {
				t.Fatalf("inclusion in s1: shard %q, size %d, checkpoint %v", body.Shard, body.Size, err)
			}
			first, _ := store.ShardStorage(st, s1, s2.Start).Entries(ctx, 5, 6)
			if err := audit.VerifyInclusion(audit.LeafHash(first[0]), 5, body.Size, body.Hashes, sealCP.Hash); err != nil {
				t.Fatalf("inclusion in s1 does not verify against its seal: %v", err)
			}
		case http.StatusGone:
			if !strings.Contains(body.Description, "archived") || !strings.Contains(body.Description, "shard s0") {
				t.Fatalf("inclusion in archived s0: %q, want it named archived", body.Description)
			}
		}
	}

	u, _ := url.Parse(o.url + api.PathLogShard + "s1/")
	f, err := tclient.NewHTTPFetcher(u, o.client(o.Client(t, auditor)))
	if err != nil {
		t.Fatal(err)
	}
	cp, raw, _, err := tclient.FetchCheckpoint(ctx, f.ReadCheckpoint, v, v.Name())
	if err != nil || cp.Size != 601 || cp.Size != seal.Size || !bytes.Equal(raw, []byte(seal.Checkpoint)) {
		t.Fatalf("tessera FetchCheckpoint of s1: %v, %v; want the seal, of 601 entries", cp, err)
	}
	var bundled [][]byte
	for i := uint64(0); i*audit.TileWidth < cp.Size; i++ {
		b, err := tclient.GetEntryBundle(ctx, f.ReadEntryBundle, i, cp.Size)
		if err != nil {
			t.Fatalf("bundle %d: %v", i, err)
		}
		bundled = append(bundled, b.Entries...)
	}
	if l, _ := audit.Decode(bundled[0]); l.Kind != audit.ShardStarted || !bytes.Equal(bundled[301], entries[0]) {
		t.Fatalf("s1's bundles: entry 0 is %s, want its link; entry 301 is not global entry 600", l.Kind)
	}
	leaves, err := tclient.FetchLeafHashes(ctx, f.ReadTile, 0, cp.Size, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := tclient.NewProofBuilder(ctx, cp.Size, f.ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint64{0, 255, 256, 511, 512, 600} {
		if !bytes.Equal(leaves[i], rfc6962.DefaultHasher.HashLeaf(bundled[i])) {
			t.Fatalf("entry %d: its tile leaf hash is not the hash of its bundled entry", i)
		}
		p, err := pb.InclusionProof(ctx, i)
		if err != nil {
			t.Fatalf("inclusion proof %d: %v", i, err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, cp.Size, leaves[i], p, cp.Hash); err != nil {
			t.Errorf("inclusion of %d: %v", i, err)
		}
	}
	old, err := audit.OpenCheckpoint(oldNote, v)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := pb.ConsistencyProof(ctx, old.Size, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old.Size, cp.Size, cons, old.Hash, cp.Hash); err != nil {
		t.Errorf("consistency %d -> %d: %v", old.Size, cp.Size, err)
	}

	// The index, and a shard that does not exist.
	resp, err := o.client(nil).Get(o.url + api.PathLogShards)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list api.LogShards
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Shards) != 1 || list.Shards[0].Checkpoint != seal.Checkpoint {
		t.Fatalf("GET %s = %+v, %v", api.PathLogShards, list, err)
	}
	for path, want := range map[string]int{
		api.PathLogShard + "nope/checkpoint":     http.StatusNotFound,
		api.PathLogShard + "s1/tile/0/002.p/89":  http.StatusOK,
		api.PathLogShard + "s1/tile/0/002.p/90":  http.StatusNotFound,
		api.PathLogShard + "s1/tile/entries/000": http.StatusUnauthorized,
		api.PathLogShard + "s1/tile/0/x":         http.StatusBadRequest,
	} {
		resp, err := o.client(nil).Get(o.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
		if cc := resp.Header.Get("Cache-Control"); want == http.StatusOK && cc != cacheImmutable {
			t.Errorf("GET %s: Cache-Control %q, want %q: a sealed shard's partial tile is final", path, cc, cacheImmutable)
		}
	}
}
