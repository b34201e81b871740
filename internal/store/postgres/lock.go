package postgres

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sigil-dev/sigil/internal/store"
)

var _ store.Locker = (*pgStore)(nil)

// TryLock takes the session-level advisory lock of name on a connection of
// its own, if no session holds it.
func (s *pgStore) TryLock(ctx context.Context, name string) (store.Lock, bool, error) {
	return s.lock(ctx, name, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`)
}

// Lock takes the session-level advisory lock of name on a connection of
// its own, waiting for it until ctx ends.
func (s *pgStore) Lock(ctx context.Context, name string) (store.Lock, error) {
	l, _, err := s.lock(ctx, name, `SELECT true FROM (SELECT pg_advisory_lock(hashtextextended($1, 0))) AS l`)
	return l, err
}

// lock connects a session that the server ends when it idles for
// store.LockTTL (idle_session_timeout: the holder's keepalive stopped,
// its process paused or gone), takes the lock with query and keeps the
// session alive until Unlock.
func (s *pgStore) lock(ctx context.Context, name, query string) (store.Lock, bool, error) {
	cfg := s.w.Config().ConnConfig.Copy()
	cfg.RuntimeParams["idle_session_timeout"] = strconv.FormatInt(store.LockTTL.Milliseconds(), 10)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("store: lock %s: connect: %w", name, err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, query, name).Scan(&ok); err != nil || !ok {
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return nil, false, fmt.Errorf("store: lock %s: %w", name, ctxErr(ctx, err))
		}
		return nil, false, nil
	}
	l := &pgLock{name: name, conn: conn, stop: make(chan struct{}), done: make(chan struct{})}
	go l.keepAlive()
	return l, true, nil
}

// pgLock is a held advisory lock and the session holding it.
type pgLock struct {
	name string
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu   sync.Mutex // serialises the connection's use
	conn *pgx.Conn
	lost error
}

// keepAlive pings the session well within store.LockTTL until Unlock, or
// until the session ends.
func (l *pgLock) keepAlive() {
	defer close(l.done)
	t := time.NewTicker(store.LockTTL / 4)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), store.LockTTL/2)
		err := l.Held(ctx)
		cancel()
		if err != nil {
			return
		}
	}
}

// Held pings the session holding the lock: the lock lives as long as it.
func (l *pgLock) Held(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	if _, err := l.conn.Exec(ctx, `SELECT 1`); err != nil {
		// Whatever failed, the session may be gone: never trust it again.
		l.lost = fmt.Errorf("store: lock %s: %w: %w", l.name, store.ErrLockLost, err)
		l.conn.Close(context.WithoutCancel(ctx))
		return l.lost
	}
	return nil
}

// Unlock ends the session, which releases the lock.
func (l *pgLock) Unlock() {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.lost == nil {
			l.lost = fmt.Errorf("store: lock %s: %w: unlocked", l.name, store.ErrLockLost)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		l.conn.Close(ctx)
	})
}
