package client

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
)

// TileSource reads a sigild's audit log as C2SP tlog-tiles (under
// api.PathLog): the checkpoint, and the entries from entry bundles. Like
// AuditSource it trusts nothing it reads; entry bundles are served only
// to an identity in sigild's audit.readers (TileSource of an enrolled
// Workload). It is not safe for concurrent use.
type TileSource struct {
	server string
	prefix string // a shard's api.PathLogShard+NAME+"/"; empty: api.PathLog
	hc     *http.Client
	size   uint64 // of the last checkpoint read: the widths of its bundles
	last   bundle // the last bundle read, for reads that end inside it
}

// bundle is an entry bundle read.
type bundle struct {
	tile    audit.Tile
	entries [][]byte
}

var _ audit.Source = (*TileSource)(nil)

// NewTileSource returns an anonymous tiles reader for the server at base,
// whose TLS certificate must chain to a root in caBundle (PEM): it reads
// the checkpoint, and entry bundles only from a server that lets anyone
// read them.
func NewTileSource(base string, caBundle []byte) (*TileSource, error) {
	roots, err := pool(caBundle)
	if err != nil {
		return nil, err
	}
	return &TileSource{server: strings.TrimSuffix(base, "/"), hc: newHTTPClient(roots, nil)}, nil
}

// TileSource reads the audit log tiles of the server at base (the
// workload's own if empty) as the workload, over mTLS.
func (w *Workload) TileSource(base string) *TileSource {
	if base == "" {
		base = w.State().Server
	}
	return &TileSource{server: strings.TrimSuffix(base, "/"), hc: w.HTTPClient()}
}

// Shard returns a reader of shard name of a log sharded by time (its
// tiles under api.PathLogShard+name+"/"), over the same connection.
func (s *TileSource) Shard(name string) *TileSource {
	return &TileSource{server: s.server, prefix: api.PathLogShard + url.PathEscape(name) + "/", hc: s.hc}
}

// path is the path of the log's resource rel (C2SP tlog-tiles).
func (s *TileSource) path(rel string) string { return cmp.Or(s.prefix, api.PathLog) + rel }

// maxShards bounds the shard listing: some ten thousand shards.
const maxShards = 8 << 20

// Shards returns the chain of shards of a log sharded by time; a
// ServerError of status 404 from a log that is not sharded.
func (s *TileSource) Shards(ctx context.Context) ([]audit.ShardInfo, error) {
	data, err := s.get(ctx, api.PathLogShards, maxShards)
	if err != nil {
		return nil, err
	}
	var list api.LogShards
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("client: %s: %w", api.PathLogShards, err)
	}
	out := make([]audit.ShardInfo, len(list.Shards))
	for i, sh := range list.Shards {
		out[i] = audit.ShardInfo{Name: sh.Name, Origin: sh.Origin, Sealed: sh.Sealed, Archived: sh.Archived, Checkpoint: []byte(sh.Checkpoint)}
	}
	return out, nil
}

// Served reports whether the server serves its log as tiles: false when
// /log/checkpoint is not found (an older sigild).
func (s *TileSource) Served(ctx context.Context) (bool, error) {
	_, err := s.Checkpoint(ctx)
	var answer *ServerError
	if errors.As(err, &answer) && answer.Status == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// Checkpoint returns the latest signed checkpoint, and remembers its size
// (unverified: only to choose the width of the last bundle).
func (s *TileSource) Checkpoint(ctx context.Context) ([]byte, error) {
	note, err := s.get(ctx, s.path("checkpoint"), audit.MaxCheckpointSize)
	if err != nil {
		return nil, err
	}
	if cp, err := audit.PeekCheckpoint(note); err == nil {
		s.size = cp.Size
	}
	return note, nil
}

// Entries returns entries [start, end) from the bundles that hold them,
// fewer if the server has no bundle beyond some point.
func (s *TileSource) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	var out [][]byte
	for i := start / audit.TileWidth; i*audit.TileWidth < end; i++ {
		entries, err := s.bundle(ctx, i, end)
		var answer *ServerError
		if errors.As(err, &answer) && answer.Status == http.StatusNotFound {
			break // the source ends here: the auditor reports what is missing
		}
		if err != nil {
			return nil, err
		}
		first := i * audit.TileWidth
		lo, hi := max(start, first)-first, min(end-first, uint64(len(entries)))
		if lo >= hi {
			break
		}
		out = append(out, entries[lo:hi]...)
		if uint64(len(entries)) < audit.TileWidth {
			break
		}
	}
	return out, nil
}

// bundle reads bundle i, full if the tree (of the larger of the last
// checkpoint's size and end) holds it, else partial.
func (s *TileSource) bundle(ctx context.Context, i, end uint64) ([][]byte, error) {
	first := i * audit.TileWidth
	t := audit.Tile{Entries: true, Index: i, Width: min(audit.TileWidth, max(s.size, end)-first)}
	if s.last.tile == t {
		return s.last.entries, nil
	}
	data, err := s.get(ctx, s.path(t.Path()), maxBundle)
	if err != nil {
		return nil, err
	}
	entries, err := audit.ParseBundle(data, t.Width)
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", t.Path(), err)
	}
	s.last = bundle{tile: t, entries: entries}
	return entries, nil
}

// maxBundle bounds an entry bundle: 256 entries of at most 64 KiB.
const maxBundle = audit.TileWidth * (2 + audit.MaxBundleEntrySize)

func (s *TileSource) get(ctx context.Context, path string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.server+path, nil)
	if err != nil {
		return nil, err
	}
	return roundTrip(s.hc, req, limit)
}
