package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
)

const shardBase = "sigil.test/sigil-audit/0123456789abcdef"

// testAuditShards: a log with entries is sharded: the unsharded log is
// sealed with the checkpoint its publisher stored, the new shard's first
// entry links to it, the shard's own tree gets its nodes at shard-local
// indices, its Log signs under the shard's origin, and the next rotation
// signs the shard's final checkpoint itself. A rotation that fails (a name
// used) leaves the log as it was.
func testAuditShards(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	key := newP256(t)
	if shards, _, err := store.Shards(ctx, st, shardBase); err != nil || len(shards) != 0 {
		t.Fatalf("Shards of an unsharded log = %v, %v; want none", shards, err)
	}
	AppendEntries(t, st, "e", 3)
	base, err := audit.NewSigner(shardBase, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := newLog(t, store.AuditStorage(st), base).Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	stored, _ := st.LatestCheckpoint(ctx)

	s1, err := store.StartShard(ctx, st, key, shardBase, "s1", T0)
	if err != nil || s1.Start != 3 || s1.Origin != shardBase+"/s1" {
		t.Fatalf("StartShard(s1) = %+v, %v; want start 3", s1, err)
	}
	first, err := st.AuditEntries(ctx, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := audit.RootHash(ctx, store.ShardStorage(st, store.AuditShard{Origin: shardBase}, 3), 3)
	legacy := &audit.ShardSeal{Origin: shardBase, Size: 3, Root: root}
	link, err := checkLink(t, first[0], "s1", s1.Origin, legacy, base.Verifier())
	if err != nil || link.Previous.Checkpoint != string(stored) {
		t.Fatalf("s1's link = %+v, %v; want the stored checkpoint of 3 %q", link, err, stored)
	}

	es := AppendEntries(t, st, "f", 300)
	if es[0].Index != 4 {
		t.Fatalf("first entry after the link at %d, want 4", es[0].Index)
	}
	view := store.ShardStorage(st, s1, 0)
	if n, err := view.Size(ctx); err != nil || n != 301 {
		t.Fatalf("shard s1 size = %d, %v; want 301", n, err)
	}
	leaves, err := view.LeafHashes(ctx, 0, 256)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := audit.SubtreeHash(leaves)
	if got, err := view.NodeHashes(ctx, 8, 0, 1); err != nil || !bytes.Equal(got[0], want) {
		t.Fatalf("shard s1's node 0 at level 8 = %x, %v; want %x", got, err, want)
	}
	if _, err := st.AuditNodeHashes(ctx, 8, 1, 2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("global node 1 at level 8 after sharding: %v, want ErrNotFound (nodes go to the shard)", err)
	}
	signer, err := audit.NewSigner(s1.Origin, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := newLog(t, view, signer).Integrate(ctx); err != nil {
		t.Fatalf("the shard's log: %v", err)
	}
	if note, err := view.LatestCheckpoint(ctx); err != nil || note == nil {
		t.Fatalf("shard s1's checkpoint = %q, %v", note, err)
	}
	if i, err := view.Find(ctx, "jti:f-0"); err != nil || i != 1 {
		t.Fatalf("Find(jti:f-0) in s1 = %d, %v; want 1", i, err)
	}
	if _, err := view.Find(ctx, "jti:e-0"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Find of an entry of the previous shard: %v, want ErrNotFound", err)
	}

	size, _ := st.AuditSize(ctx)
	if _, err := store.StartShard(ctx, st, key, shardBase, "s1", T0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a second shard s1: %v, want ErrConflict", err)
	}
	if n, _ := st.AuditSize(ctx); n != size {
		t.Fatalf("a failed rotation changed the log: %d entries, was %d", n, size)
	}
	AppendEntries(t, st, "g", 1)
	s2, err := store.StartShard(ctx, st, key, shardBase, "s2", T0.Add(time.Hour))
	if err != nil || s2.Start != size+1 {
		t.Fatalf("StartShard(s2) = %+v, %v; want start %d", s2, err, size+1)
	}
	shards, ends, err := store.Shards(ctx, st, shardBase)
	if err != nil || len(shards) != 3 || !reflect.DeepEqual(ends, []uint64{3, s2.Start, 0}) {
		t.Fatalf("Shards = %+v %v, %v", shards, ends, err)
	}
	sealed := store.ShardStorage(st, s1, s2.Start)
	r1, err := audit.RootHash(ctx, sealed, s2.Start-3)
	if err != nil {
		t.Fatal(err)
	}
	first, _ = st.AuditEntries(ctx, s2.Start, s2.Start+1)
	if _, err := checkLink(t, first[0], "s2", s2.Origin, &audit.ShardSeal{Origin: s1.Origin, Start: 3, Size: s2.Start - 3, Root: r1}, base.Verifier()); err != nil {
		t.Fatalf("s2's link: %v", err)
	}
	if err := sealed.PutCheckpoint(ctx, 10, []byte("x")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a checkpoint inside a sealed shard: %v, want ErrConflict", err)
	}
	// A replica that has not seen the rotation yet signs s1 past its
	// seal: the store refuses it, so s1 never continues after its seal.
	AppendEntries(t, st, "h", 2)
	stale := newLog(t, store.ShardStorage(st, s1, 0), signer)
	if err := stale.Integrate(ctx); err == nil {
		t.Fatal("a stale replica signed shard s1 past its seal")
	}
	if note, _ := st.LatestCheckpoint(ctx); note != nil {
		if cp, _ := audit.PeekCheckpoint(note); cp.Origin == s1.Origin && cp.Size > s2.Start-3 {
			t.Fatalf("stored a checkpoint of s1 of %d entries past its seal at %d", cp.Size, s2.Start-3)
		}
	}
	testArchiveShards(t, st, s1.Start, s2.Start)
}

// testArchiveShards archives the sealed shards [0, s1) and [s1, s2) of
// st: their entries, keys and nodes go, their rows and checkpoints stay;
// the open shard, a range that is not one shard, and a shard archived
// already are refused, and the open shard goes on.
func testArchiveShards(t *testing.T, st store.Store, s1, s2 uint64) {
	ctx := context.Background()
	size, _ := st.AuditSize(ctx)
	for _, bad := range [][2]uint64{{s2, size}, {0, s2}, {1, s1}, {s1, s2 - 1}} {
		if err := st.ArchiveAuditShard(ctx, bad[0], bad[1], T0); err == nil {
			t.Fatalf("archived [%d, %d), which is not one sealed shard", bad[0], bad[1])
		}
	}
	if got, _ := st.AuditEntries(ctx, 0, size); len(got) != int(size) {
		t.Fatalf("a refused archive deleted entries: %d left of %d", len(got), size)
	}
	for _, r := range [][2]uint64{{0, s1}, {s1, s2}} {
		if err := st.ArchiveAuditShard(ctx, r[0], r[1], T0); err != nil {
			t.Fatalf("archive [%d, %d): %v", r[0], r[1], err)
		}
	}
	if err := st.ArchiveAuditShard(ctx, s1, s2, T0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("archive again: %v, want ErrConflict", err)
	}
	if _, err := st.AuditEntries(ctx, s2-1, s2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an archived entry: %v, want ErrNotFound", err)
	}
	if _, err := st.AuditIndex(ctx, "jti:f-0"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an archived entry's key: %v, want ErrNotFound", err)
	}
	if _, err := st.AuditShardNodeHashes(ctx, s1, 8, 0, 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an archived shard's node: %v, want ErrNotFound", err)
	}
	shards, _, err := store.Shards(ctx, st, shardBase)
	if err != nil || len(shards) != 3 || !shards[0].Archived || !shards[1].Archived || shards[2].Archived {
		t.Fatalf("Shards after archiving = %+v, %v", shards, err)
	}
	if cs, _ := st.Checkpoints(ctx); len(cs) == 0 || cs[0].Size != s1 {
		t.Fatalf("checkpoints after archiving: %+v; want the seals kept", cs)
	}
	es := AppendEntries(t, st, "after-archive", 2)
	if es[1].Index != size+1 {
		t.Fatalf("appends after archiving at %d, want %d", es[1].Index, size+1)
	}
	cur := store.ShardStorage(st, shards[2], 0)
	signer, _ := audit.NewSigner(shards[2].Origin, newP256(t))
	if err := newLog(t, cur, signer).Integrate(ctx); err != nil {
		t.Fatalf("the open shard after archiving: %v", err)
	}
}

// testShardRotationRace: writers on several handles append while
// rotations run; afterwards every shard starts with its link, every
// link seals exactly the entries before it (its size is the previous
// shard's length, its root theirs): nothing landed in a shard after its
// seal, and no entry was lost or numbered twice.
func testShardRotationRace(t *testing.T, h *harness) {
	st, dsn := h.open(t)
	ctx := context.Background()
	key := newP256(t)
	handles := []store.Store{st, h.reopen(t, dsn), h.reopen(t, dsn)}
	const writers, each, rotations = 3, 40, 4
	var wg sync.WaitGroup
	errc := make(chan error, writers+1)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				e := Entry(fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("jti:w%d-%d", w, i))
				if _, err := handles[w].AppendAudit(ctx, e); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for r := range rotations {
			if _, err := store.StartShard(ctx, handles[r%len(handles)], key, shardBase, fmt.Sprintf("r%d", r), T0); err != nil {
				errc <- err
				return
			}
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	size, _ := st.AuditSize(ctx)
	if size != writers*each+rotations {
		t.Fatalf("log of %d entries, want %d", size, writers*each+rotations)
	}
	shards, ends, err := store.Shards(ctx, st, shardBase)
	if err != nil || len(shards) < rotations {
		t.Fatalf("Shards = %+v, %v", shards, err)
	}
	v, _ := audit.NewVerifier(shardBase, key.Public())
	var prev *audit.ShardSeal
	for i, sh := range shards {
		end := ends[i]
		if end == 0 {
			end = size
		}
		if sh.Name != store.UnshardedName { // the log before the first rotation has no link
			first, err := st.AuditEntries(ctx, sh.Start, sh.Start+1)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := checkLink(t, first[0], sh.Name, sh.Origin, prev, v); err != nil {
				t.Fatalf("shard %d: %v", i, err)
			}
		}
		hashes, err := st.AuditLeafHashes(ctx, sh.Start, end)
		if err != nil {
			t.Fatal(err)
		}
		root, err := audit.RootHash(ctx, LeafHashes(hashes), end-sh.Start)
		if err != nil {
			t.Fatal(err)
		}
		prev = &audit.ShardSeal{Origin: sh.Origin, Start: sh.Start, Size: end - sh.Start, Root: root}
	}
}

// checkLink is audit.CheckLink of the encoded entry first.
func checkLink(t *testing.T, first []byte, name, origin string, prev *audit.ShardSeal, v *audit.Verifier) (audit.ShardLink, error) {
	t.Helper()
	e, err := audit.Decode(first)
	if err != nil {
		t.Fatalf("shard %s: first entry: %v", name, err)
	}
	return audit.CheckLink(e, name, origin, prev, v)
}
