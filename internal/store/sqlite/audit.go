package sqlite

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

func (r reader) AuditSize(ctx context.Context) (uint64, error) {
	var n int64
	err := r.q.QueryRowContext(ctx, `SELECT size FROM audit_head WHERE id = 1`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: audit log size: %w", err)
	}
	return uint64(n), nil
}

func (r reader) AuditEntries(ctx context.Context, start, end uint64) ([][]byte, error) {
	return r.auditRange(ctx, "entries", "entry", `SELECT idx, data FROM audit_entries
		WHERE idx >= ? AND idx < ? ORDER BY idx`, start, end)
}

func (r reader) AuditLeafHashes(ctx context.Context, start, end uint64) ([][]byte, error) {
	return r.auditRange(ctx, "leaf hashes", "entry", `SELECT idx, leaf_hash FROM audit_entries
		WHERE idx >= ? AND idx < ? ORDER BY idx`, start, end)
}

// auditRange reads the items [start, end) with query, which selects idx
// and a value for idx in [start, end) (its last two parameters, after
// args), in idx order; in one statement and so from one snapshot of the
// log.
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
	rows, err := r.q.QueryContext(ctx, query, append(args, int64(start), int64(end))...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out := make([][]byte, 0, end-start)
	next := start
	_, err = scanAll(rows, func(s scanner) (struct{}, error) {
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
	err := r.q.QueryRowContext(ctx, `SELECT idx FROM audit_keys WHERE key = ?`, key).Scan(&idx)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("store: audit key %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("store: audit key %q: %w", key, err)
	}
	return uint64(idx), nil
}

func (r reader) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	var note []byte
	err := r.q.QueryRowContext(ctx, `SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&note)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: latest audit checkpoint: %w", err)
	}
	return note, nil
}

func (r reader) Checkpoints(ctx context.Context) ([]store.Checkpoint, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT size, note FROM audit_checkpoints ORDER BY size`)
	if err != nil {
		return nil, fmt.Errorf("store: list audit checkpoints: %w", err)
	}
	cs, err := scanAll(rows, func(s scanner) (store.Checkpoint, error) {
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

// AppendAudit takes the index from the coordinator row audit_head, in
// the write transaction: UPDATE … SET size = size + 1 … RETURNING, whose row
// lock, held until commit, orders appenders on any database, so indices
// are dense and in commit order even when several processes append to one
// database, and a Tx whose fn fails uses none up. The entry, its keys and
// the nodes it completes go in a savepoint, so that a duplicate key stores
// nothing even if fn goes on.
func (w writer) AppendAudit(ctx context.Context, e store.AuditEntry) (uint64, error) {
	var idx uint64
	err := w.savepoint(ctx, "append_audit", func() (err error) {
		idx, err = w.appendAudit(ctx, e)
		return err
	})
	if err != nil {
		return 0, err
	}
	return idx, nil
}

// appendAudit is AppendAudit without its savepoint, for a caller whose
// own failure undoes the entry's writes when this fails (RecordToken).
func (w writer) appendAudit(ctx context.Context, e store.AuditEntry) (uint64, error) {
	if err := e.Check(); err != nil {
		return 0, fmt.Errorf("store: append audit entry: %w", err)
	}
	if e.Data == nil {
		e.Data = []byte{}
	}
	var size, shard int64
	err := w.q.QueryRowContext(ctx, `UPDATE audit_head SET size = size + 1 WHERE id = 1 RETURNING size, shard_start`).Scan(&size, &shard)
	if err != nil {
		return 0, fmt.Errorf("store: append audit entry: log size: %w", err)
	}
	idx := size - 1
	_, err = w.q.ExecContext(ctx, `INSERT INTO audit_entries (idx, data, leaf_hash, created_at)
		VALUES (?, ?, ?, ?)`, idx, e.Data, e.LeafHash, micros(e.CreatedAt))
	if err != nil {
		return 0, fmt.Errorf("store: append audit entry %d: %w", idx, classify(err))
	}
	for _, k := range e.Keys {
		if _, err := w.q.ExecContext(ctx, `INSERT INTO audit_keys (key, idx) VALUES (?, ?)`, k, idx); err != nil {
			return 0, fmt.Errorf("store: append audit entry %d: key %q: %w", idx, k, classify(err))
		}
	}
	if err := w.putAuditNodes(ctx, uint64(shard), uint64(size)); err != nil {
		return 0, fmt.Errorf("store: append audit entry %d: %w", idx, err)
	}
	return uint64(idx), nil
}

// PutCheckpoint decides on what is stored in its write transaction, which
// SQLite runs one at a time: the note stored for size, if any, and the
// largest size stored.
func (w writer) PutCheckpoint(ctx context.Context, size uint64, note []byte) error {
	what := fmt.Sprintf("store: put audit checkpoint %d", size)
	if len(note) == 0 {
		return fmt.Errorf("%s: empty note", what)
	}
	n, err := reader(w).AuditSize(ctx)
	if err != nil {
		return err
	}
	if size > n {
		return fmt.Errorf("%s: the log has %d entries: %w", what, n, store.ErrNotFound)
	}
	var latest sql.NullInt64
	var old []byte
	var shard *string
	err = w.q.QueryRowContext(ctx, `SELECT (SELECT max(size) FROM audit_checkpoints),
		(SELECT note FROM audit_checkpoints WHERE size = ?1),
		(SELECT origin FROM audit_shards WHERE start < ?1 ORDER BY start DESC LIMIT 1)`, int64(size)).Scan(&latest, &old, &shard)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := store.CheckShardOrigin(note, shard); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch {
	case old != nil && bytes.Equal(old, note):
		return nil
	case old != nil:
		return fmt.Errorf("%s: another note is stored: %w", what, store.ErrConflict)
	case latest.Valid && uint64(latest.Int64) >= size:
		return fmt.Errorf("%s: a checkpoint of size %d is recorded; checkpoints only grow: %w", what, latest.Int64, store.ErrConflict)
	}
	_, err = w.q.ExecContext(ctx, `INSERT INTO audit_checkpoints (size, note, created_at) VALUES (?, ?, ?)`,
		int64(size), note, micros(time.Now()))
	if err != nil {
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	return nil
}

func (r reader) Cosignatures(ctx context.Context, size uint64) ([][]byte, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT line FROM audit_cosignatures WHERE size = ? ORDER BY witness`, int64(size))
	if err != nil {
		return nil, fmt.Errorf("store: audit cosignatures of %d: %w", size, err)
	}
	lines, err := scanAll(rows, func(s scanner) ([]byte, error) {
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
// size (ON CONFLICT DO NOTHING keeps the first).
func (w writer) AddCosignature(ctx context.Context, size uint64, witness string, line []byte) error {
	what := fmt.Sprintf("store: add cosignature of audit checkpoint %d by %q", size, witness)
	if err := store.CheckSignatureLine(line); err != nil || witness == "" {
		return fmt.Errorf("%s: %w", what, cmp.Or(err, errors.New("no witness")))
	}
	var n int
	if err := w.q.QueryRowContext(ctx, `SELECT count(*) FROM audit_checkpoints WHERE size = ?`, int64(size)).Scan(&n); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: no such checkpoint: %w", what, store.ErrNotFound)
	}
	_, err := w.q.ExecContext(ctx, `INSERT INTO audit_cosignatures (size, witness, line) VALUES (?, ?, ?)
		ON CONFLICT (size, witness) DO NOTHING`, int64(size), witness, line)
	if err != nil {
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	return nil
}

func (r reader) AuditShards(ctx context.Context) ([]store.AuditShard, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT start, name, origin, created_at FROM audit_shards ORDER BY start`)
	if err != nil {
		return nil, fmt.Errorf("store: list audit shards: %w", err)
	}
	shards, err := scanAll(rows, func(s scanner) (store.AuditShard, error) {
		var sh store.AuditShard
		var start, at int64
		err := s.Scan(&start, &sh.Name, &sh.Origin, &at)
		sh.Start, sh.CreatedAt = uint64(start), fromMicros(at)
		return sh, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: list audit shards: %w", err)
	}
	return shards, nil
}

// StartAuditShard moves audit_head.shard_start to the size in the write
// transaction, which SQLite runs one at a time, so no append interleaves;
// the triggers refuse a start anywhere but the head.
func (w writer) StartAuditShard(ctx context.Context, name, origin string, at time.Time) (uint64, error) {
	what := fmt.Sprintf("store: start audit shard %q", name)
	if name == "" || origin == "" {
		return 0, fmt.Errorf("%s: empty name or origin", what)
	}
	var size int64
	err := w.q.QueryRowContext(ctx, `UPDATE audit_head SET shard_start = size WHERE id = 1 RETURNING size`).Scan(&size)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, classify(err))
	}
	_, err = w.q.ExecContext(ctx, `INSERT INTO audit_shards (start, name, origin, created_at) VALUES (?, ?, ?, ?)`,
		size, name, origin, micros(at))
	if err != nil {
		return 0, fmt.Errorf("%s at %d: %w", what, size, classify(err))
	}
	return uint64(size), nil
}

func (r reader) AuditArchived(ctx context.Context) ([]uint64, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT start FROM audit_archived ORDER BY start`)
	if err != nil {
		return nil, fmt.Errorf("store: list archived audit shards: %w", err)
	}
	starts, err := scanAll(rows, func(s scanner) (uint64, error) {
		var start int64
		err := s.Scan(&start)
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
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO audit_archived (start, end_idx, archived_at) VALUES (?, ?, ?)`, []any{int64(start), int64(end), micros(at)}},
		{`DELETE FROM audit_keys WHERE idx >= ? AND idx < ?`, []any{int64(start), int64(end)}},
		{`DELETE FROM audit_entries WHERE idx >= ? AND idx < ?`, []any{int64(start), int64(end)}},
		{`DELETE FROM audit_shard_nodes WHERE shard = ?`, []any{int64(start)}},
		{`DELETE FROM audit_nodes WHERE ? = 0`, []any{int64(start)}},
	} {
		if _, err := w.q.ExecContext(ctx, q.sql, q.args...); err != nil {
			return fmt.Errorf("%s: %w", what, classify(err))
		}
	}
	return nil
}
