package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
)

func testEvidence(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	want := Evidence("e1", Device("d1"))
	if err := st.PutEvidence(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := st.Evidence(ctx, want.Digest)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Evidence = %+v, %v; want %+v", got, err, want)
	}
	if _, err := st.Evidence(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Evidence(unknown) = %v, want ErrNotFound", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*store.Evidence)
		want   error
	}{
		{"same again", func(e *store.Evidence) {}, nil},
		{"same, later", func(e *store.Evidence) { e.CreatedAt = e.CreatedAt.Add(1e9) }, nil},
		{"different bundle", func(e *store.Evidence) { e.Bundle = []byte(`{}`) }, store.ErrConflict},
		{"different device", func(e *store.Evidence) { e.EKHash = HexHash("other") }, store.ErrConflict},
		{"different kind", func(e *store.Evidence) { e.Kind = "renew" }, store.ErrConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := want
			tc.mutate(&e)
			if err := st.PutEvidence(ctx, e); !errors.Is(err, tc.want) {
				t.Fatalf("PutEvidence = %v, want %v", err, tc.want)
			}
			if got, _ := st.Evidence(ctx, want.Digest); !reflect.DeepEqual(got, want) {
				t.Fatalf("stored evidence changed to %+v", got)
			}
		})
	}
}
