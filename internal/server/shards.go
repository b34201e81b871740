package server

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
)

// ShardLog is one shard of the log as the tile routes serve it: its
// latest checkpoint (the final one once sealed) and its tiles.
type ShardLog interface {
	Checkpoint(ctx context.Context) ([]byte, error)
	TiledLog
}

// LogShards is the audit log's chain of shards, when it is sharded by
// time (audit.shard_period).
type LogShards interface {
	// Shards lists the shards, oldest first.
	Shards(ctx context.Context) ([]api.LogShard, error)
	// Shard returns the shard named name; ErrNoShard if there is none.
	Shard(ctx context.Context, name string) (ShardLog, error)
}

// ShardFinder finds entries by key ("serial:…", "jti:…") in the sealed
// shards of a log sharded by time (LogShards may implement it).
type ShardFinder interface {
	// FindSealed returns the inclusion proof of the entry appended with
	// key in the sealed shard it is in, against that shard's final
	// checkpoint, with the shard named; ErrInCurrentShard if it is in the
	// current shard; an error matching ErrArchivedShard, naming the
	// shard, if that shard is archived.
	FindSealed(ctx context.Context, key string) (api.AuditProof, error)
}

// ErrInCurrentShard: the entry is in the current shard, served as the log.
var ErrInCurrentShard = errors.New("audit entry in the current shard")

// ErrArchivedShard: the entry is in a shard that was archived (sigild
// audit archive --drop): verify it from the shard's export.
var ErrArchivedShard = errors.New("audit entry in an archived shard: its entries are no longer served, verify it from the shard's export")

// ErrNoShard: the log has no shard of that name.
var ErrNoShard = errors.New("no such audit shard")

// shardRoutes serves the chain of shards at /log/shards and each shard's
// tiles under /log/shard/NAME/, by the rules of /log/ (tiles.go): the
// checkpoint and hash tiles public, entry bundles to audit.readers only.
func (s *Server) shardRoutes(mux *http.ServeMux) {
	if s.AuditShards == nil {
		return
	}
	mux.HandleFunc("GET "+api.PathLogShards, func(w http.ResponseWriter, r *http.Request) {
		shards, err := s.AuditShards.Shards(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		w.Header().Set("Cache-Control", cacheShort)
		writeJSON(w, http.StatusOK, api.LogShards{Shards: shards})
	})
	mux.HandleFunc("GET "+api.PathLogShard+"{shard}/checkpoint", func(w http.ResponseWriter, r *http.Request) {
		l, ok := s.shard(w, r)
		if !ok {
			return
		}
		note, err := l.Checkpoint(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", cacheShort)
		w.Write(note)
	})
	tiles := func(entries bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			l, ok := s.shard(w, r)
			if !ok {
				return
			}
			s.serveTile(w, r, l, strings.TrimPrefix(r.URL.Path, api.PathLogShard+r.PathValue("shard")+"/"), entries)
		}
	}
	mux.HandleFunc("GET "+api.PathLogShard+"{shard}/tile/entries/", s.auditReader(tiles(true)))
	mux.HandleFunc("GET "+api.PathLogShard+"{shard}/tile/", tiles(false))
}

// shard finds the request's shard, or answers 404.
func (s *Server) shard(w http.ResponseWriter, r *http.Request) (ShardLog, bool) {
	l, err := s.AuditShards.Shard(r.Context(), r.PathValue("shard"))
	switch {
	case errors.Is(err, ErrNoShard):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
		return nil, false
	case err != nil:
		s.fail(w, r, err)
		return nil, false
	}
	return l, true
}

var _ ShardLog = (*audit.Sealed)(nil)
