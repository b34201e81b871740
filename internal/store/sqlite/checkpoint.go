package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// WAL checkpoints, off the request path.
//
// In WAL mode a COMMIT appends the pages it changed to the -wal file; a
// checkpoint copies them back into the database file and fsyncs it, after
// which the next COMMIT may start the WAL over from its beginning. By
// default SQLite checkpoints inside the COMMIT that takes the WAL past
// 1000 pages (wal_autocheckpoint): one batch in a few dozen then holds the
// writer while about 4 MB are copied and two files fsynced, and every Tx
// queued behind it waits — a tail latency of every exchange in flight.
//
// So the writer connection does not checkpoint (wal_autocheckpoint=0),
// and a checkpointer goroutine does, on a connection of its own:
//
//   - every cfg.frames pages or so (counted in commits, with the
//     pages per commit it measured), a PASSIVE checkpoint: it copies what
//     readers no longer need while the writer goes on committing, and
//     never waits for a lock;
//   - when the WAL has grown past cfg.restart frames nonetheless (the writer
//     committed during every checkpoint, so none found the WAL fully
//     copied, and the WAL cannot start over while frames are left), one
//     more PASSIVE checkpoint inside a Store.Tx: the writer is held by the
//     group committer, not by a lock SQLite's busy handler would poll,
//     while the few frames committed since the last checkpoint are copied,
//     and the COMMIT after it starts the WAL over;
//   - after a quiet cfg.idle, a TRUNCATE checkpoint, which empties the WAL
//     file.
//
// A checkpoint that fails is retried on the next kick (stats.failed
// counts them, and the store's metrics show them: metrics.go); the WAL
// grows meanwhile, as it would with SQLite's own checkpoints failing. The
// durability of a COMMIT does not depend on checkpoints: it is the WAL's
// fsync (synchronous=FULL); the checkpointer's connection has the DSN's
// synchronous setting, with which SQLite fsyncs the database file before
// the WAL may start over.

// checkpointBusyMS bounds how long the quiet-time TRUNCATE waits for the
// writer or readers before it gives up until the next quiet spell.
const checkpointBusyMS = 20

// heldPause is the least time between two checkpoints that hold the
// writer while the WAL has not grown by a quarter of cfg.frames.
const heldPause = 10 * time.Millisecond

// checkpointConfig is when the checkpointer checkpoints.
type checkpointConfig struct {
	frames  int64         // about this many new frames: PASSIVE
	restart int64         // this many frames in the WAL: PASSIVE with the writer held
	idle    time.Duration // no commit for this long: TRUNCATE
}

// defaultCheckpoints: every 1000 frames, SQLite's default
// wal_autocheckpoint, with the WAL started over once it holds 4000 (16 MB
// of 4 KiB pages).
var defaultCheckpoints = checkpointConfig{frames: 1000, restart: 4000, idle: time.Second}

// checkpointer runs the WAL checkpoints of one store.
type checkpointer struct {
	cfg  checkpointConfig
	conn *sql.Conn // of its own pool, so that closing it closes the connection
	db   *sql.DB
	// tx runs fn with the writer held (Store.Tx).
	tx func(ctx context.Context, fn func(store.Tx) error) error

	commits atomic.Int64 // since the last checkpoint
	total   atomic.Int64 // since Open
	every   atomic.Int64 // commits between checkpoints
	kick    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	// Of the loop's goroutine.
	lastLog int64 // frames in the WAL after the last checkpoint
	// heldLog and heldAt: frames in the WAL when a checkpoint last held the
	// writer (0 once the WAL has started over since), and when. A reader
	// (of this process or another) that pins the WAL keeps it from starting
	// over however often the writer is held, and the held checkpoint's own
	// COMMIT counts as a commit and kicks the checkpointer again: without
	// a pause, it would hold the writer back to back for as long as the
	// reader lasted. So it holds again only once the WAL has grown by a
	// quarter of cfg.frames or heldPause has passed.
	heldLog int64
	heldAt  time.Time
	stats   checkpointStats
}

// checkpointStats counts checkpoints by kind, for the store's metrics,
// tests and benchmarks.
type checkpointStats struct {
	passive, held, truncate, failed atomic.Int64
	frames                          atomic.Int64 // WAL frames the PASSIVE checkpoints found new, about all written
	walFrames                       atomic.Int64 // frames in the WAL at the last checkpoint
}

