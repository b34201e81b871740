package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/sigil-dev/sigil/internal/store"
)

// Group commit.
//
// With synchronous=FULL every SQLite commit is an fsync, and the one writer
// connection commits one transaction at a time: about 2000 transactions a
// second however many callers wait. So Tx calls that find the writer busy
// queue up, and a committer goroutine runs up to maxBatch of them in one
// transaction, each fn in a savepoint:
//
//	BEGIN IMMEDIATE
//	SAVEPOINT fn; fn₁; RELEASE fn                      fn₁ returned nil
//	SAVEPOINT fn; fn₂; ROLLBACK TO fn; RELEASE fn      fn₂ failed, alone
//	…
//	COMMIT                                             one fsync for all
//
// fn runs on its caller's goroutine: the committer hands the caller the
// transaction and waits for fn to end, so a panic (or runtime.Goexit)
// unwinds the caller's own stack, and the committer only rolls back to the
// savepoint. There is no timer: a batch is what is queued when the
// committer starts it and what queues while its fns run, up to maxBatch,
// and the calls that arrive during one batch's COMMIT make up the next. A
// Tx that finds the committer idle yields once (so that goroutines already
// runnable can queue behind it) and runs alone on its own goroutine,
// without a savepoint or a hand-over, and the calls that queue meanwhile
// start the committer when it is done.
//
// The transaction's context is not a caller's: a caller's ctx ending must
// not undo the others' work. SQLite undoes the whole transaction when a
// write statement is interrupted, which is how the driver honours a
// cancelled context; batchQuerier therefore detaches fn's statements from
// their context, and Tx checks ctx before and after fn instead.

// txCall states.
const (
	callQueued int32 = iota
	callClaimed
	callAbandoned
)

// txCall is one Store.Tx call queued for, or running in, a batch.
type txCall struct {
	ctx   context.Context
	state atomic.Int32
	turn  chan turn  // committer → caller: run fn in this transaction, or why not
	ran   chan error // caller → committer: fn's outcome, errPanicked if it did not return
	done  chan error // committer → caller: Store.Tx's result, once the batch has ended
	// revoked: fn returned nil having recorded revocation events (set
	// before ran is sent).
	revoked bool
}

type turn struct {
	tx  *txLocal
	err error
}

// errPanicked is the outcome of an fn that panicked or called
// runtime.Goexit.
var errPanicked = errors.New("store: fn did not return")

func newTxCall(ctx context.Context) *txCall {
	return &txCall{ctx: ctx, turn: make(chan turn, 1), ran: make(chan error, 1), done: make(chan error, 1)}
}

// await waits for c's turn. It returns ctx.Err() if ctx ends first; then
// fn will not run.
func (c *txCall) await() (*txLocal, error) {
	select {
	case t := <-c.turn:
		return t.tx, t.err
	case <-c.ctx.Done():
		if c.state.CompareAndSwap(callQueued, callAbandoned) {
			return nil, c.ctx.Err()
		}
		t := <-c.turn // claimed meanwhile; run reports ctx.Err()
		return t.tx, t.err
	}
}

// run runs fn in tx, unless ctx has ended, and reports the outcome. If fn
// panics, run waits for the batch to end, so that fn's writes are undone,
// and lets the panic go on.
func (c *txCall) run(tx *txLocal, stmts *txStmts, fn func(store.Tx) error) {
	q := newBatchQuerier(tx, stmts)
	outcome := errPanicked
	defer func() {
		q.close()
		c.ran <- outcome
		if outcome == errPanicked {
			<-c.done
		}
	}()
	err := c.ctx.Err()
	if err == nil {
		err = fn(txn{reader{q}, writer{q}})
	}
	if err == nil {
		err = c.ctx.Err()
	}
	outcome, c.revoked = err, err == nil && q.revoked
}

// claim takes c into a batch unless its caller gave up.
func (c *txCall) claim() bool { return c.state.CompareAndSwap(callQueued, callClaimed) }

// committer runs Tx calls on db: one alone when it is idle, else queued,
// in batches, one batch at a time, from a goroutine that lives while there
// are calls to run.
type committer struct {
	db       *sql.DB
	stmts    *txStmts // on db
	maxBatch int
	// revoked, if set, is called after each COMMIT of revocation events
	// (notify.go): once per transaction, alone or batched.
	revoked func()
	// committed, if set, is called after each COMMIT (checkpoint.go).
	committed func()
	// stats counts transactions and the calls they ran.
	stats commitStats

	mu      sync.Mutex
	queue   []*txCall
	running bool
	// queued is closed, and replaced, when a call joins the queue: the
	// tests wait on it for calls to queue.
	queued chan struct{}
}

func newCommitter(db *sql.DB, maxBatch int) *committer {
	return &committer{db: db, stmts: newTxStmts(db), maxBatch: maxBatch, queued: make(chan struct{})}
}

