package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
)

// testRecordToken: store.RecordToken stores an external subject token
// once, the token exchanged from it and its audit entry; a refusal is the
// error InsertToken or AppendAudit gives, and stores neither the token
// nor the entry (the external token's record may stay: see
// store.TokenRecorder).
func testRecordToken(t *testing.T, h *harness) {
	ctx := context.Background()
	st := h.fresh(t)
	_, _, certs := Enroll(t, st, "d1", 2)
	InsertTokens(t, st, Token("live", ""), Token("revoked", ""))
	if _, err := st.RevokeToken(ctx, "revoked", "compromised", T0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RevokeCertificate(ctx, certs[1].Serial, "key compromise", T0); err != nil {
		t.Fatal(err)
	}
	ext := ExternalToken("ext:alice")
	for _, jti := range []string{"A", "B"} {
		r := store.TokenRecord{External: &ext, Token: BoundToken(jti, ext.JTI, certs[0]), Entry: Entry(jti, "jti:"+jti)}
		if err := store.RecordToken(ctx, st, r); err != nil {
			t.Fatalf("RecordToken(%s): %v", jti, err)
		}
		if got, err := st.Token(ctx, jti); err != nil || got.ParentJTI != ext.JTI {
			t.Fatalf("Token(%s) = %+v, %v", jti, got, err)
		}
	}
	if got, err := st.Token(ctx, ext.JTI); err != nil || got.Sub != ext.Sub {
		t.Fatalf("external token = %+v, %v", got, err)
	}
	size := auditSize(t, st)
	if size != 2 {
		t.Fatalf("audit size %d, want 2", size)
	}
	if idx, err := st.AuditIndex(ctx, "jti:B"); err != nil || idx != 1 {
		t.Fatalf("AuditIndex(jti:B) = %d, %v; want 1", idx, err)
	}

	other := ExternalToken("ext:bob")
	longer := BoundToken("new", "live", certs[0])
	longer.ExpiresAt = T0.Add(2 * time.Hour)
	for _, tc := range []struct {
		name string
		r    store.TokenRecord
		want error  // or
		text string // in the error
	}{
		{"certificate revoked", store.TokenRecord{Token: BoundToken("new", "", certs[1])}, store.ErrCertificateRevoked, certs[1].Serial},
		{"certificate revoked, external", store.TokenRecord{External: &other, Token: BoundToken("new", other.JTI, certs[1])}, store.ErrCertificateRevoked, ""},
		{"parent revoked", store.TokenRecord{Token: BoundToken("new", "revoked", certs[0])}, store.ErrRevoked, `parent "revoked"`},
		{"parent unknown", store.TokenRecord{Token: BoundToken("new", "nope", certs[0])}, store.ErrNotFound, `parent "nope"`},
		{"outlives parent", store.TokenRecord{Token: longer}, store.ErrConflict, "after its parent"},
		{"jti taken", store.TokenRecord{External: &other, Token: BoundToken("A", other.JTI, certs[0]), Entry: Entry("new", "jti:new")}, store.ErrConflict, `"A"`},
		{"key taken", store.TokenRecord{External: &other, Token: BoundToken("new", other.JTI, certs[0]), Entry: Entry("new", "jti:A")}, store.ErrConflict, `"jti:A"`},
		{"key twice", store.TokenRecord{Token: BoundToken("new", "", certs[0]), Entry: Entry("new", "k", "k")}, store.ErrConflict, `"k"`},
		{"external of another kind", store.TokenRecord{External: &longer, Token: BoundToken("new", "", certs[0])}, nil, "want external"},
		{"invalid token", store.TokenRecord{Token: Token("", "")}, nil, "no jti"},
		{"invalid entry", store.TokenRecord{Token: BoundToken("new", "", certs[0]), Entry: store.AuditEntry{Data: []byte("x")}}, nil, "leaf hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r
			if r.Entry.LeafHash == nil && tc.name != "invalid entry" {
				r.Entry = Entry("new", "jti:new")
			}
			err := store.RecordToken(ctx, st, r)
			switch {
			case err == nil:
				t.Fatal("RecordToken succeeded")
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("RecordToken = %v, want %v", err, tc.want)
			case !strings.Contains(err.Error(), tc.text):
				t.Fatalf("RecordToken = %v, want it to say %q", err, tc.text)
			}
			if _, err := st.Token(ctx, "new"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("refused token stored: %v", err)
			}
			if n := auditSize(t, st); n != size {
				t.Fatalf("audit size %d after a refused record, want %d", n, size)
			}
		})
	}
}

