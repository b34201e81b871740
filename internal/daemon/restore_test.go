package daemon_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	_ "github.com/mattn/go-sqlite3"
	"golang.org/x/sys/unix"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/daemon"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/internal/store/storetest"
)

// stack is a sigild over SoftHSM and a SQLite file, started and stopped
// as an operator would, with the database file copied and restored under
// it.
type stack struct {
	*env
	db string // the SQLite file
}

func newStack(t *testing.T) *stack {
	t.Helper()
	e := newEnv(t)
	e.cfg.Audit.Anchor = filepath.Join(t.TempDir(), "sigild.anchor")
	e.cfg.Policy.Dir = filepath.Join("..", "..", "testenv", "policy")
	e.cfg.Attestation.EKAllow = []string{strings.Repeat("ab", 32)}
	e.init(t)
	s := &stack{env: e, db: strings.TrimPrefix(e.cfg.Store, "sqlite:")}
	s.closeStore(t)
	return s
}

// closeStore closes the test's own handle, so that files can be copied.
func (s *stack) closeStore(t *testing.T) {
	t.Helper()
	if s.st != nil {
		s.st.Close()
		s.st = nil
	}
}

// store opens the test's handle on the database, closed when t ends.
func (s *stack) store(t *testing.T) store.Store {
	t.Helper()
	if s.st == nil {
		st, err := backend.Open(t.Context(), s.cfg.Store)
		if err != nil {
			t.Fatal(err)
		}
		s.st = st
		t.Cleanup(func() { st.Close() })
	}
	return s.st
}

// serve starts sigild, runs fn while it serves, and stops it (which
// signs a checkpoint of everything and anchors it). New's error is
// returned, fn not run, when sigild refuses to start.
func (s *stack) serve(t *testing.T, fn func()) error {
	t.Helper()
	return s.serveDaemon(t, func(*daemon.Daemon) { fn() })
}

// serveDaemon is serve with fn given the serving daemon.
func (s *stack) serveDaemon(t *testing.T, fn func(*daemon.Daemon)) error {
	t.Helper()
	s.closeStore(t)
	d, err := daemon.New(t.Context(), s.cfg, s.log)
	if err != nil {
		return err
	}
	defer d.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.ServeListener(ctx, ln) }()
	fn(d)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	return nil
}

// copyDB copies the database file to dst (sigild and every handle
// stopped: the WAL is checkpointed into the file).
func (s *stack) copyDB(t *testing.T, dst string) {
	t.Helper()
	s.closeStore(t)
	if fi, err := os.Stat(s.db + "-wal"); err == nil && fi.Size() > 0 {
		t.Fatalf("the WAL of %s holds %d bytes with every handle closed", s.db, fi.Size())
	}
	copyFile(t, s.db, dst)
}

