package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

func TestEvidence(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	want := testEvidence("e1", testDevice("d1"))
	if err := st.PutEvidence(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := st.Evidence(ctx, want.Digest)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Evidence = %+v, %v; want %+v", got, err, want)
	}
	if _, err := st.Evidence(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Evidence(unknown) = %v, want ErrNotFound", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Evidence)
		want   error
	}{
		{"same again", func(e *Evidence) {}, nil},
		{"same, later", func(e *Evidence) { e.CreatedAt = e.CreatedAt.Add(1e9) }, nil},
		{"different bundle", func(e *Evidence) { e.Bundle = []byte(`{}`) }, ErrConflict},
		{"different device", func(e *Evidence) { e.EKHash = hexHash("other") }, ErrConflict},
		{"different kind", func(e *Evidence) { e.Kind = "renew" }, ErrConflict},
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