// enter takes the committer for a Tx that is to run alone, and returns
// nil, if it is idle; else it queues a call for ctx and returns it. While
// the committer runs, alone or in batches, it starts the next batch itself.
func (g *committer) enter(ctx context.Context) *txCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.running { // and so the queue is empty
		g.running = true
		return nil
	}
	c := newTxCall(ctx)
	g.queue = append(g.queue, c)
	close(g.queued)
	g.queued = make(chan struct{})
	return c
}

// leave ends a Tx that ran alone: it starts a batch of the calls queued
// meanwhile, or marks the committer idle.
func (g *committer) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		g.running = false
		return
	}
	go g.loop()
}

// alone runs fn in a transaction of its own.
func (g *committer) alone(ctx context.Context, fn func(store.Tx) error) error {
	tx, err := g.begin()
	if err != nil {
		return err
	}
	q := newBatchQuerier(newTxLocal(tx), g.stmts)
	defer func() {
		q.close()
		tx.Rollback() // after a panic; else a no-op
	}()
	err = ctx.Err() // BEGIN may have waited for another process
	if err == nil {
		err = fn(txn{reader{q}, writer{q}})
	}
	if err == nil {
		err = ctx.Err()
	}
	q.close()
	if err != nil {
		if rbErr := tx.Rollback(); rbErr != nil {
			return errors.Join(err, fmt.Errorf("store: rollback: %w", rbErr))
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", classify(err))
	}
	g.stats.alone.Add(1)
	g.afterCommit(q.revoked)
	return nil
}

// afterCommit calls the hooks of a COMMIT, which included revocation
// events if revoked.
func (g *committer) afterCommit(revoked bool) {
	if revoked && g.revoked != nil {
		g.revoked()
	}
	if g.committed != nil {
		g.committed()
	}
}

// commitStats counts what the committer ran: Tx calls run alone, batches,
// and the calls the batches ran. The store's metrics and the benchmarks
// report them (mean batch size); they cost an atomic add per transaction.
type commitStats struct {
	alone, batches, batched atomic.Int64
}

// begin prepares the statements queued since the last transaction, while
// the connection is free, and begins a transaction.
func (g *committer) begin() (*sql.Tx, error) {
	g.stmts.prepare(context.Background())
	tx, err := g.db.BeginTx(context.Background(), nil)
	if err != nil {
		return nil, fmt.Errorf("store: begin: %w", err)
	}
	return tx, nil
}

func (g *committer) loop() {
	for batch := g.take(); batch != nil; batch = g.take() {
		g.commit(batch)
	}
}

// take removes up to maxBatch calls from the queue, dropping abandoned
// ones. It returns nil, and marks the committer idle, when the queue is
// empty.
func (g *committer) take() []*txCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	var batch []*txCall
	n := 0
	for ; n < len(g.queue) && len(batch) < g.maxBatch; n++ {
		if c := g.queue[n]; c.state.Load() == callQueued {
			batch = append(batch, c)
		}
	}
	g.queue = slices.Delete(g.queue, 0, n)
	if batch == nil {
		g.running = false
	}
	return batch
}

// requeue puts calls a batch did not get to back at the head of the queue.
func (g *committer) requeue(calls []*txCall) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.queue = append(slices.Clone(calls), g.queue...)
}

// commit runs one batch.
func (g *committer) commit(calls []*txCall) {
	tx, err := g.begin()
	if err != nil {
		for _, c := range calls {
			if c.claim() {
				c.turn <- turn{err: err}
			}
		}
		return
	}
	local := newTxLocal(tx)
	b := &batch{tx: tx, local: local, q: newBatchQuerier(local, g.stmts)}
	for taken := len(calls); len(calls) > 0; taken += len(calls) {
		for i, c := range calls {
			if !c.claim() {
				continue
			}
			if err := b.run(c); err != nil {
				g.requeue(calls[i+1:])
				b.abort(err)
				return
			}
		}
		calls = g.more(g.maxBatch - taken)
	}
	b.end(g)
}

// more removes up to n calls queued while a batch ran its fns, for the
// same batch: they share its COMMIT instead of waiting for it and paying
// their own. They arrived after the batch began; it commits once nothing
// more has queued, or it holds maxBatch calls.
func (g *committer) more(n int) []*txCall {
	if n <= 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var calls []*txCall
	k := 0
	for ; k < len(g.queue) && len(calls) < n; k++ {
		if c := g.queue[k]; c.state.Load() == callQueued {
			calls = append(calls, c)
		}
	}
	g.queue = slices.Delete(g.queue, 0, k)
	return calls
}

// batch is one database transaction shared by Tx calls.
type batch struct {
	tx       *sql.Tx
	local    *txLocal      // tx's statements, shared by its fns
	q        *batchQuerier // for the savepoints
	ran      []*txCall     // whose fn ran, or was refused for its ctx
	outcomes []error
	commits  bool // some fn returned nil
	revoked  bool // and one of them recorded revocation events
}

