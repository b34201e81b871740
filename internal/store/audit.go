package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"
)

// AuditEntry is an entry of the audit log.
type AuditEntry struct {
	Index     uint64   // 0-based position in the log, assigned by AppendAudit
	Data      []byte   // the entry, as the Merkle tree hashes it
	LeafHash  []byte   // RFC 6962 leaf hash of Data, 32 bytes, computed by the caller
	Keys      []string // unique across the log: "serial:ab12", "jti:…"
	CreatedAt time.Time
}

// Checkpoint is a signed checkpoint note of the tree of the first Size
// entries.
type Checkpoint struct {
	Size uint64
	Note []byte
}

// MaxAuditRange is the most items one AuditEntries or AuditLeafHashes call
// returns: ask for a longer range in pieces.
const MaxAuditRange = 100_000

func (r reader) AuditSize(ctx context.Context) (uint64, error) {
	var n int64
	err := r.q.QueryRowContext(ctx, `SELECT coalesce(max(idx) + 1, 0) FROM audit_entries`).Scan(&n)
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
	case end-start > MaxAuditRange:
		return nil, fmt.Errorf("%s: more than %d at once", what, MaxAuditRange)
	case end > math.MaxInt64:
		return nil, fmt.Errorf("%s: no %s %d: %w", what, item, uint64(math.MaxInt64), ErrNotFound)
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
		return nil, fmt.Errorf("%s: no %s %d: %w", what, item, next, ErrNotFound)
	}
	return out, nil
}