// testRecordTokenExternalAgain: an external token presented again after
// its record was purged by another handle (a replica, an operator's
// purge) is stored again, whatever this handle remembers of having stored
// it; and once another handle revokes it, it refuses children, whether or
// not this handle inserts it again.
func testRecordTokenExternalAgain(t *testing.T, h *harness) {
	ctx := context.Background()
	st, dsn := h.open(t)
	other := h.reopen(t, dsn)
	_, _, certs := Enroll(t, st, "d1", 1)
	ext := ExternalToken("ext:alice")
	record := func(jti string) error {
		r := store.TokenRecord{External: &ext, Token: BoundToken(jti, ext.JTI, certs[0]), Entry: Entry(jti, "jti:"+jti)}
		return store.RecordToken(ctx, st, r)
	}
	for _, jti := range []string{"A", "B"} {
		if err := record(jti); err != nil {
			t.Fatalf("RecordToken(%s): %v", jti, err)
		}
	}
	if n, err := other.PurgeExpiredTokens(ctx, ext.ExpiresAt.Add(time.Second)); err != nil || n != 3 {
		t.Fatalf("PurgeExpiredTokens = %d, %v; want the external token, A and B", n, err)
	}
	if err := record("C"); err != nil {
		t.Fatalf("RecordToken after the external token's record was purged: %v", err)
	}
	if got, err := st.Token(ctx, ext.JTI); err != nil || got.Sub != ext.Sub {
		t.Fatalf("external token after the purge = %+v, %v; want it stored again", got, err)
	}
	if err := record("D"); err != nil {
		t.Fatalf("RecordToken(D): %v", err)
	}
	bad := ext
	bad.ExpiresAt = bad.IssuedAt
	r := store.TokenRecord{External: &bad, Token: BoundToken("X", ext.JTI, certs[0]), Entry: Entry("X", "jti:X")}
	if err := store.RecordToken(ctx, st, r); err == nil || !strings.Contains(err.Error(), "insert external token") {
		t.Fatalf("RecordToken with an invalid record of a known external token = %v, want it refused", err)
	}
	if _, err := other.RevokeToken(ctx, ext.JTI, "revoked by its audience", T0); err != nil {
		t.Fatal(err)
	}
	if err := record("E"); !errors.Is(err, store.ErrRevoked) {
		t.Fatalf("RecordToken exchanged from a revoked external token = %v, want ErrRevoked", err)
	}
	if _, err := st.Token(ctx, "E"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused token stored: %v", err)
	}
}

// testRecordTokensConcurrently: 300 records from 16 goroutines, exchanged
// from one external token and bound to one certificate, with a refused
// one (a parent that does not exist) every tenth: the accepted are all
// stored, each with its entry, the indices dense, and the tree node the
// entries complete stored with the right hash, whichever records shared
// a transaction (a backend's group commit); in an unsharded log, and in
// a shard started after 3 entries (its nodes are its tree's).
func testRecordTokensConcurrently(t *testing.T, h *harness) {
	t.Run("unsharded", func(t *testing.T) {
		st := h.fresh(t)
		recordConcurrently(t, st, 0)
		checkFirstNode(t, store.ShardStorage(st, store.AuditShard{Origin: shardBase}, 0))
	})
	t.Run("in a shard", func(t *testing.T) {
		st := h.fresh(t)
		AppendEntries(t, st, "e", 3)
		s1, err := store.StartShard(context.Background(), st, newP256(t), shardBase, "s1", T0)
		if err != nil {
			t.Fatal(err)
		}
		recordConcurrently(t, st, s1.Start+1) // after the shard's first entry, its link
		checkFirstNode(t, store.ShardStorage(st, s1, 0))
		if _, err := st.AuditNodeHashes(context.Background(), store.AuditTileHeight, 0, 1); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("global node 0 = %v, want ErrNotFound: the nodes are the shard's", err)
		}
	})
}