// run gives c its turn in a savepoint. An error means the transaction can
// no longer be trusted.
func (b *batch) run(c *txCall) error {
	if err := b.exec(`SAVEPOINT fn`); err != nil {
		c.turn <- turn{err: fmt.Errorf("store: begin: savepoint: %w", err)}
		return err
	}
	c.turn <- turn{tx: b.local}
	outcome := <-c.ran
	b.ran, b.outcomes = append(b.ran, c), append(b.outcomes, outcome)
	if outcome != nil {
		// Fails if SQLite has undone the whole transaction already (after
		// SQLITE_FULL, SQLITE_IOERR…): then no savepoint is left.
		if err := b.exec(`ROLLBACK TO fn`); err != nil {
			return fmt.Errorf("rollback to savepoint: %w", err)
		}
	} else {
		b.commits, b.revoked = true, b.revoked || c.revoked
	}
	if err := b.exec(`RELEASE fn`); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	return nil
}

// exec runs one of the batch's own statements.
func (b *batch) exec(query string) error {
	_, err := b.q.ExecContext(context.Background(), query)
	return err
}

// end commits the batch, or rolls it back if no fn succeeded, and gives
// every caller its result, calling g's hooks first (afterCommit) if it
// committed.
func (b *batch) end(g *committer) {
	var commitErr, rollbackErr error
	if b.commits {
		if err := b.tx.Commit(); err != nil {
			commitErr = fmt.Errorf("store: commit: %w", classify(err))
		} else {
			g.stats.batches.Add(1)
			g.stats.batched.Add(int64(len(b.ran)))
			g.afterCommit(b.revoked)
		}
	} else if err := b.tx.Rollback(); err != nil {
		rollbackErr = fmt.Errorf("store: rollback: %w", err)
	}
	for i, c := range b.ran {
		switch {
		case commitErr != nil:
			c.done <- commitErr
		case rollbackErr != nil:
			c.done <- errors.Join(b.outcomes[i], rollbackErr)
		default:
			c.done <- b.outcomes[i]
		}
	}
}

// abort rolls the batch back after err and fails every caller whose fn ran.
func (b *batch) abort(err error) {
	err = fmt.Errorf("store: transaction failed: %w", err)
	if rbErr := b.tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
		err = errors.Join(err, fmt.Errorf("store: rollback: %w", rbErr))
	}
	for _, c := range b.ran {
		c.done <- err
	}
}

// batchQuerier runs one fn's statements in its batch's transaction, from
// when fn starts until it returns, prepared when stmts has them. A
// statement runs to its end even if its context ends meanwhile (an
// interrupted write would undo the whole batch); one started after its
// context ended fails with the context's error.
type batchQuerier struct {
	tx      *sql.Tx
	local   *txLocal // tx's handles of stmts' statements
	stmts   *txStmts
	mu      sync.RWMutex // read-locked by statements, locked by close
	closed  bool
	revoked bool // fn recorded revocation events (appendRevocations)
}

var _ querier = (*batchQuerier)(nil)

func newBatchQuerier(tx *txLocal, stmts *txStmts) *batchQuerier {
	return &batchQuerier{tx: tx.tx, local: tx, stmts: stmts}
}

// start read-locks q for a statement and returns the statement's context,
// or unlocks and fails.
func (q *batchQuerier) start(ctx context.Context) (context.Context, error) {
	q.mu.RLock()
	err := ctx.Err()
	if q.closed {
		err = sql.ErrTxDone
	}
	if err != nil {
		q.mu.RUnlock()
		return nil, err
	}
	return context.WithoutCancel(ctx), nil
}

func (q *batchQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	sctx, err := q.start(ctx)
	if err != nil {
		return nil, err
	}
	defer q.mu.RUnlock()
	if st := q.stmts.stmt(sctx, q.local, query); st != nil {
		return st.ExecContext(sctx, args...)
	}
	return q.tx.ExecContext(sctx, query, args...)
}

func (q *batchQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	sctx, err := q.start(ctx)
	if err != nil {
		return nil, err
	}
	defer q.mu.RUnlock()
	if st := q.stmts.stmt(sctx, q.local, query); st != nil {
		return st.QueryContext(sctx, args...)
	}
	return q.tx.QueryContext(sctx, query, args...)
}

func (q *batchQuerier) QueryRowContext(ctx context.Context, query string, args ...any) scanner {
	sctx, err := q.start(ctx)
	if err != nil {
		return errRow{err}
	}
	defer q.mu.RUnlock()
	if st := q.stmts.stmt(sctx, q.local, query); st != nil {
		return st.QueryRowContext(sctx, args...)
	}
	return q.tx.QueryRowContext(sctx, query, args...)
}

// close ends q: fn has returned, and a Tx it leaked must not write into
// the rest of the batch.
func (q *batchQuerier) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

// errRow is a row that failed before its query ran.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
