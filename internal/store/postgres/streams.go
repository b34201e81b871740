package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sigil-dev/sigil/internal/store"
)

// streamsLock prefixes the name of the advisory lock (transaction level)
// that CreateStream takes per receiver.
const streamsLock = "sigil/ssf-streams/"

const streamColumns = `id, receiver, config, created_at, cursor, delivered, acked,
	verification_id, verification_state, verification_done`

// Stream reads one stream.
func (r reader) Stream(ctx context.Context, id string) (store.Stream, error) {
	return r.stream(ctx, id, "")
}

func (r reader) stream(ctx context.Context, id, lock string) (store.Stream, error) {
	s, err := scanStream(r.q.QueryRow(ctx, `SELECT `+streamColumns+` FROM ssf_streams WHERE id = $1`+lock, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Stream{}, fmt.Errorf("store: stream %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Stream{}, fmt.Errorf("store: stream %q: %w", id, err)
	}
	return s, nil
}

// Streams lists the streams by id.
func (r reader) Streams(ctx context.Context) ([]store.Stream, error) {
	rows, err := r.q.Query(ctx, `SELECT `+streamColumns+` FROM ssf_streams ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: streams: %w", err)
	}
	ss, err := scanAll(rows, scanStream)
	if err != nil {
		return nil, fmt.Errorf("store: streams: %w", err)
	}
	return ss, nil
}

// LockStream reads the stream FOR UPDATE: the row lock is held until the
// transaction ends.
func (w writer) LockStream(ctx context.Context, id string) (store.Stream, error) {
	return w.reader().stream(ctx, id, " FOR UPDATE")
}

// CreateStream inserts s unless its receiver has limit streams. The
// transaction first takes an advisory lock of the receiver's, held until
// it ends, so that the count (read committed: a snapshot taken after the
// lock) sees every stream another replica's CreateStream of the receiver
// committed.
func (w writer) CreateStream(ctx context.Context, s store.Stream, limit int) error {
	if err := s.Check(); err != nil {
		return fmt.Errorf("store: create stream %q: %w", s.ID, err)
	}
	if limit <= 0 {
		return fmt.Errorf("store: create stream %q: limit %d, want at least 1", s.ID, limit)
	}
	if _, err := w.q.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, streamsLock+s.Receiver); err != nil {
		return fmt.Errorf("store: create stream %q: lock the receiver's streams: %w", s.ID, err)
	}
	var n int
	if err := w.q.QueryRow(ctx, `SELECT count(*) FROM ssf_streams WHERE receiver = $1`, s.Receiver).Scan(&n); err != nil {
		return fmt.Errorf("store: create stream %q: count the receiver's streams: %w", s.ID, err)
	}
	if n >= limit {
		return fmt.Errorf("store: create stream %q: receiver %q has %d streams, at most %d: %w", s.ID, s.Receiver, n, limit, store.ErrLimit)
	}
	acked, _ := json.Marshal(orEmpty(s.Acked))
	_, err := w.q.Exec(ctx, `INSERT INTO ssf_streams (`+streamColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		s.ID, s.Receiver, string(s.Config), micros(s.CreatedAt), int64(s.Cursor), int64(s.Delivered), string(acked),
		int64(s.VerificationID), s.VerificationState, int64(s.VerificationDone))
	if err != nil {
		return fmt.Errorf("store: create stream %q: %w", s.ID, classify(err))
	}
	return nil
}

// UpdateStream replaces the stream's mutable columns.
func (w writer) UpdateStream(ctx context.Context, s store.Stream) error {
	if err := s.Check(); err != nil {
		return fmt.Errorf("store: update stream %q: %w", s.ID, err)
	}
	acked, _ := json.Marshal(orEmpty(s.Acked))
	tag, err := w.q.Exec(ctx, `UPDATE ssf_streams SET config = $1, cursor = $2, delivered = $3, acked = $4,
		verification_id = $5, verification_state = $6, verification_done = $7 WHERE id = $8`,
		string(s.Config), int64(s.Cursor), int64(s.Delivered), string(acked),
		int64(s.VerificationID), s.VerificationState, int64(s.VerificationDone), s.ID)
	if err != nil {
		return fmt.Errorf("store: update stream %q: %w", s.ID, classify(err))
	}
	return affectedOne(tag, "update stream", s.ID)
}

// DeleteStream deletes the stream.
func (w writer) DeleteStream(ctx context.Context, id string) error {
	tag, err := w.q.Exec(ctx, `DELETE FROM ssf_streams WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("store: delete stream %q: %w", id, err)
	}
	return affectedOne(tag, "delete stream", id)
}

func affectedOne(tag pgconn.CommandTag, op, id string) error {
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: %s %q: %w", op, id, store.ErrNotFound)
	}
	return nil
}

func scanStream(s pgx.Row) (store.Stream, error) {
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
