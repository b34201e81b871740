package server

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
)

// TiledLog is what the C2SP tlog-tiles routes serve of the audit log
// (audit.Log): an optional power of an AuditLog.
type TiledLog interface {
	Tile(ctx context.Context, t audit.Tile) ([]byte, error)
	EntryBundle(ctx context.Context, t audit.Tile) ([]byte, error)
}

var _ TiledLog = (*audit.Log)(nil)

// Cache-Control of what /log/ serves. A full tile or bundle never changes
// (its hashes are of a prefix of an append-only tree): any cache keeps it.
// A partial one is replaced by a wider one as the log grows, and the
// checkpoint by the next: caches keep them briefly. Entry bundles are
// read over mTLS by audit.readers only: private, never in a shared cache.
const (
	cacheImmutable        = "public, max-age=31536000, immutable"
	cacheShort            = "public, max-age=1"
	cachePrivateImmutable = "private, max-age=31536000, immutable"
	cachePrivateShort     = "private, max-age=1"
)

// logRoutes serves the audit log as C2SP tlog-tiles under /log/, from the
// stored entries and nodes, so from any replica. The checkpoint and the
// hash tiles are public, as the checkpoint and consistency proofs of the
// JSON API are: hashes and signatures, from which anyone can build
// consistency proofs and check inclusion of an entry they hold. Entry
// bundles name users, scopes and denial reasons: the same rule as the
// JSON API's entries, audit.readers over mTLS.
func (s *Server) logRoutes(mux *http.ServeMux) {
	tiled, ok := s.Audit.(TiledLog)
	if s.Audit == nil || !ok {
		return
	}
	mux.HandleFunc("GET "+api.PathLogCheckpoint, s.logCheckpoint)
	mux.HandleFunc("GET "+api.PathLog+"tile/entries/", s.auditReader(s.logTile(tiled, true)))
	mux.HandleFunc("GET "+api.PathLog+"tile/", s.logTile(tiled, false))
	s.shardRoutes(mux)
}

func (s *Server) logCheckpoint(w http.ResponseWriter, r *http.Request) {
	note, err := s.Audit.Checkpoint(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", cacheShort)
	w.Write(note)
}

// logTile serves entry bundles (entries) or hash tiles: each route only
// its own kind, so no path reaches a bundle past the readers' check.
func (s *Server) logTile(l TiledLog, entries bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.serveTile(w, r, l, strings.TrimPrefix(r.URL.Path, api.PathLog), entries)
	}
}

// serveTile serves the tile at path (relative to the log's prefix) of l:
// an entry bundle if entries, else a hash tile.
func (s *Server) serveTile(w http.ResponseWriter, r *http.Request, l TiledLog, path string, entries bool) {
	t, err := audit.ParseTilePath(path)
	if err == nil && t.Entries != entries {
		err = errors.New("audit: not a hash tile path")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	var body []byte
	if t.Entries {
		body, err = l.EntryBundle(r.Context(), t)
	} else {
		body, err = l.Tile(r.Context(), t)
	}
	switch {
	case errors.Is(err, audit.ErrTileNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
		return
	case errors.Is(err, audit.ErrBundleEntryTooLarge):
		s.Log.ErrorContext(r.Context(), "audit: entry bundle not served", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "server_error", err.Error()+"; read the entries through "+api.PathAuditEntries)
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	if im, ok := l.(immutable); ok && im.Immutable() {
		t.Width = audit.TileWidth // a sealed shard's partial tiles are final
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", tileCache(t))
	w.Write(body)
}

// immutable is a log whose tiles never change, partial ones included: a
// sealed shard (audit.Sealed).
type immutable interface{ Immutable() bool }

// tileCache is the Cache-Control of tile t.
func tileCache(t audit.Tile) string {
	switch full := t.Width == audit.TileWidth; {
	case t.Entries && full:
		return cachePrivateImmutable
	case t.Entries:
		return cachePrivateShort
	case full:
		return cacheImmutable
	}
	return cacheShort
}
