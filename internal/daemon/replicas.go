package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
)

// Names of the locks replicas share through a store.Locker.
const (
	// publisherLock is the audit checkpoint publisher's lease.
	publisherLock = "sigil/audit-publisher"
	// keysLock serialises key creation on the HSM, which is not
	// transactional: `sigild init` and `sigild key rotate`.
	keysLock = "sigil/hsm-keys"
)

// lockKeys takes keysLock if st is shared (a store.Locker), waiting for
// another replica's init or rotation to finish; the returned func releases
// it. Check the token for the keys only after taking it.
func lockKeys(ctx context.Context, st store.Store) (func(), error) {
	lk, ok := st.(store.Locker)
	if !ok {
		return func() {}, nil // one process: nobody to wait for
	}
	l, err := lk.Lock(ctx, keysLock)
	if err != nil {
		return nil, fmt.Errorf("daemon: wait for other replicas' key creation: %w", err)
	}
	return l.Unlock, nil
}

// publisherLease is the audit log's lease over a store.Locker: the replica
// holding publisherLock signs checkpoints. A follower asks for the lock at
// most once per leaseRetry, so that followers do not open a database
// session at every round of the log; a leader paused or cut off loses it
// store.LockTTL after it stops answering, and another takes over within
// LockTTL + leaseRetry.
type publisherLease struct {
	locker store.Locker

	mu    sync.Mutex
	held  store.Lock
	tried time.Time
}

// leaseRetry is how often a follower tries to take the publisher lease.
const leaseRetry = time.Second

var _ audit.Lease = (*publisherLease)(nil)

// Leading checks the held lock with the database, or tries to take it.
func (p *publisherLease) Leading(ctx context.Context) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held != nil {
		if p.held.Held(ctx) == nil {
			return true, nil
		}
		p.held.Unlock()
		p.held = nil
	}
	if time.Since(p.tried) < leaseRetry {
		return false, nil
	}
	p.tried = time.Now()
	l, ok, err := p.locker.TryLock(ctx, publisherLock)
	if err != nil || !ok {
		return false, err
	}
	p.held = l
	return true, nil
}

// Release gives the lease up, for another replica to take at once.
func (p *publisherLease) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held != nil {
		p.held.Unlock()
		p.held = nil
	}
}

// policyMetric exports the version of the policy set in effect as
// sigil_policy_set_info{version="…"} 1, so that a replica running another
// set than its peers shows in monitoring as in /readyz.
type policyMetric struct{ g *prometheus.GaugeVec }

func newPolicyMetric(reg prometheus.Registerer) (*policyMetric, error) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sigil_policy_set_info",
		Help: "The policy set this replica runs: 1, labelled with its version.",
	}, []string{"version"})
	if err := reg.Register(g); err != nil {
		return nil, fmt.Errorf("daemon: register policy metric: %w", err)
	}
	return &policyMetric{g}, nil
}

// loaded makes s the one version exported.
func (m *policyMetric) loaded(s *policy.Set) {
	m.g.Reset()
	m.g.WithLabelValues(s.Version()).Set(1)
}

// JoinReplica gives a replica that joins a shared database (a
// store.Locker: PostgreSQL) its own anchor (audit.anchor), when it has
// none yet: the database's latest checkpoint, checked against the audit
// key and the stored entries, and its epoch. Without it the replica would
// refuse to serve a database other replicas have already signed
// checkpoints of. `sigild init` calls it after Init; on an embedded store
// it does nothing, and a lost anchor stays refused until `sigild restore
// acknowledge`. It returns whether it wrote an anchor.
func JoinReplica(ctx context.Context, cfg *config.Config, st store.Store, p *PKI) (bool, error) {
	if _, shared := st.(store.Locker); !shared {
		return false, nil
	}
	if a, err := readAnchor(cfg.Audit.Anchor); err != nil || a != nil {
		return false, err
	}
	note, err := st.LatestCheckpoint(ctx)
	if err != nil || len(note) == 0 {
		return false, err // nothing signed yet: the first anchor comes with the first checkpoint
	}
	origin, err := AuditOrigin(ctx, cfg, st, p.AuditKey.Public(), nil)
	if err != nil {
		return false, err
	}
	v, err := audit.NewVerifier(origin, p.AuditKey.Public())
	if err != nil {
		return false, err
	}
	if v, err = anchorVerifier(note, v); err != nil {
		return false, err
	}
	s := anchorState{Anchor: &anchor{Checkpoint: string(note)}}
	if s.Signed, err = audit.OpenCheckpoint(note, v); err != nil {
		return false, fmt.Errorf("daemon: join: the database's latest checkpoint does not verify with the audit key: %w", err)
	}
	if err := s.measure(ctx, st); err != nil {
		return false, err
	}
	s.Anchor.Epoch = s.Epoch
	why, err := compareAnchor(ctx, st, s)
	if err != nil {
		return false, err
	}
	if why != "" {
		return false, fmt.Errorf("daemon: join: %s", why)
	}
	return true, writeAnchor(cfg.Audit.Anchor, *s.Anchor)
}