// recordConcurrently records 300 tokens in st, as above, the log holding
// first entries before, and checks them.
func recordConcurrently(t *testing.T, st store.Store, first uint64) {
	ctx := context.Background()
	_, _, certs := Enroll(t, st, "d1", 1)
	ext := ExternalToken("ext:alice")
	const n, goroutines = 300, 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	work := make(chan int)
	for range goroutines {
		wg.Go(func() {
			for i := range work {
				jti, parent := fmt.Sprintf("t%03d", i), ext.JTI
				if i%10 == 9 {
					parent = "nope"
				}
				r := store.TokenRecord{External: &ext, Token: BoundToken(jti, parent, certs[0]), Entry: Entry(jti, "jti:"+jti)}
				errs[i] = store.RecordToken(ctx, st, r)
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	seen := map[uint64]string{}
	for i, err := range errs {
		jti := fmt.Sprintf("t%03d", i)
		if i%10 == 9 {
			if !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("record %s under an unknown parent = %v, want ErrNotFound", jti, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("record %s: %v", jti, err)
		}
		idx, err := st.AuditIndex(ctx, "jti:"+jti)
		if err != nil {
			t.Fatalf("AuditIndex(jti:%s): %v", jti, err)
		}
		if other, ok := seen[idx]; ok {
			t.Fatalf("%s and %s both at index %d", other, jti, idx)
		}
		seen[idx] = jti
	}
	want := first + uint64(n-n/10)
	if size := auditSize(t, st); size != want {
		t.Fatalf("audit size %d, want %d", size, want)
	}
	for idx := first; idx < want; idx++ {
		if _, ok := seen[idx]; !ok {
			t.Fatalf("index %d holds none of the records", idx)
		}
	}
}

// checkFirstNode checks the first node at level AuditTileHeight of the
// tree view holds against audit.SubtreeHash of its leaves.
func checkFirstNode(t *testing.T, view interface {
	LeafHashes(ctx context.Context, start, end uint64) ([][]byte, error)
	NodeHashes(ctx context.Context, level uint, start, end uint64) ([][]byte, error)
}) {
	t.Helper()
	ctx := context.Background()
	leaves, err := view.LeafHashes(ctx, 0, 1<<store.AuditTileHeight)
	if err != nil {
		t.Fatal(err)
	}
	node, err := audit.SubtreeHash(leaves)
	if err != nil {
		t.Fatal(err)
	}
	got, err := view.NodeHashes(ctx, store.AuditTileHeight, 0, 1)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0], node) {
		t.Fatalf("node 0 at level %d = %x, %v; want %x", store.AuditTileHeight, got, err, node)
	}
}

func auditSize(t *testing.T, st store.Store) uint64 {
	t.Helper()
	n, err := st.AuditSize(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// KnownExternalNotInserted checks that a store of b leaves out the insert
// of an external token whose record it has committed (store.KnownTokens):
// refuse must add to the database dsn names a trigger that fails every
// insert of an external token's row, ON CONFLICT or not. Once it has, the
// store that recorded the token records another exchange from it, and a
// new handle, which knows nothing, fails to: the trigger works.
func KnownExternalNotInserted(t *testing.T, b Backend, refuse func(t *testing.T, dsn string)) {
	t.Helper()
	h := &harness{t: t, b: b}
	ctx := context.Background()
	st, dsn := h.open(t)
	_, _, certs := Enroll(t, st, "d1", 1)
	ext := ExternalToken("ext:alice")
	record := func(st store.Store, jti string) error {
		r := store.TokenRecord{External: &ext, Token: BoundToken(jti, ext.JTI, certs[0]), Entry: Entry(jti, "jti:"+jti)}
		return store.RecordToken(ctx, st, r)
	}
	if err := record(st, "A"); err != nil {
		t.Fatalf("RecordToken(A): %v", err)
	}
	refuse(t, dsn)
	if err := record(st, "B"); err != nil {
		t.Fatalf("RecordToken from a known external token inserted it again: %v", err)
	}
	if err := record(h.reopen(t, dsn), "C"); err == nil {
		t.Fatal("RecordToken on a new handle succeeded: the trigger does not refuse external inserts")
	}
}
