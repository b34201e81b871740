package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// revocationState returns the revoked tokens among jtis with their
// reasons, and all the revocation events.
func revocationState(t testing.TB, st store.Store, jtis ...string) (map[string]string, []store.RevocationEvent) {
	t.Helper()
	ctx := context.Background()
	revoked := map[string]string{}
	for _, jti := range jtis {
		tok, err := st.Token(ctx, jti)
		if err != nil {
			t.Fatal(err)
		}
		if tok.RevokedAt != nil {
			revoked[jti] = tok.RevocationReason
		}
	}
	events, err := st.RevocationEvents(ctx, 0, store.MaxRevocationEvents)
	if err != nil {
		t.Fatal(err)
	}
	return revoked, events
}

func testRevokeTokenCascade(t *testing.T, h *harness) {
	type step struct {
		jti  string
		want []string
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"middle then root", []step{{"B", []string{"B", "C"}}, {"A", []string{"A", "D"}}}},
		{"root first", []step{{"A", []string{"A", "B", "D", "C"}}, {"B", []string{}}}},
		{"leaf, middle, root", []step{{"C", []string{"C"}}, {"B", []string{"B"}}, {"A", []string{"A", "D"}}}},
		{"unrelated", []step{{"E", []string{"E"}}}},
		{"again", []step{{"B", []string{"B", "C"}}, {"B", []string{}}, {"C", []string{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := h.fresh(t)
			ctx := context.Background()
			tokenTree(t, st)
			wantRevoked := map[string]string{}
			var wantEvents []store.RevocationEvent
			for i, s := range tc.steps {
				at, reason := T0.Add(time.Duration(i+1)*time.Minute), fmt.Sprintf("step %d", i)
				got, err := st.RevokeToken(ctx, s.jti, reason, at)
				if err != nil || !reflect.DeepEqual(got, s.want) {
					t.Fatalf("step %d: RevokeToken(%s) = %q, %v; want %q", i, s.jti, got, err, s.want)
				}
				for _, jti := range s.want {
					wantRevoked[jti] = reason
					wantEvents = append(wantEvents, store.RevocationEvent{Seq: uint64(len(wantEvents) + 1), JTI: jti, RevokedAt: at, Reason: reason})
				}
			}
			revoked, events := revocationState(t, st, "A", "B", "C", "D", "E")
			if !reflect.DeepEqual(revoked, wantRevoked) {
				t.Errorf("revoked = %v, want %v", revoked, wantRevoked)
			}
			if !reflect.DeepEqual(events, wantEvents) {
				t.Errorf("events = %+v\nwant %+v", events, wantEvents)
			}
			if seq, err := st.LatestRevocationSeq(ctx); err != nil || seq != uint64(len(wantEvents)) {
				t.Errorf("LatestRevocationSeq = %d, %v; want %d", seq, err, len(wantEvents))
			}
		})
	}
}

func testRevokeTokenRecord(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	tokenTree(t, st)
	at := T0.Add(time.Minute)
	if _, err := st.RevokeToken(ctx, "B", "compromised", at); err != nil {
		t.Fatal(err)
	}
	got, err := st.Token(ctx, "C")
	if err != nil || got.RevokedAt == nil || !got.RevokedAt.Equal(at) || got.RevocationReason != "compromised" {
		t.Fatalf("Token(C) = %+v, %v; want revoked at %v for compromised", got, err, at)
	}
	if _, err := st.RevokeToken(ctx, "nope", "compromised", at); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RevokeToken(unknown) = %v, want ErrNotFound", err)
	}
	// A revoked token's revocation stays as it was.
	if _, err := st.RevokeToken(ctx, "A", "logout", at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Token(ctx, "C"); !got.RevokedAt.Equal(at) || got.RevocationReason != "compromised" {
		t.Fatalf("Token(C) after revoking A = %v %q, want the first revocation", got.RevokedAt, got.RevocationReason)
	}
}

// testRevokeTokenRollsBack: a revocation in a Tx that fails later is
// undone with its events, and its sequence numbers are not used up.
func testRevokeTokenRollsBack(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	tokenTree(t, st)
	errBoom := errors.New("audit log unavailable")
	err := st.Tx(ctx, func(tx store.Tx) error {
		got, err := tx.RevokeToken(ctx, "A", "logout", T0)
		if err != nil || len(got) != 4 {
			t.Errorf("RevokeToken in Tx = %q, %v", got, err)
		}
		if seq, err := tx.LatestRevocationSeq(ctx); err != nil || seq != 4 {
			t.Errorf("LatestRevocationSeq in Tx = %d, %v; want 4", seq, err)
		}
		if _, err := tx.AppendAudit(ctx, Entry("revoke", "jti:A")); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Tx = %v, want %v", err, errBoom)
	}
	revoked, events := revocationState(t, st, "A", "B", "C", "D", "E")
	if len(revoked) != 0 || len(events) != 0 {
		t.Fatalf("after rollback: revoked %v, events %+v; want none", revoked, events)
	}
	if seq, err := st.LatestRevocationSeq(ctx); err != nil || seq != 0 {
		t.Fatalf("LatestRevocationSeq after rollback = %d, %v; want 0", seq, err)
	}
	if n, err := st.AuditSize(ctx); err != nil || n != 0 {
		t.Fatalf("AuditSize after rollback = %d, %v; want 0", n, err)
	}
	if got, err := st.RevokeToken(ctx, "B", "compromised", T0); err != nil || !reflect.DeepEqual(got, []string{"B", "C"}) {
		t.Fatalf("RevokeToken after rollback = %q, %v", got, err)
	}
	if _, events := revocationState(t, st); len(events) != 2 || events[0].Seq != 1 || events[1].Seq != 2 {
		t.Fatalf("events after rollback and revocation = %+v, want seq 1 and 2", events)
	}
}

// fanTree stores a tree of the given depth below a root named prefix,
// each token with fanout children, and returns the jtis, root first.
func fanTree(t testing.TB, st store.Store, prefix string, depth, fanout int) []string {
	t.Helper()
	jtis := fanTreeJTIs(prefix, depth, fanout)
	ts := []store.Token{Token(prefix, "")}
	for _, jti := range jtis[1:] {
		parent := jti[:strings.LastIndexByte(jti, '.')]
		ts = append(ts, Token(jti, parent))
	}
	InsertTokens(t, st, ts...)
	return jtis
}

// fanTreeJTIs returns the jtis of fanTree's tree, each after its parent:
// the children of "n" are "n.0", "n.1"…
func fanTreeJTIs(prefix string, depth, fanout int) []string {
	jtis := []string{prefix}
	level := []string{prefix}
	for range depth {
		var next []string
		for _, parent := range level {
			for i := range fanout {
				next = append(next, fmt.Sprintf("%s.%d", parent, i))
			}
		}
		jtis, level = append(jtis, next...), next
	}
	return jtis
}

func testRevocationEventsPaging(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	const n = store.MaxRevocationEvents + 2
	ts := []store.Token{Token("root", "")}
	for i := range n - 1 {
		ts = append(ts, Token(fmt.Sprintf("c%04d", i), "root"))
	}
	InsertTokens(t, st, ts...)
	if seq, err := st.LatestRevocationSeq(ctx); err != nil || seq != 0 {
		t.Fatalf("LatestRevocationSeq before any revocation = %d, %v; want 0", seq, err)
	}
	if got, err := st.RevokeToken(ctx, "root", "logout", T0); err != nil || len(got) != n {
		t.Fatalf("RevokeToken = %d tokens, %v; want %d", len(got), err, n)
	}
	if seq, err := st.LatestRevocationSeq(ctx); err != nil || seq != n {
		t.Fatalf("LatestRevocationSeq = %d, %v; want %d", seq, err, n)
	}
	for _, tc := range []struct {
		name        string
		after       uint64
		limit       int
		first, last uint64 // 0, 0: none
	}{
		{"first page", 0, 10, 1, 10},
		{"next page", 10, 10, 11, 20},
		{"last page", n - 3, 10, n - 2, n},
		{"caught up", n, 10, 0, 0},
		{"ahead", n + 5, 10, 0, 0},
		{"far ahead", math.MaxUint64, 10, 0, 0},
		{"limit capped", 0, 5000, 1, store.MaxRevocationEvents},
		{"no limit", 0, 0, 1, store.MaxRevocationEvents},
		{"negative limit", 1, -1, 2, store.MaxRevocationEvents + 1},
		{"one", 7, 1, 8, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es, err := st.RevocationEvents(ctx, tc.after, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if tc.first == 0 {
				if es == nil || len(es) != 0 {
					t.Fatalf("RevocationEvents = %#v, want an empty list", es)
				}
				return
			}
			if uint64(len(es)) != tc.last-tc.first+1 {
				t.Fatalf("RevocationEvents = %d events, want %d..%d", len(es), tc.first, tc.last)
			}
			for i, e := range es {
				if e.Seq != tc.first+uint64(i) {
					t.Fatalf("event %d has seq %d, want %d", i, e.Seq, tc.first+uint64(i))
				}
			}
		})
	}
}
