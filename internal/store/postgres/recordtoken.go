package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sigil-dev/sigil/internal/store"
)

// RecordToken: one round trip, and group commit.
//
// A token exchange's write is InsertExternalToken (for an external subject
// token), InsertToken and AppendAudit: through Tx, with BEGIN and COMMIT,
// five round trips, the audit head locked for three of them and the WAL
// flush. RecordToken sends it as one pgx batch, which PostgreSQL runs as
// one implicit transaction (one Sync: all committed, or on an error all
// rolled back): the external token's INSERT … ON CONFLICT DO NOTHING,
// then sigil_record_token (migration 0009; 0012 its key check), which takes InsertToken's and
// AppendAudit's locks in their order, re-checks what they re-check, and
// returns a refusal instead of raising it, having written nothing.
//
// Because a refusal writes nothing and raises nothing, the records of
// concurrent calls can share the transaction, each isolated (the external
// tokens' INSERTs first, in jti order, then the records; a record in a
// batch of several locks its certificate and parent NOWAIT, see the
// migration): a call that finds another batch in flight queues, and the
// calls queued meanwhile go out as the next batch, up to maxRecordBatch,
// with one WAL flush for all; there is no timer. One batch is in flight per store at a time (the
// audit head serialises them in the database anyway). Indices stay dense
// and in commit order: they come from the audit head, as AppendAudit's.
//
// The tree nodes an entry completes are computed and stored by
// sigil_record_token too (sigil_subtree_hash, the audit package's
// SubtreeHash in SQL; the conformance suite checks them against it). On
// any error (a lock NOWAIT refused, the database gone), the whole batch
// has been rolled back, and each of its calls runs again alone through Tx
// (store.TokenRecord.In), which waits for locks and says precisely what
// failed.
//
// An external token whose record this store has committed before
// (store.KnownTokens) is not inserted again: sigil_record_token finds it
// as the parent, revoked or not. If it was purged since, by any replica,
// the outcome is "parent-missing", and the call runs again through Tx,
// which stores it.

// maxRecordBatch bounds the records committed in one transaction.
const maxRecordBatch = 64

// recordTimeout bounds one batch: it runs for several callers, on a
// context of its own.
const recordTimeout = 30 * time.Second

// recordCall is one RecordToken call, queued or in a batch.
type recordCall struct {
	ctx  context.Context
	r    store.TokenRecord
	done chan error // buffered: the batch never waits for the caller
}

// recorder queues RecordToken calls while a batch is in flight.
type recorder struct {
	mu    sync.Mutex
	busy  bool // a batch is in flight
	queue []*recordCall
}

