package postgres

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sigil-dev/sigil/internal/store"
)

func (r reader) AuditSize(ctx context.Context) (uint64, error) {
	var n int64
	if err := r.q.QueryRow(ctx, `SELECT size FROM audit_head WHERE id = 1`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: audit log size: %w", err)
	}
	return uint64(n), nil
}

func (r reader) AuditEntries(ctx context.Context, start, end uint64) ([][]byte, error) {
	return r.auditRange(ctx, "entries", "entry", `SELECT idx, data FROM audit_entries
		WHERE idx >= $1 AND idx < $2 ORDER BY idx`, start, end)
}

func (r reader) AuditLeafHashes(ctx context.Context, start, end uint64) ([][]byte, error) {
	return r.auditRange(ctx, "leaf hashes", "entry", `SELECT idx, leaf_hash FROM audit_entries
		WHERE idx >= $1 AND idx < $2 ORDER BY idx`, start, end)
}

// auditRange reads the items [start, end) with query, which selects idx
// and a value for idx in [start, end) (its first two parameters, before
// args), in idx order; in one statement and so from one snapshot.
func (r reader) auditRange(ctx context.Context, name, item, query string, start, end uint64, args ...any) ([][]byte, error) {
	what := fmt.Sprintf("store: audit %s [%d, %d)", name, start, end)
	switch {
	case start > end:
		return nil, fmt.Errorf("%s: start after end", what)
	case end-start > store.MaxAuditRange:
		return nil, fmt.Errorf("%s: more than %d at once", what, store.MaxAuditRange)
	case end > math.MaxInt64:
		return nil, fmt.Errorf("%s: no %s %d: %w", what, item, uint64(math.MaxInt64), store.ErrNotFound)
	}
	rows, err := r.q.Query(ctx, query, append([]any{int64(start), int64(end)}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out := make([][]byte, 0, end-start)
	next := start
	_, err = scanAll(rows, func(s pgx.Row) (struct{}, error) {
		var idx int64
		var b []byte
		if err := s.Scan(&idx, &b); err != nil {
			return struct{}{}, err
		}
		if uint64(idx) != next {
			return struct{}{}, fmt.Errorf("no %s %d, but %s %d: the log is not dense", item, next, item, idx)
		}
		out, next = append(out, b), next+1
		return struct{}{}, nil
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s: %w", what, err)
	case next < end:
		return nil, fmt.Errorf("%s: no %s %d: %w", what, item, next, store.ErrNotFound)
	}
	return out, nil
}

func (r reader) AuditIndex(ctx context.Context, key string) (uint64, error) {
	var idx int64
	err := r.q.QueryRow(ctx, `SELECT idx FROM audit_keys WHERE key = $1`, key).Scan(&idx)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("store: audit key %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("store: audit key %q: %w", key, err)
	}
	return uint64(idx), nil
}

func (r reader) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	var note []byte
	err := r.q.QueryRow(ctx, `SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&note)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: latest audit checkpoint: %w", err)
	}
	return note, nil
}

func (r reader) Checkpoints(ctx context.Context) ([]store.Checkpoint, error) {
	rows, err := r.q.Query(ctx, `SELECT size, note FROM audit_checkpoints ORDER BY size`)
	if err != nil {
		return nil, fmt.Errorf("store: list audit checkpoints: %w", err)
	}
	cs, err := scanAll(rows, func(s pgx.Row) (store.Checkpoint, error) {
		var c store.Checkpoint
		var size int64
		err := s.Scan(&size, &c.Note)
		c.Size = uint64(size)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: list audit checkpoints: %w", err)
	}
	return cs, nil
}

// AppendAudit locks the coordinator row audit_head FOR UPDATE, which
// orders appenders across processes until they commit, and only then
// checks the keys: every key is inserted under that lock, so none can
// appear between the check and the insert, and a refused entry has
// written nothing (the transaction goes on). Then, in one round trip, it
// takes the index (size + 1), inserts the entry, its keys and the nodes
// it completes. Indices are dense and in commit order; a Tx that fails
// uses none up.
func (w writer) AppendAudit(ctx context.Context, e store.AuditEntry) (uint64, error) {
	if err := e.Check(); err != nil {
		return 0, fmt.Errorf("store: append audit entry: %w", err)
	}
	if e.Data == nil {
		e.Data = []byte{}
	}
	size, shard, err := w.lockAuditHead(ctx, e.Keys)
	if err != nil {
		return 0, err
	}
	idx := size
	b := &pgx.Batch{}
	b.Queue(`UPDATE audit_head SET size = size + 1 WHERE id = 1`)
	b.Queue(`INSERT INTO audit_entries (idx, data, leaf_hash, created_at) VALUES ($1, $2, $3, $4)`,
		int64(idx), e.Data, e.LeafHash, micros(e.CreatedAt))
	if len(e.Keys) > 0 {
		b.Queue(`INSERT INTO audit_keys (key, idx) SELECT k, $2 FROM unnest($1::text[]) AS k`, e.Keys, int64(idx))
	}
	if err := w.batch(ctx, b); err != nil {
		return 0, fmt.Errorf("store: append audit entry %d: %w", idx, classify(err))
	}
	if err := w.putAuditNodes(ctx, shard, idx+1); err != nil {
		return 0, fmt.Errorf("store: append audit entry %d: %w", idx, err)
	}
	return idx, nil
}

// lockAuditHead locks audit_head, returns the log size and the current
// shard's start, and refuses keys that are stored or repeated.
func (w writer) lockAuditHead(ctx context.Context, keys []string) (size, shard uint64, err error) {
	b := &pgx.Batch{}
	b.Queue(`SELECT size, shard_start FROM audit_head WHERE id = 1 FOR UPDATE`)
	b.Queue(`SELECT sigil_audit_key_taken($1)`, keys) // one index lookup a key (migration 0012)
	res := w.q.SendBatch(ctx, b)
	var n, start int64
	var taken *string
	errSize := res.QueryRow().Scan(&n, &start)
	errKey := res.QueryRow().Scan(&taken)
	if err := errors.Join(errSize, errKey, res.Close()); err != nil {
		return 0, 0, fmt.Errorf("store: append audit entry: log size: %w", err)
	}
	if taken != nil {
		return 0, 0, fmt.Errorf("store: append audit entry %d: key %q: taken: %w", n, *taken, store.ErrConflict)
	}
	if dup := repeated(keys); dup != "" {
		return 0, 0, fmt.Errorf("store: append audit entry %d: key %q twice: %w", n, dup, store.ErrConflict)
	}
	return uint64(n), uint64(start), nil
}

// repeated returns a string that occurs twice in l, or "".
func repeated(l []string) string {
	s := slices.Clone(l)
	slices.Sort(s)
	for i := 1; i < len(s); i++ {
		if s[i] == s[i-1] {
			return s[i]
		}
	}
	return ""
}

// batch runs b and returns the first error.
func (w writer) batch(ctx context.Context, b *pgx.Batch) error {
	return w.q.SendBatch(ctx, b).Close()
}

// PutCheckpoint locks the checkpoints table against other writers (SHARE
// ROW EXCLUSIVE: readers go on) for the rest of the transaction, then
// decides on what the last commit left: so of concurrent puts, from any
// replica, each sees the ones before it, and a checkpoint is recorded only
// if its size exceeds every recorded one. A trigger refuses any other
// insert, as a guard.
func (w writer) PutCheckpoint(ctx context.Context, size uint64, note []byte) error {
	what := fmt.Sprintf("store: put audit checkpoint %d", size)
	if len(note) == 0 {
		return fmt.Errorf("%s: empty note", what)
	}
	if _, err := w.q.Exec(ctx, `LOCK TABLE audit_checkpoints IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	n, err := w.reader().AuditSize(ctx)
	if err != nil {
		return err
	}
	if size > n {
		return fmt.Errorf("%s: the log has %d entries: %w", what, n, store.ErrNotFound)
	}
	var latest *int64
	var old []byte
	var shard *string
	err = w.q.QueryRow(ctx, `SELECT (SELECT max(size) FROM audit_checkpoints),
		(SELECT note FROM audit_checkpoints WHERE size = $1),
		(SELECT origin FROM audit_shards WHERE start < $1 ORDER BY start DESC LIMIT 1)`, int64(size)).Scan(&latest, &old, &shard)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := store.CheckShardOrigin(note, shard); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if stored, err := fence(what, size, note, latest, old); stored || err != nil {
		return err
	}
	_, err = w.q.Exec(ctx, `INSERT INTO audit_checkpoints (size, note, created_at) VALUES ($1, $2, $3)`,
		int64(size), note, micros(time.Now()))
	if err != nil {
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	return nil
}

// fence decides on a checkpoint of size with note, given the largest size
// recorded (nil for none) and the note recorded for size (nil for none):
// the same note again is stored already; another note for a recorded
// size, or a size not above the latest, is ErrConflict.
func fence(what string, size uint64, note []byte, latest *int64, old []byte) (stored bool, err error) {
	switch {
	case old != nil && bytes.Equal(old, note):
		return true, nil
	case old != nil:
		return false, fmt.Errorf("%s: another note is stored: %w", what, store.ErrConflict)
	case latest != nil && uint64(*latest) >= size:
		return false, fmt.Errorf("%s: a checkpoint of size %d is recorded; checkpoints only grow: %w", what, *latest, store.ErrConflict)
	}
	return false, nil
}

func (r reader) Cosignatures(ctx context.Context, size uint64) ([][]byte, error) {
	rows, err := r.q.Query(ctx, `SELECT line FROM audit_cosignatures WHERE size = $1 ORDER BY witness`, int64(size))
	if err != nil {
		return nil, fmt.Errorf("store: audit cosignatures of %d: %w", size, err)
	}
	lines, err := scanAll(rows, func(s pgx.Row) ([]byte, error) {
		var line []byte
		err := s.Scan(&line)
		return line, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: audit cosignatures of %d: %w", size, err)
	}
	return lines, nil
}

// AddCosignature inserts the line unless one is stored for the witness and
// size (ON CONFLICT DO NOTHING keeps the first, also against a concurrent
// insert); the foreign key makes a size not checkpointed ErrNotFound.
func (w writer) AddCosignature(ctx context.Context, size uint64, witness string, line []byte) error {
	what := fmt.Sprintf("store: add cosignature of audit checkpoint %d by %q", size, witness)
	if err := store.CheckSignatureLine(line); err != nil || witness == "" {
		return fmt.Errorf("%s: %w", what, cmp.Or(err, errors.New("no witness")))
	}
	var n int
	if err := w.q.QueryRow(ctx, `SELECT count(*) FROM audit_checkpoints WHERE size = $1`, int64(size)).Scan(&n); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: no such checkpoint: %w", what, store.ErrNotFound)
	}
	_, err := w.q.Exec(ctx, `INSERT INTO audit_cosignatures (size, witness, line) VALUES ($1, $2, $3)
		ON CONFLICT (size, witness) DO NOTHING`, int64(size), witness, line)
	if err != nil {
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	return nil
}

func (r reader) AuditShards(ctx context.Context) ([]store.AuditShard, error) {
	rows, err := r.q.Query(ctx, `SELECT start, name, origin, created_at FROM audit_shards ORDER BY start`)
	if err != nil {
		return nil, fmt.Errorf("store: list audit shards: %w", err)
	}
	shards, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.AuditShard, error) {
		var sh store.AuditShard
		var start, at int64
		err := row.Scan(&start, &sh.Name, &sh.Origin, &at)
		sh.Start, sh.CreatedAt = uint64(start), fromMicros(at)
		return sh, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: list audit shards: %w", err)
	}
	return shards, nil
}

// StartAuditShard moves audit_head.shard_start to the size with an UPDATE,
// whose row lock is the one AppendAudit takes (FOR UPDATE): appenders that
// committed before are below the start, the others wait and append above.
func (w writer) StartAuditShard(ctx context.Context, name, origin string, at time.Time) (uint64, error) {
	what := fmt.Sprintf("store: start audit shard %q", name)
	if name == "" || origin == "" {
		return 0, fmt.Errorf("%s: empty name or origin", what)
	}
	var size int64
	err := w.q.QueryRow(ctx, `UPDATE audit_head SET shard_start = size WHERE id = 1 RETURNING size`).Scan(&size)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, classify(err))
	}
	_, err = w.q.Exec(ctx, `INSERT INTO audit_shards (start, name, origin, created_at) VALUES ($1, $2, $3, $4)`,
		size, name, origin, micros(at))
	if err != nil {
		return 0, fmt.Errorf("%s at %d: %w", what, size, classify(err))
	}
	return uint64(size), nil
}

func (r reader) AuditArchived(ctx context.Context) ([]uint64, error) {
	rows, err := r.q.Query(ctx, `SELECT start FROM audit_archived ORDER BY start`)
	if err != nil {
		return nil, fmt.Errorf("store: list archived audit shards: %w", err)
	}
	starts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (uint64, error) {
		var start int64
		err := row.Scan(&start)
		return uint64(start), err
	})
	if err != nil {
		return nil, fmt.Errorf("store: list archived audit shards: %w", err)
	}
	return starts, nil
}

// ArchiveAuditShard records the archive first: the schema's triggers let
// the deletes through only inside it.
func (w writer) ArchiveAuditShard(ctx context.Context, start, end uint64, at time.Time) error {
	what := fmt.Sprintf("store: archive audit shard [%d, %d)", start, end)
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO audit_archived (start, end_idx, archived_at) VALUES ($1, $2, $3)`, int64(start), int64(end), micros(at))
	b.Queue(`DELETE FROM audit_keys WHERE idx >= $1 AND idx < $2`, int64(start), int64(end))
	b.Queue(`DELETE FROM audit_entries WHERE idx >= $1 AND idx < $2`, int64(start), int64(end))
	b.Queue(`DELETE FROM audit_shard_nodes WHERE shard = $1`, int64(start))
	b.Queue(`DELETE FROM audit_nodes WHERE $1::bigint = 0`, int64(start))
	if err := w.batch(ctx, b); err != nil {
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	return nil
}
