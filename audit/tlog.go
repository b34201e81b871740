package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The log as C2SP tlog-tiles (https://c2sp.org/tlog-tiles): its hashes in
// tiles of TileWidth hashes, its entries in bundles of TileWidth entries,
// both addressed by TilePath, and its checkpoint. Hash tile N at level L
// holds the hashes of the perfect subtrees of 2^(8L) leaves with index
// N*256 .. N*256+255: at level 0 the leaf hashes, above the nodes a
// NodeHashReader stores (TileHeight is C2SP's tile height, 8). A partial
// tile (width W < 256) is the first W of them, the right edge of a tree
// whose size is not a multiple of its width.

// TileWidth is the number of hashes in a full tile and of entries in a
// full entry bundle (C2SP tlog-tiles: 2^TileHeight).
const TileWidth = 1 << TileHeight

// maxTileLevel is the highest tile level C2SP allows.
const maxTileLevel = 63

// MaxBundleEntrySize is the largest entry an entry bundle carries: C2SP
// prefixes each entry with its length as a big-endian uint16.
const MaxBundleEntrySize = math.MaxUint16

// ErrBundleEntryTooLarge: an entry is longer than an entry bundle can
// carry (MaxBundleEntrySize); read it through the JSON API or an export.
var ErrBundleEntryTooLarge = errors.New("audit: entry too large for a C2SP entry bundle")

// ErrTileNotFound: the tile or bundle is beyond the latest checkpoint (or
// its width is not one the tree has had): HTTP 404. A client asks again
// once a checkpoint covers it.
var ErrTileNotFound = errors.New("audit: no such tile in the log's latest checkpoint")

// Tile addresses a hash tile or an entry bundle: level (0 for bundles),
// index and width (TileWidth for a full one, less for a partial one).
type Tile struct {
	Entries bool // an entry bundle, not a hash tile
	Level   uint64
	Index   uint64
	Width   uint64
}

// Path returns the tile's path relative to the log's prefix:
// "tile/L/N[.p/W]" or "tile/entries/N[.p/W]", N in groups of three
// digits, all but the last prefixed with "x" (C2SP tlog-tiles).
func (t Tile) Path() string {
	var b strings.Builder
	b.WriteString("tile/")
	if t.Entries {
		b.WriteString("entries/")
	} else {
		b.WriteString(strconv.FormatUint(t.Level, 10) + "/")
	}
	b.WriteString(tileIndexPath(t.Index))
	if t.Width < TileWidth {
		b.WriteString(".p/" + strconv.FormatUint(t.Width, 10))
	}
	return b.String()
}

// tileIndexPath writes n as C2SP's groups of three digits.
func tileIndexPath(n uint64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n /= 1000; n > 0; n /= 1000 {
		s = fmt.Sprintf("x%03d/%s", n%1000, s)
	}
	return s
}

// ParseTilePath parses the path of a tile or bundle relative to the log's
// prefix, as Path writes it and nothing else: no leading zeros beyond the
// three digits, no empty or extra segment, a level at most 63, a partial
// width from 1 to 255, an index below 2^64.
func ParseTilePath(path string) (Tile, error) {
	rest, ok := strings.CutPrefix(path, "tile/")
	if !ok || len(path) > 128 {
		return Tile{}, fmt.Errorf("audit: tile path %q: want tile/L/N or tile/entries/N", path)
	}
	level, rest, _ := strings.Cut(rest, "/")
	var t Tile
	if level == "entries" {
		t.Entries = true
	} else if t.Level, ok = parseDecimal(level, maxTileLevel); !ok {
		return Tile{}, fmt.Errorf("audit: tile path %q: level %q: want 0 to %d", path, level, maxTileLevel)
	}
	index, width, partial := strings.Cut(rest, ".p/")
	t.Width = TileWidth
	if partial {
		if t.Width, ok = parseDecimal(width, TileWidth-1); !ok || t.Width == 0 {
			return Tile{}, fmt.Errorf("audit: tile path %q: width %q: want 1 to %d", path, width, TileWidth-1)
		}
	}
	if t.Index, ok = parseTileIndex(index); !ok {
		return Tile{}, fmt.Errorf("audit: tile path %q: index %q: want groups of three digits, all but the last prefixed with x", path, index)
	}
	return t, nil
}

// parseDecimal parses a canonical decimal (no sign, no leading zero) up
// to max.
func parseDecimal(s string, max uint64) (uint64, bool) {
	if s == "" || (len(s) > 1 && s[0] == '0') || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil && n <= max
}

// parseTileIndex parses "x001/x234/567" as 1234567.
func parseTileIndex(s string) (uint64, bool) {
	groups := strings.Split(s, "/")
	var n uint64
	for i, g := range groups {
		last := i == len(groups)-1
		if !last {
			var ok bool
			if g, ok = strings.CutPrefix(g, "x"); !ok {
				return 0, false
			}
		}
		if len(g) != 3 || strings.TrimLeft(g, "0123456789") != "" {
			return 0, false
		}
		d, _ := strconv.ParseUint(g, 10, 64)
		if n > (math.MaxUint64-d)/1000 {
			return 0, false
		}
		n = n*1000 + d
	}
	// "x000/001" is 1 written with a leading group of zeros: not canonical.
	return n, len(groups) == 1 || !strings.HasPrefix(s, "x000/")
}

// span returns the range of the tile's hashes or entries: [start, end) at
// tree level 8*Level, and refuses one the tree of size does not hold.
func (t Tile) span(size uint64) (start, end uint64, err error) {
	level := t.Level * TileHeight
	if t.Level > maxTileLevel || level >= 64 || t.Width == 0 || t.Width > TileWidth || t.Index > (math.MaxUint64>>level)/TileWidth {
		return 0, 0, fmt.Errorf("%w: %s", ErrTileNotFound, t.Path())
	}
	start = t.Index * TileWidth
	end = start + t.Width
	if end > size>>level {
		return 0, 0, fmt.Errorf("%w: %s (the tree has %d entries)", ErrTileNotFound, t.Path(), size)
	}
	return start, end, nil
}

// HashTile returns hash tile t of the tree of size leaves of r: its
// hashes back to back, HashSize bytes each. Above level 0 it reads the
// stored nodes of a NodeHashReader, else computes each from the leaves
// (2^(8*level) leaf hashes per hash).
func HashTile(ctx context.Context, r LeafHashReader, t Tile, size uint64) ([]byte, error) {
	if t.Entries {
		return nil, fmt.Errorf("audit: hash tile: %s is an entry bundle", t.Path())
	}
	start, end, err := t.span(size)
	if err != nil {
		return nil, err
	}
	var hashes [][]byte
	n, stored := r.(NodeHashReader)
	switch {
	case t.Level == 0:
		hashes, err = readLeafHashes(ctx, r, start, end)
	case stored:
		hashes, err = readNodeHashes(ctx, n, uint(t.Level*TileHeight), start, end)
	default:
		hashes, err = leafSubtrees(ctx, r, t.Level*TileHeight, start, end)
	}
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(hashes)*HashSize)
	for _, h := range hashes {
		out = append(out, h...)
	}
	return out, nil
}

