package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
)

// AuditLog is what the API serves of the audit log, through the log's own
// API (audit.Log): signed checkpoints, entries, entries found by key
// ("serial:…", "jti:…") and proofs against the checkpoints.
type AuditLog interface {
	Checkpoint(ctx context.Context) ([]byte, error)
	Entries(ctx context.Context, start, end uint64) ([][]byte, error)
	Find(ctx context.Context, key string) (uint64, error)
	InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error)
	ConsistencyProof(ctx context.Context, m, n uint64) ([][]byte, error)
}

var _ AuditLog = (*audit.Log)(nil)

// auditRoutes serves the log. Checkpoints and consistency proofs are
// public: they are hashes and signatures, and anyone may hold the log to
// being append-only. Entries and inclusion proofs (which find entries by
// serial or jti) name users, scopes, delegation chains and why an
// attestation failed: only the identities in AuditReaders read them, over
// mTLS with a certificate this server issued and has not revoked; anyone
// else gets 401 (no or no acceptable certificate) or 403 (another
// identity).
func (s *Server) auditRoutes(mux *http.ServeMux) {
	if s.Audit == nil {
		return
	}
	mux.HandleFunc("GET "+api.PathAuditCheckpoint, s.auditCheckpoint)
	mux.HandleFunc("GET "+api.PathAuditEntries, s.auditReader(s.auditEntries))
	mux.HandleFunc("GET "+api.PathAuditInclusion, s.auditReader(s.auditInclusion))
	mux.HandleFunc("GET "+api.PathAuditConsistency, s.auditConsistency)
	s.logRoutes(mux)
}

// auditReader serves next only to a caller whose client certificate
// authenticates (device.Authenticate) as one of s.AuditReaders.
func (s *Server) auditReader(next http.HandlerFunc) http.HandlerFunc {
	return s.listed(allowList{ids: s.AuditReaders, field: "audit.readers", action: "read audit entries", whenEmpty: "; use an export"}, next)
}

func (s *Server) auditCheckpoint(w http.ResponseWriter, r *http.Request) {
	note, err := s.Audit.Checkpoint(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(note)
}

func (s *Server) auditEntries(w http.ResponseWriter, r *http.Request) {
	q := queryInts(r, "start", "end")
	if q.err == nil && (q.v["end"] <= q.v["start"] || q.v["end"]-q.v["start"] > api.MaxAuditEntries) {
		q.err = fmt.Errorf("want start < end and at most %d entries", api.MaxAuditEntries)
	}
	if q.err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", q.err.Error())
		return
	}
	entries, err := s.Audit.Entries(r.Context(), q.v["start"], q.v["end"])
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.AuditEntries{Entries: entries})
}

func (s *Server) auditInclusion(w http.ResponseWriter, r *http.Request) {
	if s.sealedInclusion(w, r) {
		return
	}
	index, err := s.entryIndex(r)
	q := queryInts(r, "size")
	if err == nil {
		err = q.err
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hashes, err := s.Audit.InclusionProof(r.Context(), index, q.v["size"])
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %v", errBadQuery, err))
		return
	}
	writeJSON(w, http.StatusOK, api.AuditProof{Index: index, Size: q.v["size"], Hashes: hashes})
}

// sealedInclusion answers an entry looked up by ?serial= or ?jti= that is
// in a sealed shard of a log sharded by time: its proof against that
// shard's final checkpoint, the shard named; 410 if the shard is archived.
// It returns whether it answered: false when the entry is not in a sealed
// shard, to be served from the current one.
func (s *Server) sealedInclusion(w http.ResponseWriter, r *http.Request) bool {
	f, ok := s.AuditShards.(ShardFinder)
	if !ok {
		return false
	}
	for _, key := range []string{"serial", "jti"} {
		v := r.URL.Query().Get(key)
		if v == "" || len(v) > 128 {
			continue
		}
		proof, err := f.FindSealed(r.Context(), key+":"+v)
		switch {
		case err == nil:
			writeJSON(w, http.StatusOK, proof)
		case errors.Is(err, ErrInCurrentShard):
			return false
		case errors.Is(err, ErrArchivedShard):
			writeError(w, http.StatusGone, "archived", err.Error())
		default:
			s.fail(w, r, err)
		}
		return true
	}
	return false
}

// entryIndex reads ?index=, or finds the entry of ?serial= or ?jti=.
func (s *Server) entryIndex(r *http.Request) (uint64, error) {
	for _, key := range []string{"serial", "jti"} {
		if v := r.URL.Query().Get(key); v != "" {
			if len(v) > 128 {
				return 0, fmt.Errorf("%w: %s too long", errBadQuery, key)
			}
			return s.Audit.Find(r.Context(), key+":"+v)
		}
	}
	q := queryInts(r, "index")
	return q.v["index"], q.err
}

func (s *Server) auditConsistency(w http.ResponseWriter, r *http.Request) {
	q := queryInts(r, "from", "to")
	if q.err != nil {
		s.fail(w, r, q.err)
		return
	}
	hashes, err := s.Audit.ConsistencyProof(r.Context(), q.v["from"], q.v["to"])
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %v", errBadQuery, err))
		return
	}
	writeJSON(w, http.StatusOK, api.AuditProof{From: q.v["from"], Size: q.v["to"], Hashes: hashes})
}

// errBadQuery marks a malformed or out-of-range query (400).
var errBadQuery = errors.New("invalid query")

type ints struct {
	v   map[string]uint64
	err error
}

// queryInts parses the named query parameters as unsigned integers.
func queryInts(r *http.Request, names ...string) ints {
	out := ints{v: map[string]uint64{}}
	for _, n := range names {
		v, err := strconv.ParseUint(r.URL.Query().Get(n), 10, 63)
		if err != nil {
			out.err = fmt.Errorf("%w: %s must be a non-negative integer", errBadQuery, n)
			return out
		}
		out.v[n] = v
	}
	return out
}
