package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
)

// tiled is an in-memory audit.NodeHashReader: leaves, and the nodes at
// every level that is a multiple of TileHeight, computed by mth. It counts
// its reads and the hashes they return.
type tiled struct {
	leaves
	nodes  map[uint][][]byte // by level, shared by prefixes
	reads  int
	hashes uint64
}

var _ audit.NodeHashReader = (*tiled)(nil)

func newTiled(l leaves) *tiled {
	nodes := map[uint][][]byte{}
	for level := uint(audit.TileHeight); 1<<level <= len(l); level += audit.TileHeight {
		for i := 0; (i+1)<<level <= len(l); i++ {
			nodes[level] = append(nodes[level], mth(l[i<<level:(i+1)<<level]))
		}
	}
	return &tiled{leaves: l, nodes: nodes}
}

// prefix returns the tree of the first n leaves.
func (t *tiled) prefix(n uint64) *tiled { return &tiled{leaves: t.leaves[:n], nodes: t.nodes} }

func (t *tiled) LeafHashes(ctx context.Context, start, end uint64) ([][]byte, error) {
	t.reads, t.hashes = t.reads+1, t.hashes+end-start
	return t.leaves.LeafHashes(ctx, start, end)
}

func (t *tiled) NodeHashes(_ context.Context, level uint, start, end uint64) ([][]byte, error) {
	if level == 0 || level%audit.TileHeight != 0 {
		return nil, fmt.Errorf("no nodes at level %d", level)
	}
	if start > end || end<<level > uint64(len(t.leaves)) {
		return nil, fmt.Errorf("nodes [%d, %d) at level %d out of range", start, end, level)
	}
	t.reads, t.hashes = t.reads+1, t.hashes+end-start
	return t.nodes[level][start:end], nil
}

// cost returns the reads and hashes read since the last call.
func (t *tiled) cost() (int, uint64) {
	r, h := t.reads, t.hashes
	t.reads, t.hashes = 0, 0
	return r, h
}

// TestTiledTreeMatchesScan: for every size to 600, many to 2100 (every
// multiple of 256 and its neighbours) and sizes around 65536 (where a node
// of level 16 appears), with random and edge indices, the root
// and proofs from stored nodes are those recomputed from every leaf (the
// LeafHashReader path), verify, and cost at most one read of at most 128
// hashes per node.
func TestTiledTreeMatchesScan(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	all := newTiled(makeLeaves(66000))
	sizes := []uint64{65535, 65536, 65537, 600 + r.Uint64N(65400)}
	for n := uint64(1); n <= 2100; n++ {
		if n <= 600 || n%17 == 0 || (n+1)%256 <= 2 {
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		picks := []uint64{n - 1, r.Uint64N(n)}
		if n > 65535 {
			picks = append(picks, 65535)
		}
		checkTiled(t, all.prefix(n), n, picks)
	}
}

func checkTiled(t *testing.T, tl *tiled, n uint64, picks []uint64) {
	t.Helper()
	ctx := t.Context()
	scan := tl.leaves // a bare LeafHashReader: the O(n) path
	maxReads := 2 * bits.Len64(n)
	root := checkSame(t, fmt.Sprintf("RootHash(%d)", n), tl, maxReads, func(r audit.LeafHashReader) ([][]byte, error) {
		h, err := audit.RootHash(ctx, r, n)
		return [][]byte{h}, err
	})[0]
	if n <= 2100 && !bytes.Equal(root, mth(scan[:n])) {
		t.Fatalf("RootHash(%d) is not MTH", n)
	}
	for _, i := range picks {
		if i >= n {
			continue
		}
		p := checkSame(t, fmt.Sprintf("InclusionProof(%d, %d)", i, n), tl, maxReads, func(r audit.LeafHashReader) ([][]byte, error) {
			return audit.InclusionProof(ctx, r, i, n)
		})
		if err := audit.VerifyInclusion(scan[i], i, n, p, root); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range picks {
		if m > n {
			continue
		}
		p := checkSame(t, fmt.Sprintf("ConsistencyProof(%d, %d)", m, n), tl, maxReads, func(r audit.LeafHashReader) ([][]byte, error) {
			return audit.ConsistencyProof(ctx, r, m, n)
		})
		rootM, err := audit.RootHash(ctx, tl, m)
		if err != nil {
			t.Fatal(err)
		}
		if err := audit.VerifyConsistency(m, n, p, rootM, root); err != nil {
			t.Fatal(err)
		}
	}
}

// checkSame runs f on tl and on its bare leaves, wants the same hashes,
// and at most maxReads reads of tl of at most 128 hashes each.
func checkSame(t *testing.T, what string, tl *tiled, maxReads int, f func(audit.LeafHashReader) ([][]byte, error)) [][]byte {
	t.Helper()
	want, err := f(tl.leaves)
	if err != nil {
		t.Fatalf("%s from the leaves: %v", what, err)
	}
	tl.cost()
	got, err := f(tl)
	if err != nil {
		t.Fatalf("%s from the nodes: %v", what, err)
	}
	if reads, hashes := tl.cost(); reads > maxReads || hashes > uint64(reads)*128 {
		t.Fatalf("%s read %d hashes in %d reads, want at most %d reads of 128", what, hashes, reads, maxReads)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d hashes from the nodes, %d from the leaves", what, len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s: hash %d is %x from the nodes, %x from the leaves", what, i, got[i], want[i])
		}
	}
	return got
}