// walState is what PRAGMA wal_checkpoint reports.
type walState struct {
	busy         bool  // the checkpoint could not run to its end
	log          int64 // frames in the WAL
	checkpointed int64 // of which copied into the database file
}

// newCheckpointer opens db's checkpointing connection and starts the
// checkpointer; tx is the store's Tx.
func newCheckpointer(ctx context.Context, cfg checkpointConfig, db *sql.DB, tx func(context.Context, func(store.Tx) error) error) (*checkpointer, error) {
	conn, err := db.Conn(ctx)
	if err == nil {
		_, err = conn.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, checkpointBusyMS))
		if err != nil {
			conn.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite checkpointer: %w", err)
	}
	c := &checkpointer{cfg: cfg, conn: conn, db: db, tx: tx, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	c.every.Store(max(cfg.frames/64, 1))
	c.wg.Add(1)
	go c.loop()
	return c, nil
}

// committed counts one COMMIT, and wakes the checkpointer every so many.
// The committer calls it; it does not block.
func (c *checkpointer) committed() {
	c.total.Add(1)
	if c.commits.Add(1) >= c.every.Load() {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

func (c *checkpointer) loop() {
	defer c.wg.Done()
	tick := time.NewTicker(c.cfg.idle)
	defer tick.Stop()
	seen := int64(0) // commits at the last tick
	for {
		select {
		case <-c.stop:
			return
		case <-c.kick:
			c.checkpoint()
		case <-tick.C:
			total := c.total.Load()
			switch {
			case c.commits.Load() > 0:
				c.checkpoint()
			case total == seen && c.lastLog > 0: // a quiet second
				c.truncate()
			}
			seen = total
		}
	}
}

// checkpoint runs a PASSIVE checkpoint and, if the WAL is too long for
// want of one that found it all copied, another with the writer held.
func (c *checkpointer) checkpoint() {
	commits := c.commits.Swap(0)
	st, err := c.run(context.Background(), "PASSIVE")
	if err != nil {
		return
	}
	c.stats.passive.Add(1)
	c.adapt(commits, st)
	if st.log < c.heldLog { // the WAL started over
		c.heldLog = 0
	}
	if st.log < c.cfg.restart {
		return
	}
	if c.heldLog > 0 && st.log < c.heldLog+c.cfg.frames/4 && time.Since(c.heldAt) < heldPause {
		return // held for already, just now
	}
	err = c.tx(context.Background(), func(store.Tx) error {
		st, err = c.run(context.Background(), "PASSIVE")
		return err
	})
	if err == nil {
		c.stats.held.Add(1)
		c.lastLog = st.log
		c.heldLog, c.heldAt = max(st.log, 1), time.Now()
	}
}

// adapt sets how many commits to wait for before the next checkpoint, so
// that it finds about cfg.frames new frames: commits made st.log -
// lastLog of them (st.log, if the WAL started over meanwhile).
func (c *checkpointer) adapt(commits int64, st walState) {
	frames := st.log - c.lastLog
	if st.log < c.lastLog {
		frames = st.log
	}
	c.lastLog = st.log
	c.stats.frames.Add(max(frames, 0))
	if commits <= 0 || frames <= 0 {
		return
	}
	every := c.cfg.frames * commits / frames
	c.every.Store(min(max(every, 1), 1024))
}

// truncate empties the WAL file once nothing is committing, giving up
// after checkpointBusyMS if the writer or a reader is busy.
func (c *checkpointer) truncate() {
	st, err := c.run(context.Background(), "TRUNCATE")
	if err == nil && !st.busy {
		c.stats.truncate.Add(1)
		c.lastLog = st.log
	}
}

// run runs PRAGMA wal_checkpoint(mode) on c's connection.
func (c *checkpointer) run(ctx context.Context, mode string) (walState, error) {
	var st walState
	var busy int
	err := c.conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(`+mode+`)`).Scan(&busy, &st.log, &st.checkpointed)
	if err != nil {
		c.stats.failed.Add(1)
		return walState{}, fmt.Errorf("store: wal checkpoint (%s): %w", mode, err)
	}
	st.busy = busy != 0
	c.stats.walFrames.Store(st.log)
	return st, nil
}

// close stops the checkpointer and closes its connection; again, it does
// nothing.
func (c *checkpointer) close() error {
	c.closeOnce.Do(func() {
		close(c.stop)
		c.wg.Wait()
		c.closeErr = errors.Join(c.conn.Close(), c.db.Close())
	})
	return c.closeErr
}
