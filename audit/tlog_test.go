package audit_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/transparency-dev/tessera/api/layout"

	"github.com/sigil-dev/sigil/audit"
)

// Tile paths are C2SP's, byte for byte as tessera writes them, and parse
// back; anything else is refused.
func TestTilePath(t *testing.T) {
	t.Parallel()
	for _, tt := range []audit.Tile{
		{Level: 0, Index: 0, Width: 256},
		{Level: 0, Index: 1, Width: 44},
		{Level: 1, Index: 1234067, Width: 256},
		{Level: 63, Index: 999, Width: 1},
		{Entries: true, Index: 1000, Width: 256},
		{Entries: true, Index: 18446744073709551615, Width: 255},
	} {
		want := layout.TilePath(tt.Level, tt.Index, uint8(tt.Width%256))
		if tt.Entries {
			want = layout.EntriesPath(tt.Index, uint8(tt.Width%256))
		}
		if got := tt.Path(); got != want {
			t.Errorf("%+v: Path = %q, tessera writes %q", tt, got, want)
		}
		if got, err := audit.ParseTilePath(want); err != nil || got != tt {
			t.Errorf("ParseTilePath(%q) = %+v, %v", want, got, err)
		}
	}
	for _, bad := range []string{
		"", "tile/", "tile/0/", "tile/0/1", "tile/0/0001", "tile/00/000", "tile/-1/000", "tile/64/000",
		"tile/0/x000/001", "tile/0/x1/000", "tile/0/001/x000", "tile/0/000.p/0", "tile/0/000.p/256",
		"tile/0/000.p/01", "tile/0/000.p/", "tile/entries/000.p/1/2", "tile/0/x018/x446/x744/x073/x709/x551/616",
		"tile/0/000/", "log/tile/0/000", "tile/entries", "tile/0/+01",
	} {
		if got, err := audit.ParseTilePath(bad); err == nil {
			t.Errorf("ParseTilePath(%q) = %+v, want an error", bad, got)
		}
	}
}

// An entry bundle is the entries, each prefixed with its big-endian uint16
// length; an entry longer than that holds is refused, not cut.
func TestBundle(t *testing.T) {
	t.Parallel()
	entries := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte("x"), 300)}
	b, err := audit.EncodeBundle(entries)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte{0, 1, 'a', 0, 0, 1, 44, 'x'}) || len(b) != 2+1+2+2+300 {
		t.Fatalf("bundle %x", b[:8])
	}
	back, err := audit.ParseBundle(b, 3)
	if err != nil || len(back) != 3 || !bytes.Equal(back[2], entries[2]) {
		t.Fatalf("ParseBundle = %q, %v", back, err)
	}
	for name, tt := range map[string]struct {
		data []byte
		want uint64
	}{
		"truncated-length": {b[:len(b)-302], 3},
		"truncated-entry":  {b[:len(b)-1], 3},
		"fewer-entries":    {b, 4},
		"more-entries":     {b, 2},
		"width-0":          {nil, 0},
	} {
		if _, err := audit.ParseBundle(tt.data, tt.want); err == nil {
			t.Errorf("%s: ParseBundle accepted it", name)
		}
	}
	if _, err := audit.EncodeBundle([][]byte{make([]byte, audit.MaxBundleEntrySize+1)}); !errors.Is(err, audit.ErrBundleEntryTooLarge) {
		t.Errorf("EncodeBundle of a 64 KiB entry: %v, want ErrBundleEntryTooLarge", err)
	}
}

// Hash tiles from stored nodes and from the leaves alone are the same, and
// none is served beyond the tree's size.
func TestHashTile(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := makeLeaves(600)
	stored := newTiled(l)
	for _, tt := range []audit.Tile{
		{Level: 0, Index: 0, Width: 256}, {Level: 0, Index: 2, Width: 88}, {Level: 1, Index: 0, Width: 2},
	} {
		a, err := audit.HashTile(ctx, stored, tt, 600)
		if err != nil {
			t.Fatal(err)
		}
		b, err := audit.HashTile(ctx, l, tt, 600)
		if err != nil || !bytes.Equal(a, b) || len(a) != int(tt.Width)*audit.HashSize {
			t.Errorf("%s: from nodes and from leaves differ (%v)", tt.Path(), err)
		}
		if tt.Level == 0 && !bytes.Equal(a[:audit.HashSize], l[tt.Index*256]) {
			t.Errorf("%s: first hash is not the leaf's", tt.Path())
		}
	}
	for _, tt := range []audit.Tile{
		{Level: 0, Index: 2, Width: 89}, {Level: 0, Index: 3, Width: 1}, {Level: 1, Index: 0, Width: 3}, {Level: 2, Index: 0, Width: 1},
	} {
		if _, err := audit.HashTile(ctx, stored, tt, 600); !errors.Is(err, audit.ErrTileNotFound) {
			t.Errorf("%s: %v, want ErrTileNotFound", tt.Path(), err)
		}
	}
}

func FuzzParseTilePath(f *testing.F) {
	for _, s := range []string{"tile/0/000", "tile/1/x001/x234/067.p/8", "tile/entries/x001/000", "tile/63/999.p/255"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		tile, err := audit.ParseTilePath(path)
		if err != nil {
			return
		}
		if tile.Path() != path {
			t.Fatalf("accepted a non-canonical path %q (canonical %q)", path, tile.Path())
		}
		if tile.Width == 0 || tile.Width > audit.TileWidth || tile.Level > 63 || strings.Contains(path, "..") {
			t.Fatalf("accepted %q as %+v", path, tile)
		}
	})
}

func FuzzParseBundle(f *testing.F) {
	b, _ := audit.EncodeBundle([][]byte{[]byte(`{"kind":"x"}`), {}})
	f.Add(b, uint64(2))
	f.Add([]byte{0, 5, 'a'}, uint64(1))
	f.Fuzz(func(t *testing.T, data []byte, n uint64) {
		entries, err := audit.ParseBundle(data, n)
		if err != nil {
			return
		}
		again, err := audit.EncodeBundle(entries)
		if err != nil || !bytes.Equal(again, data) || uint64(len(entries)) != n {
			t.Fatalf("ParseBundle(%x, %d) does not round-trip: %q", data, n, entries)
		}
	})
}
