package storetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
)

// testCosignatures: witness cosignature lines are stored per checkpoint
// and witness, the first one kept, never for a size not checkpointed, and
// only if they are signature lines; checkpoint notes stay as stored.
func testCosignatures(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	AppendEntries(t, st, "e", 2)
	for _, size := range []uint64{1, 2} {
		if err := st.PutCheckpoint(ctx, size, []byte(checkpointNote(0, size))); err != nil {
			t.Fatal(err)
		}
	}
	const a, b = "— wa AAAA\n", "— wb BBBB\n"
	for _, tc := range []struct {
		name    string
		size    uint64
		witness string
		line    string
		want    error
		text    string
	}{
		{"b", 2, "wb+00000002", b, nil, ""},
		{"a", 2, "wa+00000001", a, nil, ""},
		{"a again, another line", 2, "wa+00000001", "— wa CCCC\n", nil, ""},
		{"a on the older checkpoint", 1, "wa+00000001", a, nil, ""},
		{"no such checkpoint", 3, "wa+00000001", a, store.ErrNotFound, "no such checkpoint"},
		{"no newline", 2, "wc+00000003", "— wc DDDD", nil, "not a signature line"},
		{"two lines", 2, "wc+00000003", "— wc DDDD\n— wd EEEE\n", nil, "not a signature line"},
		{"no dash", 2, "wc+00000003", "wc DDDD\n", nil, "not a signature line"},
		{"no signature", 2, "wc+00000003", "— wc\n", nil, "not a signature line"},
		{"too long", 2, "wc+00000003", "— wc " + strings.Repeat("A", store.MaxCosignatureLine) + "\n", nil, "at most"},
		{"no witness", 2, "", "— wc DDDD\n", nil, "no witness"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := st.AddCosignature(ctx, tc.size, tc.witness, []byte(tc.line))
			ok := err == nil
			if tc.want != nil || tc.text != "" {
				ok = err != nil && (tc.want == nil || errors.Is(err, tc.want)) && strings.Contains(err.Error(), tc.text)
			}
			if !ok {
				t.Fatalf("AddCosignature(%d, %q, %q) = %v, want %v %q", tc.size, tc.witness, tc.line, err, tc.want, tc.text)
			}
		})
	}
	for size, want := range map[uint64][]string{1: {a}, 2: {a, b}, 3: nil} {
		lines, err := st.Cosignatures(ctx, size)
		got := make([]string, len(lines))
		for i, l := range lines {
			got[i] = string(l)
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Cosignatures(%d) = %q, %v; want %q", size, got, err, want)
		}
	}
	if note, err := st.LatestCheckpoint(ctx); err != nil || string(note) != checkpointNote(0, 2) {
		t.Errorf("LatestCheckpoint = %q, %v; want the note as stored, without cosignatures", note, err)
	}
}
