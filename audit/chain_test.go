package audit_test

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
)

const chainBase = "sigil.test/sigil-audit/00112233aabbccdd"

// chainWorld is a log sharded by time, in memory: each shard a memStorage
// whose checkpoints the log key signs under the shard's origin.
type chainWorld struct {
	key    *ecdsa.PrivateKey
	shards []*memShard
	start  uint64 // global index of the last shard's first entry
	n      int    // entries made, for distinct contents
}

type memShard struct {
	info  audit.ShardInfo
	st    *memStorage
	start uint64
}

func newChainWorld(t *testing.T, unsharded int) *chainWorld {
	w := &chainWorld{key: newKey(t)}
	if unsharded > 0 {
		w.shards = []*memShard{{info: audit.ShardInfo{Name: audit.UnshardedName, Origin: chainBase}, st: newMemStorage()}}
		w.grow(t, unsharded)
	}
	return w
}

func (w *chainWorld) last() *memShard { return w.shards[len(w.shards)-1] }

// grow appends n entries to the current shard and signs a checkpoint.
func (w *chainWorld) grow(t *testing.T, n int) {
	t.Helper()
	for range n {
		w.last().st.append(sampleEntry(t, w.n))
		w.n++
	}
	w.sign(t, w.last())
}

// sign signs a checkpoint of all of sh's entries and returns its root.
func (w *chainWorld) sign(t *testing.T, sh *memShard) ([]byte, []byte) {
	t.Helper()
	ctx := context.Background()
	size, _ := sh.st.Size(ctx)
	root, err := audit.RootHash(ctx, sh.st, size)
	if err != nil {
		t.Fatal(err)
	}
	sh.st.mu.Lock()
	note, ok := sh.st.checkpoints[size]
	sh.st.mu.Unlock()
	if ok {
		return note, root
	}
	note, err = newSigner(t, sh.info.Origin, w.key).Sign(audit.Checkpoint{Origin: sh.info.Origin, Size: size, Hash: root, Time: time.Unix(int64(size), 0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.st.PutCheckpoint(ctx, size, note); err != nil {
		t.Fatal(err)
	}
	return note, root
}

// rotate seals the current shard and starts shard name, whose first entry
// is the link forge returns (the honest one by default).
func (w *chainWorld) rotate(t *testing.T, name string, forge func(audit.ShardLink) audit.ShardLink) {
	t.Helper()
	origin, err := audit.ShardOrigin(chainBase, name)
	if err != nil {
		t.Fatal(err)
	}
	link := audit.ShardLink{Name: name, Origin: origin}
	next := &memShard{info: audit.ShardInfo{Name: name, Origin: origin}, st: newMemStorage()}
	if len(w.shards) > 0 {
		prev := w.last()
		prev.info.Sealed = true
		note, root := w.sign(t, prev)
		size, _ := prev.st.Size(context.Background())
		link.Previous = &audit.ShardSeal{Origin: prev.info.Origin, Start: prev.start, Size: size, Root: root, Checkpoint: string(note)}
		next.start = prev.start + size
	}
	if forge != nil {
		link = forge(link)
	}
	next.st.append(encode(t, audit.ShardStarted, time.Unix(0, 0), link))
	w.shards = append(w.shards, next)
	w.sign(t, next)
}

func (w *chainWorld) list() []audit.ShardInfo {
	var out []audit.ShardInfo
	for _, sh := range w.shards {
		out = append(out, sh.info)
	}
	return out
}

func (w *chainWorld) open(name string) (audit.Source, error) {
	for _, sh := range w.shards {
		if sh.info.Name == name {
			return sh.st, nil
		}
	}
	return nil, errors.New("no such shard")
}

func (w *chainWorld) verify(t *testing.T, dir string, list []audit.ShardInfo) (audit.ChainReport, error) {
	t.Helper()
	v, err := audit.NewVerifier(chainBase, w.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	opts := audit.ChainOptions{StatePath: func(origin string) string {
		return filepath.Join(dir, strings.ReplaceAll(origin, "/", "_"))
	}}
	return audit.VerifyChain(context.Background(), list, w.open, v, opts)
}

func TestVerifyChain(t *testing.T) {
	t.Parallel()
	w := newChainWorld(t, 3)
	w.rotate(t, "2026-12-06T00Z", nil)
	w.grow(t, 300)
	w.rotate(t, "2026-12-07T00Z", nil)
	w.grow(t, 4)
	dir := t.TempDir()
	rep, err := w.verify(t, dir, w.list())
	if err != nil || len(rep.Shards) != 3 || rep.Shards[1].Size != 301 {
		t.Fatalf("VerifyChain = %+v, %v; want 3 shards, the second of 301 entries", rep, err)
	}
	w.grow(t, 10)
	rep, err = w.verify(t, dir, w.list())
	if err != nil || !rep.Shards[2].Incremental || rep.Shards[2].Entries != 10 || rep.Shards[1].Entries != 0 {
		t.Fatalf("second run = %+v, %v; want only the 10 new entries read", rep, err)
	}
	// Sharded from the first entry: the first shard links to nothing.
	w = newChainWorld(t, 0)
	w.rotate(t, "2026-12-06T00Z", nil)
	w.grow(t, 2)
	w.rotate(t, "2026-12-06T01Z", nil)
	if _, err := w.verify(t, t.TempDir(), w.list()); err != nil {
		t.Fatalf("a log sharded from its first entry: %v", err)
	}
}

func TestVerifyChainAttacks(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		build func(t *testing.T) (*chainWorld, []audit.ShardInfo)
		want  string
	}{
		"forged link root": {func(t *testing.T) (*chainWorld, []audit.ShardInfo) {
			w := newChainWorld(t, 5)
			w.rotate(t, "2026-12-06T00Z", func(l audit.ShardLink) audit.ShardLink {
				l.Previous.Root = make([]byte, 32)
				return l
			})
			return w, w.list()
		}, "its checkpoint"},
		"link to an older checkpoint (the shard went on after its seal)": {func(t *testing.T) (*chainWorld, []audit.ShardInfo) {
			w := newChainWorld(t, 5)
			old, oldRoot := w.sign(t, w.last())
			w.grow(t, 3)
			w.rotate(t, "2026-12-06T00Z", func(l audit.ShardLink) audit.ShardLink {
				l.Previous.Size, l.Previous.Root, l.Previous.Checkpoint = 5, oldRoot, string(old)
				return l
			})
			return w, w.list()
		}, "continued after its seal"},
		"missing link": {func(t *testing.T) (*chainWorld, []audit.ShardInfo) {
			w := newChainWorld(t, 2)
			w.rotate(t, "2026-12-06T00Z", nil)
			sh := w.last()
			sh.st.edit(func(es [][]byte) [][]byte { return [][]byte{sampleEntry(t, 99)} })
			clear(sh.st.checkpoints)
			w.sign(t, sh)
			return w, w.list()
		}, "first entry is"},
		"link unsigned": {func(t *testing.T) (*chainWorld, []audit.ShardInfo) {
			w := newChainWorld(t, 2)
			w.rotate(t, "2026-12-06T00Z", func(l audit.ShardLink) audit.ShardLink {
				l.Previous.Checkpoint = strings.Replace(l.Previous.Checkpoint, "— ", "— x", 1)
				return l
			})
			return w, w.list()
		}, "final checkpoint"},
		"reordered": {func(t *testing.T) (*chainWorld, []audit.ShardInfo) {
			w := newChainWorld(t, 2)
			w.rotate(t, "2026-12-06T00Z", nil)
			w.rotate(t, "2026-12-07T00Z", nil)
			l := w.list()
			l[1], l[2] = l[2], l[1]
			l[1].Sealed, l[2].Sealed = true, false
			return w, l
		}, "reordered"},
		"a shard dropped from the chain": {func(t *testing.T) (*chainWorld, []audit.ShardInfo) {
			w := newChainWorld(t, 2)
			w.rotate(t, "2026-12-06T00Z", nil)
			w.rotate(t, "2026-12-07T00Z", nil)
			l := w.list()
			return w, append(l[:1], l[2])
		}, "links to shard"},
		"open shard followed by another": {func(t *testing.T) (*chainWorld, []audit.ShardInfo) {
			w := newChainWorld(t, 2)
			w.rotate(t, "2026-12-06T00Z", nil)
			l := w.list()
			l[0].Sealed = false
			return w, l
		}, "is open"},
		"wrong origin": {func(t *testing.T) (*chainWorld, []audit.ShardInfo) {
			w := newChainWorld(t, 2)
			w.rotate(t, "2026-12-06T00Z", nil)
			l := w.list()
			l[1].Origin = "evil.test/log"
			return w, l
		}, "has origin"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w, list := tc.build(t)
			_, err := w.verify(t, t.TempDir(), list)
			if !errors.Is(err, audit.ErrBrokenChain) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("VerifyChain = %v, want ErrBrokenChain saying %q", err, tc.want)
			}
		})
	}
}

// TestVerifyChainSplitView: an auditor that followed shard A after the
// unsharded log refuses a later view in which shard B follows it.
func TestVerifyChainSplitView(t *testing.T) {
	t.Parallel()
	w := newChainWorld(t, 4)
	unsharded := *w.shards[0]
	w.rotate(t, "2026-12-06T00Z", nil)
	dir := t.TempDir()
	if _, err := w.verify(t, dir, w.list()); err != nil {
		t.Fatal(err)
	}
	other := &chainWorld{key: w.key, shards: []*memShard{&unsharded}, n: 1000}
	other.shards[0].info.Sealed = false
	other.rotate(t, "2026-12-06T01Z", nil)
	_, err := other.verify(t, dir, other.list())
	if !errors.Is(err, audit.ErrBrokenChain) || !strings.Contains(err.Error(), "split view") {
		t.Fatalf("VerifyChain of another successor = %v, want a split view", err)
	}
}

// TestVerifyChainSealedGrows: a sealed shard served with more entries and
// a newer checkpoint than its seal fails, against the auditor's state or
// the link.
func TestVerifyChainSealedGrows(t *testing.T) {
	t.Parallel()
	w := newChainWorld(t, 4)
	w.rotate(t, "2026-12-06T00Z", nil)
	dir := t.TempDir()
	if _, err := w.verify(t, dir, w.list()); err != nil {
		t.Fatal(err)
	}
	sealed := w.shards[0]
	sealed.st.append(sampleEntry(t, 500))
	w.sign(t, sealed)
	for _, d := range []string{dir, t.TempDir()} {
		if _, err := w.verify(t, d, w.list()); !errors.Is(err, audit.ErrBrokenChain) {
			t.Fatalf("a sealed shard that grew: %v, want ErrBrokenChain", err)
		}
	}
}

// TestVerifyChainArchived: an archived shard is not served; an auditor
// that verified it goes on from its state, one that did not is told to
// verify the export first, and its final checkpoint must be what the
// state holds.
func TestVerifyChainArchived(t *testing.T) {
	t.Parallel()
	w := newChainWorld(t, 4)
	w.rotate(t, "2026-12-06T00Z", nil)
	w.grow(t, 2)
	dir := t.TempDir()
	if _, err := w.verify(t, dir, w.list()); err != nil {
		t.Fatal(err)
	}
	archived := w.list()
	archived[0].Archived = true
	archived[0].Checkpoint, _ = w.shards[0].st.LatestCheckpoint(context.Background())
	w.shards[0].st.edit(func([][]byte) [][]byte { return nil }) // its entries are gone
	w.grow(t, 3)
	if rep, err := w.verify(t, dir, archived); err != nil || rep.Shards[0].Size != 4 {
		t.Fatalf("with the state of the archived shard: %+v, %v", rep, err)
	}
	if _, err := w.verify(t, t.TempDir(), archived); err == nil || !strings.Contains(err.Error(), "verify its export first") {
		t.Fatalf("without a state of the archived shard: %v, want: verify its export first", err)
	}
	forged := slices.Clone(archived)
	forged[0].Checkpoint, _ = newSigner(t, chainBase, w.key).Sign(audit.Checkpoint{Origin: chainBase, Size: 9, Hash: make([]byte, 32)})
	if _, err := w.verify(t, dir, forged); err == nil || !strings.Contains(err.Error(), "not its final 9") {
		t.Fatalf("an archived shard listed with another final checkpoint: %v", err)
	}
}