// restoreDB puts the copy src back as the database, as an operator
// restoring a backup would.
func (s *stack) restoreDB(t *testing.T, src string) {
	t.Helper()
	s.closeStore(t)
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(s.db + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	copyFile(t, src, s.db)
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue stores a token with its audit entry, as the token service does.
func issue(t *testing.T, st store.Store, jti string) {
	t.Helper()
	tok := storetest.Token(jti, "")
	tok.IssuedAt, tok.ExpiresAt = time.Now(), time.Now().Add(time.Hour)
	err := st.Tx(t.Context(), func(tx store.Tx) error {
		if err := tx.InsertToken(t.Context(), tok); err != nil {
			return err
		}
		e, err := store.NewAuditEntry(audit.TokenIssued, time.Now(), store.AuditToken(tok), "jti:"+jti)
		if err != nil {
			return err
		}
		return store.AppendAuditEntries(t.Context(), tx, e)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// revoke revokes a token with its audit entries, as the token service does.
func revoke(t *testing.T, st store.Store, jti string) {
	t.Helper()
	err := st.Tx(t.Context(), func(tx store.Tx) error {
		jtis, err := tx.RevokeToken(t.Context(), jti, "revoked by its holder", time.Now())
		if err != nil {
			return err
		}
		entries, err := store.RevokedTokenEntries(t.Context(), tx, jtis, time.Now())
		if err != nil {
			return err
		}
		return store.AppendAuditEntries(t.Context(), tx, entries...)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func revokedReason(t *testing.T, st store.Store, jti string) (bool, string) {
	t.Helper()
	tok, err := st.Token(t.Context(), jti)
	if err != nil {
		t.Fatal(err)
	}
	return tok.RevokedAt != nil, tok.RevocationReason
}

func offline(t *testing.T, s *stack) *daemon.Offline {
	t.Helper()
	s.closeStore(t)
	o, err := daemon.OpenOffline(t.Context(), s.cfg, s.h, s.log)
	if err != nil {
		t.Fatalf("OpenOffline: %v", err)
	}
	t.Cleanup(o.Close)
	return o
}

// TestRestoredDatabaseRefused is the attack of issue 11 §2: a copy of the
// database from before a revocation is put back under a stopped sigild.
// sigild refuses it; an operator acknowledges the restore (audited, new
// epoch), sigild serves again, and re-applying the revocations of an
// export taken before the restore revokes the token again, once.
func TestRestoredDatabaseRefused(t *testing.T) {
	s := newStack(t)
	ctx := t.Context()
	if err := s.serve(t, func() { issue(t, s.store(t), "victim") }); err != nil {
		t.Fatalf("first start: %v", err)
	}
	snapshot := filepath.Join(t.TempDir(), "snapshot.db")
	s.copyDB(t, snapshot)
	err := s.serve(t, func() {
		revoke(t, s.store(t), "victim")
		issue(t, s.store(t), "late") // unknown to the snapshot
		revoke(t, s.store(t), "late")
	})
	if err != nil {
		t.Fatalf("second start: %v", err)
	}
	export := filepath.Join(t.TempDir(), "export")
	if err := audit.WriteExport(ctx, store.AuditStorage(s.store(t)), export); err != nil {
		t.Fatal(err)
	}
	epoch, _ := s.store(t).Epoch(ctx)

	s.restoreDB(t, snapshot)
	if err := s.serve(t, func() {}); !errors.Is(err, daemon.ErrRestored) {
		t.Fatalf("sigild started on a restored database: New = %v, want ErrRestored", err)
	}
	if revoked, _ := revokedReason(t, s.store(t), "victim"); revoked {
		t.Fatal("the snapshot already has the revocation: the test restores nothing")
	}

	ack, err := offline(t, s).AcknowledgeRestore(ctx, "disk replaced, restored from last night's backup", time.Now())
	if err != nil {
		t.Fatalf("AcknowledgeRestore: %v", err)
	}
	if ack.PreviousEpoch != epoch || ack.Epoch == epoch || ack.Epoch == "" {
		t.Errorf("epochs %q -> %q; want %q -> a new one", ack.PreviousEpoch, ack.Epoch, epoch)
	}
	s.checkAcknowledged(t, ack)
	if _, err := offline(t, s).AcknowledgeRestore(ctx, "again", time.Now()); err == nil {
		t.Error("a second acknowledgement of a database sigild accepts succeeded")
	}

	r, err := offline(t, s).ReapplyRevocations(ctx, export)
	if err != nil || !slices.Equal(r.Tokens, []string{"victim", "late"}) || len(r.Missing) != 0 {
		t.Fatalf("ReapplyRevocations = %+v, %v; want victim and late revoked again", r, err)
	}
	for _, jti := range []string{"victim", "late"} {
		if revoked, reason := revokedReason(t, s.store(t), jti); !revoked || reason != daemon.ReappliedPrefix+"revoked by its holder" {
			t.Errorf("%s after reapply: revoked %v, reason %q", jti, revoked, reason)
		}
	}
	if events, err := s.store(t).RevocationEvents(ctx, 0, 10); err != nil || len(events) != 2 || events[1].JTI != "late" {
		t.Errorf("feed after reapply: %+v, %v; want the events of victim and late", events, err)
	}
	if kinds := loggedKinds(t, s.store(t)); kinds[len(kinds)-1] != audit.TokenRevoked {
		t.Errorf("the re-applied revocation is not audited: log ends %v", kinds[len(kinds)-3:])
	}
	if again, err := offline(t, s).ReapplyRevocations(ctx, export); err != nil || len(again.Tokens) != 0 || again.Already != 2 {
		t.Errorf("a second reapply = %+v, %v; want nothing re-applied, one already revoked", again, err)
	}
	if err := s.serve(t, func() {}); err != nil {
		t.Fatalf("sigild refused the acknowledged database: %v", err)
	}
}

// checkAcknowledged: the acknowledgement is audited, the database has its
// new epoch, and sigild serves it.
func (s *stack) checkAcknowledged(t *testing.T, ack daemon.Acknowledgement) {
	t.Helper()
	st := s.store(t)
	if got, _ := st.Epoch(t.Context()); got != ack.Epoch {
		t.Errorf("database epoch %q, want %q", got, ack.Epoch)
	}
	kinds := loggedKinds(t, st)
	if kinds[len(kinds)-1] != audit.RestoreAcknowledged {
		t.Fatalf("log ends with %v, want %s", kinds[len(kinds)-1], audit.RestoreAcknowledged)
	}
	if err := s.serve(t, func() {}); err != nil {
		t.Fatalf("sigild refused the acknowledged database: %v", err)
	}
}

// TestEditedEntryRefused: an entry's data edited in the SQLite file, its
// stored leaf hash kept, stops sigild at start (the check recomputes leaf
// hashes from the data), and cannot be acknowledged away.
func TestEditedEntryRefused(t *testing.T) {
	s := newStack(t)
	if err := s.serve(t, func() { issue(t, s.store(t), "tok") }); err != nil {
		t.Fatal(err)
	}
	s.copyDB(t, filepath.Join(t.TempDir(), "before.db"))
	db, err := sql.Open("sqlite3", s.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`DROP TRIGGER audit_entries_no_update`,
		`UPDATE audit_entries SET data = CAST(replace(CAST(data AS TEXT), 'user/alice', 'user/mallory') AS BLOB)
			WHERE CAST(data AS TEXT) LIKE '%user/alice%'`,
	} {
		res, err := db.Exec(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if n, _ := res.RowsAffected(); strings.HasPrefix(q, "UPDATE") && n != 1 {
			t.Fatalf("%s: %d rows", q, n)
		}
	}
	db.Close()
	if err := s.serve(t, func() {}); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("sigild started on an edited entry: New = %v, want ErrTampered", err)
	}
	if _, err := daemon.OpenOffline(t.Context(), s.cfg, s.h, s.log); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("OpenOffline (for an acknowledgement) = %v, want ErrTampered", err)
	}
}

// TestLostAnchorRefused: a database that has signed checkpoints but no
// anchor (deleted, or the database brought from elsewhere) is refused.
func TestLostAnchorRefused(t *testing.T) {
	s := newStack(t)
	if err := s.serve(t, func() {}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.cfg.Audit.Anchor); err != nil {
		t.Fatalf("the anchor was not written: %v", err)
	}
	if err := s.serve(t, func() {}); !errors.Is(err, daemon.ErrRestored) {
		t.Fatalf("New without the anchor = %v, want ErrRestored", err)
	}
}

// TestAnchorBehindDatabaseServes: sigild crashed after a checkpoint
// committed but before the anchor was written, so the anchor is older than
// the database: that database is healthy, and served.
func TestAnchorBehindDatabaseServes(t *testing.T) {
	s := newStack(t)
	if err := s.serve(t, func() {}); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(s.cfg.Audit.Anchor)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.serve(t, func() { issue(t, s.store(t), "tok") }); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.cfg.Audit.Anchor, old, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.serve(t, func() {}); err != nil {
		t.Fatalf("a database ahead of its anchor was refused: %v", err)
	}
}

// TestDatabaseOfAnotherLineageRefused: a database whose epoch is not the
// anchor's (another database, or a restored one acknowledged elsewhere)
// is refused, even with every entry the anchor covers.
func TestDatabaseOfAnotherLineageRefused(t *testing.T) {
	s := newStack(t)
	if err := s.serve(t, func() {}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.store(t).NewEpoch(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.serve(t, func() {}); !errors.Is(err, daemon.ErrRestored) {
		t.Fatalf("New on a database of another epoch = %v, want ErrRestored", err)
	}
}

// TestAnchorOncePerInterval: under load (entries appended and the log
// nudged, as the services do) the log signs a checkpoint every
// audit.NudgeGap, but sigild writes the anchor (two fsyncs, a rename and a
// directory fsync) at most once per audit.checkpoint_interval.
func TestAnchorOncePerInterval(t *testing.T) {
	s := newStack(t)
	s.cfg.Audit.CheckpointInterval = time.Second
	const window = 3 * time.Second
	var renames, checkpoints int
	if err := s.serveDaemon(t, func(d *daemon.Daemon) {
		before := len(checkpointsOf(t, s.store(t)))
		count := watchRenames(t, s.cfg.Audit.Anchor)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for end, i := time.Now().Add(window), 0; time.Now().Before(end); i++ {
			issue(t, s.store(t), fmt.Sprintf("load-%d", i))
			daemon.NudgeAudit(d)
			<-tick.C
		}
		renames = count()
		checkpoints = len(checkpointsOf(t, s.store(t))) - before
	}); err != nil {
		t.Fatal(err)
	}
	most := int(window/s.cfg.Audit.CheckpointInterval) + 1
	if renames == 0 || renames > most {
		t.Errorf("the anchor was written %d times in %v, want 1 to %d (once per %v)", renames, window, most, s.cfg.Audit.CheckpointInterval)
	}
	if checkpoints < 2*most {
		t.Errorf("%d checkpoints signed in %v, want at least %d (one every audit.NudgeGap, %v): too few to tell the anchor's limit", checkpoints, window, 2*most, audit.NudgeGap)
	}
}

// checkpointsOf lists st's stored checkpoints.
func checkpointsOf(t *testing.T, st store.Store) []store.Checkpoint {
	t.Helper()
	cs, err := st.Checkpoints(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// watchRenames counts the files renamed onto path from now on (inotify);
// count returns how many so far and stops counting. It watches the
// renames from the temporary files too: inotify merges identical events
// in a row, and the temporary files' names tell the renames apart.
func watchRenames(t *testing.T, path string) (count func() int) {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(path), unix.IN_MOVED_FROM|unix.IN_MOVED_TO); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	return func() int {
		defer unix.Close(fd)
		n, buf := 0, make([]byte, 64<<10)
		for {
			r, err := unix.Read(fd, buf)
			if errors.Is(err, unix.EAGAIN) {
				return n
			}
			if err != nil {
				t.Fatal(err)
			}
			for off := 0; off+unix.SizeofInotifyEvent <= r; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				if ev.Mask&unix.IN_MOVED_TO != 0 && name == filepath.Base(path) {
					n++
				}
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}
}
