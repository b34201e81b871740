package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
)

// Revocation notifications (store.FeedNotifier), in process.
//
// SQLite has no LISTEN/NOTIFY, so the store notifies itself: a Tx whose
// fn recorded revocation events (appendRevocations marks its querier) and
// committed kicks the handle's notifier, after COMMIT — once per group
// commit batch, however many of its fns revoked. The notifier reads the
// committed head of the revocation sequence through the read pool and
// publishes it on the hub of the database file, which every handle on
// that file in this process shares, so that a subscriber on one handle
// hears commits made through any other, as on PostgreSQL it hears every
// replica. Reading the head after COMMIT, rather than passing on what a
// fn numbered, keeps a Seq that was rolled back (a failed fn, a batch
// that did not commit, a savepoint a caller recovered from) from ever
// being notified: a rolled-back fn does not kick at all, and a kick whose
// events were undone within a committed Tx notifies the head as it is,
// a spurious but true value.
//
// Other processes writing the file (sigild's operator commands, such as
// `sigild device disable`) are not heard: followers find their events by
// polling, as they do whenever notifications are down.

// hubs are the hubs of the database files open in this process, by path.
var hubs = struct {
	sync.Mutex
	m map[string]*hub
}{m: map[string]*hub{}}

// hub hands the revocation heads committed on one database file to its
// subscribers.
type hub struct {
	key  string // in hubs.m; "" for a hub of one handle
	refs int    // handles and subscriptions using it, under hubs' lock

	mu   sync.Mutex
	head uint64 // the highest Seq published: Seqs never go down
	subs map[chan uint64]struct{}
}

// acquireHub returns the hub of the database file dsn names, shared with
// the other handles on it; a DSN naming no local file (a URI with an
// authority) gets a hub of its own.
func acquireHub(dsn string) *hub {
	key := fileKey(dsn)
	if key == "" {
		return &hub{refs: 1, subs: map[chan uint64]struct{}{}}
	}
	hubs.Lock()
	defer hubs.Unlock()
	h := hubs.m[key]
	if h == nil {
		h = &hub{key: key, subs: map[chan uint64]struct{}{}}
		hubs.m[key] = h
	}
	h.refs++
	return h
}

// retain counts one more user of h; release one less, forgetting h after
// the last.
func (h *hub) retain() {
	hubs.Lock()
	defer hubs.Unlock()
	h.refs++
}

func (h *hub) release() {
	hubs.Lock()
	defer hubs.Unlock()
	if h.refs--; h.refs == 0 && h.key != "" && hubs.m[h.key] == h {
		delete(hubs.m, h.key)
	}
}

// fileKey names the database file of dsn for the hubs: its absolute path
// with symbolic links resolved; "" if dsn names no local file.
func fileKey(dsn string) string {
	name, _, _ := strings.Cut(dsn, "?")
	name = strings.TrimPrefix(name, "file:")
	if name == "" || strings.HasPrefix(name, "//") {
		return ""
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		return ""
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	return abs
}

// subscribe returns a channel that gets the heads published from now on,
// the latest for a receiver that falls behind, and is closed when ctx
// ends.
func (h *hub) subscribe(ctx context.Context) <-chan uint64 {
	ch := make(chan uint64, 1)
	h.retain()
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	context.AfterFunc(ctx, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		close(ch)
		h.mu.Unlock()
		h.release()
	})
	return ch
}

// listening reports whether anyone subscribes.
func (h *hub) listening() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs) > 0
}

// publish hands seq to every subscriber unless a later head was published
// already, replacing a value a subscriber has not taken yet.
func (h *hub) publish(seq uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if seq <= h.head {
		return
	}
	h.head = seq
	for ch := range h.subs {
		select { // the only sender is here, under h.mu: after the drain there is room
		case <-ch:
		default:
		}
		ch <- seq
	}
}

// notifier publishes, on its handle's hub, the head of the revocation
// sequence after each kick, from a goroutine of its own, so that a
// committer never waits for the read.
type notifier struct {
	hub  *hub
	head func(context.Context) (uint64, error)
	kick chan struct{}
	stop context.CancelFunc
	done chan struct{}
}

func newNotifier(h *hub, head func(context.Context) (uint64, error)) *notifier {
	ctx, stop := context.WithCancel(context.Background())
	n := &notifier{hub: h, head: head, kick: make(chan struct{}, 1), stop: stop, done: make(chan struct{})}
	go n.run(ctx)
	return n
}

// revoked tells the notifier that revocation events have committed. It
// never blocks: kicks that come while one is pending are one read.
func (n *notifier) revoked() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (n *notifier) run(ctx context.Context) {
	defer close(n.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
		}
		if !n.hub.listening() {
			continue
		}
		seq, err := n.head(ctx)
		if err != nil {
			continue // the subscribers' polling finds the events
		}
		n.hub.publish(seq)
	}
}

// close stops the notifier and lets go of its hub; subscriptions end with
// their ctx, not here.
func (n *notifier) close() {
	n.stop()
	<-n.done
	n.hub.release()
}

// NotifyRevocations subscribes to the revocation heads committed through
// any handle on this database file in this process (see notify.go),
// until ctx ends.
func (s *sqliteStore) NotifyRevocations(ctx context.Context) (<-chan uint64, error) {
	return s.notes.hub.subscribe(ctx), nil
}
