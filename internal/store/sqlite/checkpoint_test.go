package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/testenv"
)

// walFrameBytes is the size of one WAL frame of a 4 KiB page.
const walFrameBytes = 24 + 4096

// walFrames reads how many frames db's WAL holds, copying none (a PASSIVE
// checkpoint on a connection whose database is otherwise idle would copy
// them: use it only before the store writes, or on a closed store's file).
func walFrames(t *testing.T, conn *sql.Conn) int64 {
	t.Helper()
	var busy, log, done int64
	if err := conn.QueryRowContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &done); err != nil {
		t.Fatal(err)
	}
	return log
}

// TestHoldCertificateWritesNothing: InsertToken's hold of a live
// certificate, run in every exchange, writes no page: a transaction of the
// hold alone commits no WAL frame. Setting revoked_at to itself, as before,
// rewrote an entry in each of the four partial indexes whose WHERE names
// revoked_at (3 pages here).
func TestHoldCertificateWritesNothing(t *testing.T) {
	t.Parallel()
	st, path := openStore(t)
	_, _, certs := enrolled(t, st, "hold", 1)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open(driverName, path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA wal_autocheckpoint = 0`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	if n := walFrames(t, conn); n != 0 {
		t.Fatalf("WAL holds %d frames after TRUNCATE", n)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := tx.ExecContext(ctx, holdCertificateQuery, certs[0].Thumbprint())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("hold matched %d rows (%v), want 1", n, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := walFrames(t, conn); n != 0 {
		t.Errorf("the hold of a certificate wrote %d pages, want none", n)
	}
}

// TestWALBounded: under continuous writes from several goroutines (and
// reads, and now and then a write through a second handle on the file, as
// sigild's operator commands make), the WAL file stays within the checkpointer's
// bound, though the writer never checkpoints; once writes stop, the
// quiet-time checkpoint empties it. Without the checkpointer it grows to
// every frame written (about 6,000 here).
func TestWALBounded(t *testing.T) {
	t.Parallel()
	cfg := checkpointConfig{frames: 100, restart: 400, idle: 50 * time.Millisecond}
	path := filepath.Join(t.TempDir(), "sigil.db")
	dsn := path + "?_pragma=synchronous(OFF)" // what is measured is pages, not fsyncs
	ctx := context.Background()
	open := func() *sqliteStore {
		st, err := Open(ctx, dsn, withCheckpoints(cfg))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st.(*sqliteStore)
	}
	st, other := open(), open()
	pad := strings.Repeat("x", 3000) // about a page per entry
	var maxWAL int64
	var mu sync.Mutex
	sample := func() {
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			return
		}
		mu.Lock()
		maxWAL = max(maxWAL, fi.Size())
		mu.Unlock()
	}
	const writers, perWriter = 4, 400
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				h := st
				if w == 0 && i%20 == 0 { // now and then, as an operator command does
					h = other
				}
				name := fmt.Sprintf("w%d-%d", w, i)
				if _, err := h.AppendAudit(ctx, testEntry(name+pad, "jti:"+name)); err != nil {
					t.Error(err)
					return
				}
				if _, err := st.AuditIndex(ctx, "jti:"+name); err != nil {
					t.Errorf("read back %s: %v", name, err)
					return
				}
				sample()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	n, err := st.AuditSize(ctx)
	if err != nil || n != writers*perWriter {
		t.Fatalf("AuditSize = %d, %v; want %d", n, err, writers*perWriter)
	}
	// Bound: the restart threshold, the frames committed while the held
	// checkpoint waits for its turn and while readers pin the WAL, and the
	// other handle's own — how many depends on how the goroutines
	// interleave (under -race, with other tests running, up to about 4×);
	// without the checkpointer the WAL holds every frame written (about
	// 18×).
	if bound := int64(8*cfg.restart) * walFrameBytes; maxWAL > bound {
		t.Errorf("the WAL grew to %d bytes (%d frames), want at most %d", maxWAL, maxWAL/walFrameBytes, bound)
	}
	// Whether a checkpoint had to hold the writer depends on how the
	// writers and the checkpointer interleave (TestHeldCheckpoint forces
	// it); passive ones there must be.
	stats := &st.ck.stats
	if stats.passive.Load() == 0 {
		t.Errorf("checkpoints: %d passive; want some", stats.passive.Load())
	}
	t.Cleanup(func() {
		if t.Failed() {
			for name, h := range map[string]*sqliteStore{"st": st, "other": other} {
				s := &h.ck.stats
				t.Logf("%s: %d passive, %d held, %d truncate, %d failed", name, s.passive.Load(), s.held.Load(), s.truncate.Load(), s.failed.Load())
			}
		}
	})
	testenv.WaitFor(t, 10*time.Second, "the quiet-time checkpoint to empty the WAL", func() bool {
		fi, err := os.Stat(path + "-wal")
		return err == nil && fi.Size() == 0
	})
	if f := stats.failed.Load(); f != 0 {
		t.Errorf("%d checkpoints failed", f)
	}
}

// TestHeldCheckpoint: a WAL past the restart threshold after a PASSIVE
// checkpoint gets one more with the writer held, after which the next
// COMMIT starts the WAL over: with a threshold of one frame, every
// checkpoint is followed by a held one, and the WAL never holds more than
// a few commits' frames.
func TestHeldCheckpoint(t *testing.T) {
	t.Parallel()
	cfg := checkpointConfig{frames: 1, restart: 1, idle: time.Hour}
	path := filepath.Join(t.TempDir(), "sigil.db")
	st, err := Open(t.Context(), path+"?_pragma=synchronous(OFF)", withCheckpoints(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := st.(*sqliteStore)
	for i := range 20 {
		name := fmt.Sprintf("e%d", i)
		if _, err := s.AppendAudit(t.Context(), testEntry(name, "jti:"+name)); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 10*time.Second, "a checkpoint with the writer held", func() bool {
		return s.ck.stats.held.Load() > 0
	})
	if f := s.ck.stats.failed.Load(); f != 0 {
		t.Errorf("%d checkpoints failed", f)
	}
}

// TestWriterDoesNotCheckpoint: the writer connection has
// wal_autocheckpoint off, and a DSN setting it is refused; closing the
// store still folds the WAL into the database file and removes it.
func TestWriterDoesNotCheckpoint(t *testing.T) {
	t.Parallel()
	st, path := openStore(t)
	var pages int
	err := st.Tx(context.Background(), func(tx store.Tx) error {
		return tx.(txn).writer.q.QueryRowContext(context.Background(), `PRAGMA wal_autocheckpoint`).Scan(&pages)
	})
	if err != nil || pages != 0 {
		t.Errorf("writer's wal_autocheckpoint = %d (%v), want 0", pages, err)
	}
	appendEntries(t, st, "close", 3)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); !os.IsNotExist(err) {
		t.Errorf("after Close, the WAL file: %v, want it removed", err)
	}
	st = openPath(t, path)
	if n, err := st.AuditSize(context.Background()); err != nil || n != 3 {
		t.Errorf("reopened: AuditSize = %d, %v; want 3", n, err)
	}
	dsn := filepath.Join(t.TempDir(), "sigil.db") + "?_pragma=wal_autocheckpoint(100)"
	if _, err := Open(context.Background(), dsn); err == nil || !strings.Contains(err.Error(), "wal_autocheckpoint") {
		t.Errorf("Open(%q) = %v, want an error naming wal_autocheckpoint", dsn, err)
	}
}
