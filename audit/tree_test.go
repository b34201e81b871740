package audit_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/sigil-dev/sigil/audit"
)

// leaves is an in-memory audit.LeafHashReader.
type leaves [][]byte

func (l leaves) LeafHashes(_ context.Context, start, end uint64) ([][]byte, error) {
	if start > end || end > uint64(len(l)) {
		return nil, fmt.Errorf("[%d, %d) out of range", start, end)
	}
	return l[start:end], nil
}

func makeLeaves(n int) leaves {
	l := make(leaves, n)
	for i := range l {
		l[i] = audit.LeafHash(fmt.Appendf(nil, "entry %d", i))
	}
	return l
}

// mth is RFC 6962's MTH written out, recursively, over leaf hashes.
func mth(l [][]byte) []byte {
	switch len(l) {
	case 0:
		h := sha256.Sum256(nil)
		return h[:]
	case 1:
		return l[0]
	}
	k := 1 << (bits.Len(uint(len(l)-1)) - 1) // largest power of two < n
	h := sha256.Sum256(append(append([]byte{1}, mth(l[:k])...), mth(l[k:])...))
	return h[:]
}

// checkTree checks the root, every inclusion proof (or sampled ones) and
// every consistency proof (or sampled ones) of the tree of size n.
func checkTree(t *testing.T, l leaves, n uint64, sample func(n uint64) []uint64) {
	t.Helper()
	ctx := t.Context()
	root, err := audit.RootHash(ctx, l, n)
	if err != nil {
		t.Fatal(err)
	}
	if want := mth(l[:n]); !bytes.Equal(root, want) {
		t.Fatalf("size %d: RootHash = %x, want %x", n, root, want)
	}
	for _, i := range sample(n) {
		if i >= n {
			continue
		}
		p, err := audit.InclusionProof(ctx, l, i, n)
		if err != nil {
			t.Fatalf("InclusionProof(%d, %d): %v", i, n, err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, n, l[i], p, root); err != nil {
			t.Fatalf("proof.VerifyInclusion(%d, %d): %v", i, n, err)
		}
		if err := audit.VerifyInclusion(l[i], i, n, p, root); err != nil {
			t.Fatalf("VerifyInclusion(%d, %d): %v", i, n, err)
		}
	}
	for _, m := range append(sample(n), n) {
		checkConsistency(t, l, m, n, root)
	}
}

func checkConsistency(t *testing.T, l leaves, m, n uint64, rootN []byte) {
	t.Helper()
	p, err := audit.ConsistencyProof(t.Context(), l, m, n)
	if err != nil {
		t.Fatalf("ConsistencyProof(%d, %d): %v", m, n, err)
	}
	rootM := mth(l[:m])
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, m, n, p, rootM, rootN); err != nil {
		t.Fatalf("proof.VerifyConsistency(%d, %d): %v", m, n, err)
	}
	if err := audit.VerifyConsistency(m, n, p, rootM, rootN); err != nil {
		t.Fatalf("VerifyConsistency(%d, %d): %v", m, n, err)
	}
}

func all(n uint64) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i)
	}
	return out
}

func TestTreeEverySmallSize(t *testing.T) {
	l := makeLeaves(64)
	for n := uint64(0); n <= 64; n++ {
		checkTree(t, l, n, all)
	}
}

func TestTreeRandomLargeSizes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	l := makeLeaves(5000)
	sample := func(n uint64) []uint64 {
		s := []uint64{0, n - 1, n / 2, 1 << (bits.Len64(n) - 1), (1 << (bits.Len64(n) - 1)) - 1}
		for range 20 {
			s = append(s, r.Uint64N(n))
		}
		return s
	}
	for _, n := range []uint64{65, 127, 128, 129, 1000, 1023, 1024, 1025, 4096, 5000, 64 + r.Uint64N(4936), 64 + r.Uint64N(4936)} {
		checkTree(t, l, n, sample)
	}
}

func TestProofsRefuseWrongInputs(t *testing.T) {
	ctx := t.Context()
	l := makeLeaves(10)
	root := mth(l)
	p, err := audit.InclusionProof(ctx, l, 3, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifyInclusion(l[4], 3, 10, p, root); err == nil {
		t.Error("inclusion proof of leaf 3 verified for another leaf")
	}
	if err := audit.VerifyInclusion(l[3], 4, 10, p, root); err == nil {
		t.Error("inclusion proof of leaf 3 verified at index 4")
	}
	c, err := audit.ConsistencyProof(ctx, l, 6, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifyConsistency(6, 10, c, mth(l[:5]), root); err == nil {
		t.Error("consistency proof verified against the wrong old root")
	}
	for name, f := range map[string]func() error{
		"index beyond size":      func() error { _, err := audit.InclusionProof(ctx, l, 10, 10); return err },
		"old size beyond new":    func() error { _, err := audit.ConsistencyProof(ctx, l, 11, 10); return err },
		"size beyond the leaves": func() error { _, err := audit.RootHash(ctx, l, 11); return err },
		"short hashes":           func() error { _, err := audit.RootHash(ctx, leaves{[]byte{1}}, 1); return err },
		"canceled": func() error {
			c, cancel := context.WithCancel(ctx)
			cancel()
			_, err := audit.RootHash(c, l, 10)
			return err
		},
	} {
		if err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestConsistencyProofCatchesARewrite builds the proof from a rewritten
// log: it must not prove the old root a prefix.
func TestConsistencyProofCatchesARewrite(t *testing.T) {
	l := makeLeaves(20)
	oldRoot := mth(l[:7])
	rewritten := append(leaves(nil), l...)
	rewritten[3] = audit.LeafHash([]byte("rewritten"))
	p, err := audit.ConsistencyProof(t.Context(), rewritten, 7, 20)
	if err != nil {
		t.Fatal(err)
	}
	err = audit.VerifyConsistency(7, 20, p, oldRoot, mth(rewritten))
	var mismatch proof.RootMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("VerifyConsistency = %v, want a root mismatch", err)
	}
}