func (r reader) AuditIndex(ctx context.Context, key string) (uint64, error) {
	var idx int64
	err := r.q.QueryRowContext(ctx, `SELECT idx FROM audit_keys WHERE key = ?`, key).Scan(&idx)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("store: audit key %q: %w", key, ErrNotFound)
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

func (r reader) Checkpoints(ctx context.Context) ([]Checkpoint, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT size, note FROM audit_checkpoints ORDER BY size`)
	if err != nil {
		return nil, fmt.Errorf("store: list audit checkpoints: %w", err)
	}
	cs, err := scanAll(rows, func(s scanner) (Checkpoint, error) {
		var c Checkpoint
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

// AppendAudit computes the index in the INSERT, in the write transaction:
// it is dense even when several processes append to one database, and a
// Tx whose fn fails does not use one up. The entry and its keys go in a
// savepoint, so that a duplicate key stores nothing even if fn goes on.
func (w writer) AppendAudit(ctx context.Context, e AuditEntry) (uint64, error) {
	if len(e.LeafHash) != 32 {
		return 0, fmt.Errorf("store: append audit entry: leaf hash is %d bytes, want 32", len(e.LeafHash))
	}
	if e.Data == nil {
		e.Data = []byte{}
	}
	if _, err := w.q.ExecContext(ctx, `SAVEPOINT append_audit`); err != nil {
		return 0, fmt.Errorf("store: append audit entry: %w", err)
	}
	idx, err := w.appendAudit(ctx, e)
	ctx = context.WithoutCancel(ctx) // close the savepoint whatever ctx does
	if err != nil {
		if _, rbErr := w.q.ExecContext(ctx, `ROLLBACK TO append_audit`); rbErr != nil {
			err = errors.Join(err, fmt.Errorf("store: append audit entry: rollback: %w", rbErr))
		}
	}
	if _, relErr := w.q.ExecContext(ctx, `RELEASE append_audit`); relErr != nil && err == nil {
		err = fmt.Errorf("store: append audit entry: %w", relErr)
	}
	if err != nil {
		return 0, err
	}
	return idx, nil
}

func (w writer) appendAudit(ctx context.Context, e AuditEntry) (uint64, error) {
	var idx int64
	err := w.q.QueryRowContext(ctx, `INSERT INTO audit_entries (idx, data, leaf_hash, created_at)
		SELECT coalesce(max(idx) + 1, 0), ?, ?, ? FROM audit_entries RETURNING idx`,
		e.Data, e.LeafHash, micros(e.CreatedAt)).Scan(&idx)
	if err != nil {
		return 0, fmt.Errorf("store: append audit entry: %w", classify(err))
	}
	for _, k := range e.Keys {
		if _, err := w.q.ExecContext(ctx, `INSERT INTO audit_keys (key, idx) VALUES (?, ?)`, k, idx); err != nil {
			return 0, fmt.Errorf("store: append audit entry %d: key %q: %w", idx, k, classify(err))
		}
	}
	if err := w.putAuditNodes(ctx, uint64(idx)); err != nil {
		return 0, fmt.Errorf("store: append audit entry %d: %w", idx, err)
	}
	return uint64(idx), nil
}

func (w writer) PutCheckpoint(ctx context.Context, size uint64, note []byte) error {
	if len(note) == 0 {
		return fmt.Errorf("store: put audit checkpoint %d: empty note", size)
	}
	n, err := reader(w).AuditSize(ctx)
	if err != nil {
		return err
	}
	if size > n {
		return fmt.Errorf("store: put audit checkpoint %d: the log has %d entries: %w", size, n, ErrNotFound)
	}
	res, err := w.q.ExecContext(ctx, `INSERT INTO audit_checkpoints (size, note, created_at)
		VALUES (?, ?, ?) ON CONFLICT (size) DO NOTHING`, int64(size), note, micros(time.Now()))
	if err != nil {
		return fmt.Errorf("store: put audit checkpoint %d: %w", size, classify(err))
	}
	inserted, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: put audit checkpoint %d: %w", size, err)
	}
	if inserted == 1 {
		return nil
	}
	var old []byte
	err = w.q.QueryRowContext(ctx, `SELECT note FROM audit_checkpoints WHERE size = ?`, int64(size)).Scan(&old)
	if err != nil {
		return fmt.Errorf("store: put audit checkpoint %d: %w", size, err)
	}
	if !bytes.Equal(old, note) {
		return fmt.Errorf("store: put audit checkpoint %d: another note is stored: %w", size, ErrConflict)
	}
	return nil
}

func (s *sqliteStore) AppendAudit(ctx context.Context, e AuditEntry) (idx uint64, err error) {
	err = s.Tx(ctx, func(tx Tx) error { idx, err = tx.AppendAudit(ctx, e); return err })
	return idx, err
}

func (s *sqliteStore) PutCheckpoint(ctx context.Context, size uint64, note []byte) error {
	return s.Tx(ctx, func(tx Tx) error { return tx.PutCheckpoint(ctx, size, note) })
}

// AuditLog is the audit log of a Store or a Tx, with the method set of
// the audit package's Storage and CheckpointLister.
type AuditLog struct {
	rw interface {
		Reader
		Writer
	}
}

// AuditStorage returns the audit log of st, a Store or a Tx.
func AuditStorage(st interface {
	Reader
	Writer
}) AuditLog {
	return AuditLog{st}
}

// auditStorage is the audit package's Storage, which this package does not
// import.
type auditStorage interface {
	Size(ctx context.Context) (uint64, error)
	LeafHashes(ctx context.Context, start, end uint64) ([][]byte, error)
	Entries(ctx context.Context, start, end uint64) ([][]byte, error)
	LatestCheckpoint(ctx context.Context) ([]byte, error)
	PutCheckpoint(ctx context.Context, size uint64, note []byte) error
}

// auditCheckpointLister is the audit package's optional CheckpointLister.
type auditCheckpointLister interface {
	Checkpoints(ctx context.Context) ([][]byte, error)
}

// auditNodeHashReader is the audit package's optional NodeHashReader.
type auditNodeHashReader interface {
	NodeHashes(ctx context.Context, level uint, start, end uint64) ([][]byte, error)
}

var (
	_ auditStorage          = AuditLog{}
	_ auditCheckpointLister = AuditLog{}
	_ auditNodeHashReader   = AuditLog{}
)

// Size is AuditSize.
func (l AuditLog) Size(ctx context.Context) (uint64, error) { return l.rw.AuditSize(ctx) }

// LeafHashes is AuditLeafHashes.
func (l AuditLog) LeafHashes(ctx context.Context, start, end uint64) ([][]byte, error) {
	return l.rw.AuditLeafHashes(ctx, start, end)
}

// NodeHashes is AuditNodeHashes.
func (l AuditLog) NodeHashes(ctx context.Context, level uint, start, end uint64) ([][]byte, error) {
	return l.rw.AuditNodeHashes(ctx, level, start, end)
}

// Entries is AuditEntries.
func (l AuditLog) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	return l.rw.AuditEntries(ctx, start, end)
}

// LatestCheckpoint is the Store's LatestCheckpoint.
func (l AuditLog) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	return l.rw.LatestCheckpoint(ctx)
}

// PutCheckpoint is the Store's PutCheckpoint.
func (l AuditLog) PutCheckpoint(ctx context.Context, size uint64, note []byte) error {
	return l.rw.PutCheckpoint(ctx, size, note)
}

// Checkpoints returns the notes of the stored checkpoints, smallest size
// first.
func (l AuditLog) Checkpoints(ctx context.Context) ([][]byte, error) {
	cs, err := l.rw.Checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	notes := make([][]byte, len(cs))
	for i, c := range cs {
		notes[i] = c.Note
	}
	return notes, nil
}