// leafSubtrees computes the hashes of the perfect subtrees [start, end) of
// 2^level leaves from the leaf hashes.
func leafSubtrees(ctx context.Context, r LeafHashReader, level, start, end uint64) ([][]byte, error) {
	hashes := make([][]byte, 0, end-start)
	for i := start; i < end; i++ {
		leaves, err := readLeafHashes(ctx, r, i<<level, (i+1)<<level)
		if err != nil {
			return nil, err
		}
		hashes = append(hashes, perfectRoot(leaves))
	}
	return hashes, nil
}

// EncodeBundle writes entries as a C2SP entry bundle: each entry prefixed
// with its length, a big-endian uint16.
func EncodeBundle(entries [][]byte) ([]byte, error) {
	n := 0
	for _, e := range entries {
		n += 2 + len(e)
	}
	out := make([]byte, 0, n)
	for _, e := range entries {
		if len(e) > MaxBundleEntrySize {
			return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBundleEntryTooLarge, len(e), MaxBundleEntrySize)
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(e)))
		out = append(out, e...)
	}
	return out, nil
}

// ParseBundle splits a C2SP entry bundle into its entries, which must be
// exactly want (the bundle's width) and fill it exactly. The entries
// alias data.
func ParseBundle(data []byte, want uint64) ([][]byte, error) {
	if want == 0 || want > TileWidth || uint64(len(data)) > want*(2+MaxBundleEntrySize) {
		return nil, fmt.Errorf("audit: entry bundle of %d bytes for %d entries: out of bounds", len(data), want)
	}
	entries := make([][]byte, 0, want)
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, fmt.Errorf("audit: entry bundle: entry %d: truncated length", len(entries))
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data)-2 < n {
			return nil, fmt.Errorf("audit: entry bundle: entry %d: %d bytes, %d left", len(entries), n, len(data)-2)
		}
		entries = append(entries, data[2:2+n:2+n])
		data = data[2+n:]
	}
	if uint64(len(entries)) != want {
		return nil, fmt.Errorf("audit: entry bundle: %d entries, want %d", len(entries), want)
	}
	return entries, nil
}

// Tile returns hash tile t of the log's latest checkpoint, for a server
// to serve under /log/: ErrTileNotFound beyond it. The hashes are the
// stored ones, not evidence: a client checks them against a checkpoint.
func (l *Log) Tile(ctx context.Context, t Tile) ([]byte, error) {
	size, err := l.latestSize(ctx)
	if err != nil {
		return nil, err
	}
	return HashTile(ctx, l.storage, t, size)
}

// EntryBundle returns entry bundle t of the log's latest checkpoint:
// ErrTileNotFound beyond it, ErrBundleEntryTooLarge if an entry does not
// fit the format. Each entry's leaf hash is LeafHash of the bytes served
// (RFC 6962: SHA-256(0x00 || entry)).
func (l *Log) EntryBundle(ctx context.Context, t Tile) ([]byte, error) {
	size, err := l.latestSize(ctx)
	if err != nil {
		return nil, err
	}
	return entryBundle(ctx, l, t, size)
}

// entryBundle returns entry bundle t of the first size entries of r.
func entryBundle(ctx context.Context, r interface {
	Entries(ctx context.Context, start, end uint64) ([][]byte, error)
}, t Tile, size uint64) ([]byte, error) {
	if !t.Entries {
		return nil, fmt.Errorf("audit: entry bundle: %s is a hash tile", t.Path())
	}
	start, end, err := t.span(size)
	if err != nil {
		return nil, err
	}
	entries, err := r.Entries(ctx, start, end)
	if err != nil {
		return nil, err
	}
	b, err := EncodeBundle(entries)
	if err != nil {
		return nil, fmt.Errorf("audit: entry bundle %s: %w", t.Path(), err)
	}
	return b, nil
}

// latestSize is the size of the latest checkpoint Checkpoint serves.
func (l *Log) latestSize(ctx context.Context) (uint64, error) {
	note, err := l.Checkpoint(ctx)
	if err != nil {
		return 0, err
	}
	cp, err := PeekCheckpoint(note) // Checkpoint serves only notes it verified or signed
	if err != nil {
		return 0, err
	}
	return cp.Size, nil
}