func TestTiledTreeRefusesWrongInputs(t *testing.T) {
	ctx := t.Context()
	tl := newTiled(makeLeaves(300))
	short := newTiled(makeLeaves(300))
	short.nodes[8][0] = short.nodes[8][0][:31]
	for _, tc := range []struct {
		name string
		f    func() error
		want string
	}{
		{"size beyond the leaves", func() error { _, err := audit.RootHash(ctx, tl, 301); return err }, "out of range"},
		{"tile beyond the leaves", func() error { _, err := audit.RootHash(ctx, tl.prefix(255), 256); return err }, "nodes [0, 1) at level 8 out of range"},
		{"index beyond size", func() error { _, err := audit.InclusionProof(ctx, tl, 300, 300); return err }, "inclusion proof"},
		{"old size beyond new", func() error { _, err := audit.ConsistencyProof(ctx, tl, 300, 299); return err }, "consistency proof"},
		{"short node hash", func() error { _, err := audit.RootHash(ctx, short, 300); return err }, "node hash 0 at level 8 is 31 bytes"},
		{"canceled", func() error {
			c, cancel := context.WithCancel(ctx)
			cancel()
			_, err := audit.RootHash(c, tl, 256)
			return err
		}, context.Canceled.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.f(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// tiledStorage is a memStorage with nodes computed from its leaf hashes,
// some of which can be corrupted.
type tiledStorage struct {
	*memStorage
	corrupt map[[2]uint64]bool // {level, index}
}

var _ audit.NodeHashReader = (*tiledStorage)(nil)

func (s *tiledStorage) NodeHashes(_ context.Context, level uint, start, end uint64) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if end<<level > uint64(len(s.hashes)) {
		return nil, fmt.Errorf("nodes [%d, %d) at level %d out of range", start, end, level)
	}
	var out [][]byte
	for i := start; i < end; i++ {
		h := mth(s.hashes[i<<level : (i+1)<<level])
		if s.corrupt[[2]uint64{uint64(level), i}] {
			h = sha256Of("corrupt")
		}
		out = append(out, h)
	}
	return out, nil
}

// TestLogChecksStoredNodes: the Log refuses stored nodes that are not the
// hashes of the leaves, at Init and when it integrates them, and signs no
// checkpoint covering them.
func TestLogChecksStoredNodes(t *testing.T) {
	e := newLogEnv(t)
	st := &tiledStorage{memStorage: e.st, corrupt: map[[2]uint64]bool{}}
	newLog := func() *audit.Log {
		l, err := audit.New(st, e.signer, origin, audit.WithLogger(testLogger(t)), audit.WithClock(newClock().now), audit.WithInterval(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := newLog()
	e.add(t, 600)
	if err := l.Integrate(t.Context()); err != nil {
		t.Fatalf("Integrate: %v", err)
	}
	if err := newLog().Init(t.Context()); err != nil {
		t.Fatalf("Init of intact storage: %v", err)
	}

	st.corrupt[[2]uint64{8, 3}] = true // entries 768..1023, not integrated yet
	e.add(t, 500)
	err := l.Integrate(t.Context())
	if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "node 3 at level 8") {
		t.Fatalf("Integrate over a corrupt node = %v, want ErrTampered for node 3 at level 8", err)
	}
	if cp := openNote(t, e, l); cp.Size != 600 {
		t.Fatalf("checkpoint size %d after the refusal, want 600", cp.Size)
	}

	st.corrupt[[2]uint64{8, 1}] = true // entries 256..511, checkpointed
	err = newLog().Init(t.Context())
	if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "node 1 at level 8") {
		t.Fatalf("Init over a corrupt node = %v, want ErrTampered for node 1 at level 8", err)
	}
}

func openNote(t *testing.T, e *logEnv, l *audit.Log) audit.Checkpoint {
	t.Helper()
	n, err := l.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.OpenCheckpoint(n, e.signer.Verifier())
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestSubtreeHash: the hash of a perfect subtree from its leaves, or from
// the roots of its halves, is the root of those leaves; anything but a
// power of two of hashes of HashSize bytes is refused.
func TestSubtreeHash(t *testing.T) {
	l := makeLeaves(256)
	for _, n := range []int{1, 2, 4, 128, 256} {
		got, err := audit.SubtreeHash(l[:n])
		if err != nil || !bytes.Equal(got, mth(l[:n])) {
			t.Fatalf("SubtreeHash of %d leaves = %x, %v; want %x", n, got, err, mth(l[:n]))
		}
	}
	halves := [][]byte{mth(l[:128]), mth(l[128:])}
	if got, err := audit.SubtreeHash(halves); err != nil || !bytes.Equal(got, mth(l)) {
		t.Fatalf("SubtreeHash of the halves = %x, %v; want the root of the leaves", got, err)
	}
	short := append([][]byte{l[0][:31]}, l[1])
	for _, tc := range []struct {
		name   string
		hashes [][]byte
		want   string
	}{
		{"none", nil, "subtree hash of 0 hashes: want a power of two"},
		{"three", l[:3], "subtree hash of 3 hashes: want a power of two"},
		{"short hash", short, "hash 0 is 31 bytes, want 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := audit.SubtreeHash(tc.hashes); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SubtreeHash = %v, want %q", err, tc.want)
			}
		})
	}
}