// RecordToken stores r in one round trip, committed with the records of
// concurrent calls (see above). Returning nil means committed. If ctx
// ends while r's batch is in flight, RecordToken returns ctx.Err() at
// once, and r may still be committed: an error never means that nothing
// was stored, only that the token must not be returned.
func (s *pgStore) RecordToken(ctx context.Context, r store.TokenRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkRecord(r); err != nil {
		return err
	}
	c := &recordCall{ctx: ctx, r: r, done: make(chan error, 1)}
	s.rec.mu.Lock()
	if s.rec.busy {
		s.rec.queue = append(s.rec.queue, c)
		s.rec.mu.Unlock()
		select {
		case err := <-c.done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.rec.busy = true
	s.rec.mu.Unlock()
	s.recordBatch([]*recordCall{c})
	if next := s.nextRecords(); next != nil {
		go s.drainRecords(next)
	}
	return <-c.done
}

// nextRecords takes the next batch from the queue, or, when it is empty,
// marks the recorder idle and returns nil.
func (s *pgStore) nextRecords() []*recordCall {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	n := min(len(s.rec.queue), maxRecordBatch)
	if n == 0 {
		s.rec.busy = false
		return nil
	}
	next := s.rec.queue[:n:n]
	s.rec.queue = s.rec.queue[n:]
	if len(s.rec.queue) == 0 {
		s.rec.queue = nil
	}
	return next
}

// drainRecords runs batches until the queue is empty.
func (s *pgStore) drainRecords(calls []*recordCall) {
	for ; calls != nil; calls = s.nextRecords() {
		s.recordBatch(calls)
	}
}

// recordBatch stores the records of calls in one transaction and tells
// each call its outcome. Calls whose ctx has ended are left out.
func (s *pgStore) recordBatch(calls []*recordCall) {
	live := make([]*recordCall, 0, len(calls))
	for _, c := range calls {
		if err := c.ctx.Err(); err != nil {
			c.done <- err
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	inserts := s.inserts(live)
	outcomes, err := s.sendRecords(ctx, live, inserts)
	if err != nil {
		// Rolled back, all of it (or, if the connection failed after
		// the commit, committed: then Tx finds the jti taken, and the
		// token is not returned): each alone, through Tx.
		for _, c := range live {
			c.done <- s.Tx(c.ctx, func(tx store.Tx) error { return c.r.In(c.ctx, tx) })
		}
		return
	}
	for i, c := range live {
		x, what := c.r.External, outcomeName(outcomes[i])
		switch {
		case x == nil:
		case what == "ok":
			s.known.Add(*x)
		case what == "parent-missing" && !inserts[i]:
			// Known, but purged since (by any replica): store it again.
			s.known.Forget(x.JTI)
			c.done <- s.Tx(c.ctx, func(tx store.Tx) error { return c.r.In(c.ctx, tx) })
			continue
		}
		c.done <- outcomeErr(c.r.Token, outcomes[i])
	}
}

// inserts tells, for each of calls, whether its batch is to insert its
// external token: it has one, not known to be stored (store.KnownTokens).
func (s *pgStore) inserts(calls []*recordCall) []bool {
	ins := make([]bool, len(calls))
	for i, c := range calls {
		ins[i] = c.r.External != nil && !s.known.Known(c.r.External.JTI)
	}
	return ins
}

// sendRecords sends the records of calls as one batch, one implicit
// transaction, and returns sigil_record_token's outcome for each. It
// inserts the external tokens of the calls inserts marks.
func (s *pgStore) sendRecords(ctx context.Context, calls []*recordCall, inserts []bool) ([]string, error) {
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, 2*len(calls))}
	exts := externals(calls, inserts)
	for _, x := range exts {
		b.Queue(insertExternalToken, x.JTI, x.Sub, jsonList(x.Act), jsonList(x.Aud), x.Scope,
			micros(x.IssuedAt), micros(x.ExpiresAt), x.Kind)
	}
	nowait := len(calls) > 1
	for _, c := range calls {
		t, e := c.r.Token, c.r.Entry
		data := e.Data
		if data == nil {
			data = []byte{}
		}
		b.Queue(recordToken, t.JTI, nullString(t.ParentJTI), t.Sub, t.ClientID, jsonList(t.Act), jsonList(t.Aud),
			t.Scope, micros(t.IssuedAt), micros(t.ExpiresAt), t.CNF, t.Kind, t.HandleHash, t.KID,
			data, e.LeafHash, micros(e.CreatedAt), e.Keys, int32(store.AuditTileHeight), nowait)
	}
	res := s.w.SendBatch(ctx, b)
	outcomes := make([]string, len(calls))
	var err error
	for range exts {
		if _, err = res.Exec(); err != nil {
			break
		}
	}
	for i := range calls {
		if err != nil {
			break
		}
		err = res.QueryRow().Scan(&outcomes[i])
	}
	if err = errors.Join(err, res.Close()); err != nil {
		return nil, err
	}
	return outcomes, nil
}

// externals are the external tokens of the calls inserts marks, each once, in jti order:
// their INSERTs come first in a batch, before the audit head is locked,
// and in one order in every batch, so that batches of two replicas
// inserting the same ones wait for each other without a deadlock.
func externals(calls []*recordCall, inserts []bool) []*store.Token {
	var xs []*store.Token
	for i, c := range calls {
		if inserts[i] {
			xs = append(xs, c.r.External)
		}
	}
	slices.SortFunc(xs, func(a, b *store.Token) int { return strings.Compare(a.JTI, b.JTI) })
	return slices.CompactFunc(xs, func(a, b *store.Token) bool { return a.JTI == b.JTI })
}

// The statements of a batch. insertExternalToken is InsertExternalToken's.
const (
	insertExternalToken = `INSERT INTO tokens (` + tokenColumns + `)
		VALUES ($1, NULL, $2, '', $3, $4, $5, $6, $7, '', $8, NULL, '', NULL, '')
		ON CONFLICT (jti) DO NOTHING`
	recordToken = `SELECT sigil_record_token($1, $2::text, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::bytea, $13,
		$14, $15, $16, $17::text[], $18, $19)`
)

// checkRecord makes the checks InsertExternalToken, InsertToken and
// AppendAudit make before they write, with their errors.
func checkRecord(r store.TokenRecord) error {
	if r.External != nil {
		if err := r.External.CheckExternal(); err != nil {
			return err
		}
	}
	if err := r.Token.Check(); err != nil {
		return fmt.Errorf("store: insert token %q: %w", r.Token.JTI, err)
	}
	if err := r.Entry.Check(); err != nil {
		return fmt.Errorf("store: append audit entry: %w", err)
	}
	if dup := repeated(r.Entry.Keys); dup != "" {
		return fmt.Errorf("store: append audit entry: key %q twice: %w", dup, store.ErrConflict)
	}
	return nil
}

// outcomeName is the name of a sigil_record_token outcome: "ok",
// "parent-missing"…, without its argument.
func outcomeName(outcome string) string {
	what, _, _ := strings.Cut(outcome, " ")
	return what
}

// outcomeErr turns sigil_record_token's outcome for t into the error
// InsertToken or AppendAudit would have returned, nil for "ok <index>".
func outcomeErr(t store.Token, outcome string) error {
	what, arg, _ := strings.Cut(outcome, " ")
	switch what {
	case "ok":
		return nil
	case "certificate-revoked":
		return fmt.Errorf("store: insert token %q: certificate %s: %w", t.JTI, arg, store.ErrCertificateRevoked)
	case "parent-missing":
		return fmt.Errorf("store: insert token %q: parent %q: %w", t.JTI, t.ParentJTI, store.ErrNotFound)
	case "parent-revoked":
		return fmt.Errorf("store: insert token %q: parent %q: %w", t.JTI, t.ParentJTI, store.ErrRevoked)
	case "parent-expires":
		exp, err := strconv.ParseInt(arg, 10, 64)
		if err != nil {
			break
		}
		return fmt.Errorf("store: insert token %q: expires at %v, after its parent %q (%v): %w",
			t.JTI, fromMicros(micros(t.ExpiresAt)), t.ParentJTI, fromMicros(exp), store.ErrConflict)
	case "token-taken":
		return fmt.Errorf("store: insert token %q: jti or handle taken: %w", t.JTI, store.ErrConflict)
	case "key-taken":
		return fmt.Errorf("store: append audit entry: key %q: taken: %w", arg, store.ErrConflict)
	}
	return fmt.Errorf("store: record token %q: unexpected outcome %q", t.JTI, outcome)
}
