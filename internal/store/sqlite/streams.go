package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sigil-dev/sigil/internal/store"
)

const streamColumns = `id, receiver, config, created_at, cursor, delivered, acked,
	verification_id, verification_state, verification_done`

// Stream reads one stream.
func (r reader) Stream(ctx context.Context, id string) (store.Stream, error) {
	s, err := scanStream(r.q.QueryRowContext(ctx, `SELECT `+streamColumns+` FROM ssf_streams WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Stream{}, fmt.Errorf("store: stream %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Stream{}, fmt.Errorf("store: stream %q: %w", id, err)
	}
	return s, nil
}

// Streams lists the streams by id.
func (r reader) Streams(ctx context.Context) ([]store.Stream, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT `+streamColumns+` FROM ssf_streams ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: streams: %w", err)
	}
	ss, err := scanAll(rows, scanStream)
	if err != nil {
		return nil, fmt.Errorf("store: streams: %w", err)
	}
	return ss, nil
}

// LockStream reads the stream: SQLite runs one write transaction at a
// time, so the Tx holds it until it ends.
func (w writer) LockStream(ctx context.Context, id string) (store.Stream, error) {
	return reader(w).Stream(ctx, id)
}

// CreateStream inserts s unless its receiver has limit streams: one
// statement, which counts and inserts in one step.
func (w writer) CreateStream(ctx context.Context, s store.Stream, limit int) error {
	if err := s.Check(); err != nil {
		return fmt.Errorf("store: create stream %q: %w", s.ID, err)
	}
	if limit <= 0 {
		return fmt.Errorf("store: create stream %q: limit %d, want at least 1", s.ID, limit)
	}
	acked, _ := json.Marshal(orEmpty(s.Acked))
	res, err := w.q.ExecContext(ctx, `INSERT INTO ssf_streams (`+streamColumns+`)
		SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE (SELECT count(*) FROM ssf_streams WHERE receiver = ?) < ?`,
		s.ID, s.Receiver, string(s.Config), micros(s.CreatedAt), int64(s.Cursor), int64(s.Delivered), string(acked),
		int64(s.VerificationID), s.VerificationState, int64(s.VerificationDone), s.Receiver, limit)
	if err != nil {
		return fmt.Errorf("store: create stream %q: %w", s.ID, classify(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: create stream %q: %w", s.ID, err)
	} else if n == 0 {
		return fmt.Errorf("store: create stream %q: receiver %q already has %d streams, the most allowed: %w", s.ID, s.Receiver, limit, store.ErrLimit)
	}
	return nil
}

// UpdateStream replaces the stream's mutable columns.
func (w writer) UpdateStream(ctx context.Context, s store.Stream) error {
	if err := s.Check(); err != nil {
		return fmt.Errorf("store: update stream %q: %w", s.ID, err)
	}
	acked, _ := json.Marshal(orEmpty(s.Acked))
	res, err := w.q.ExecContext(ctx, `UPDATE ssf_streams SET config = ?, cursor = ?, delivered = ?, acked = ?,
		verification_id = ?, verification_state = ?, verification_done = ? WHERE id = ?`,
		string(s.Config), int64(s.Cursor), int64(s.Delivered), string(acked),
		int64(s.VerificationID), s.VerificationState, int64(s.VerificationDone), s.ID)
	if err != nil {
		return fmt.Errorf("store: update stream %q: %w", s.ID, classify(err))
	}
	return affectedOne(res, "update stream", s.ID)
}

// DeleteStream deletes the stream.
func (w writer) DeleteStream(ctx context.Context, id string) error {
	res, err := w.q.ExecContext(ctx, `DELETE FROM ssf_streams WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("store: delete stream %q: %w", id, err)
	}
	return affectedOne(res, "delete stream", id)
}

func affectedOne(res sql.Result, op, id string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: %s %q: %w", op, id, err)
	}
	if n == 0 {
		return fmt.Errorf("store: %s %q: %w", op, id, store.ErrNotFound)
	}
	return nil
}

func scanStream(s scanner) (store.Stream, error) {
	var st store.Stream
	var config, acked string
	var at, cursor, delivered, vid, vdone int64
	if err := s.Scan(&st.ID, &st.Receiver, &config, &at, &cursor, &delivered, &acked, &vid, &st.VerificationState, &vdone); err != nil {
		return store.Stream{}, err
	}
	if err := json.Unmarshal([]byte(acked), &st.Acked); err != nil {
		return store.Stream{}, fmt.Errorf("acked of stream %q: %w", st.ID, err)
	}
	if len(st.Acked) == 0 {
		st.Acked = nil
	}
	st.Config, st.CreatedAt = []byte(config), fromMicros(at)
	st.Cursor, st.Delivered, st.VerificationID, st.VerificationDone = uint64(cursor), uint64(delivered), uint64(vid), uint64(vdone)
	return st, nil
}

func orEmpty(s []uint64) []uint64 {
	if s == nil {
		return []uint64{}
	}
	return s
}
