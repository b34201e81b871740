package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/atomicfile"
	"github.com/sigil-dev/sigil/internal/store"
)

// ErrRestored: the database is older than what sigild has signed, or of
// another lineage than its anchor: it was restored from a copy or rolled
// back, and serving it would bring back what it lost (revoked tokens
// active again, feed sequence numbers reused). Do not serve: an operator
// checks the restore, runs `sigild restore acknowledge`, then `sigild
// restore reapply` with an audit export newer than the copy.
var ErrRestored = errors.New("daemon: the database is older than what sigild has signed (restored or rolled back); check it, then run `sigild restore acknowledge`")

// anchor is what sigild keeps outside the database (config audit.anchor):
// the latest checkpoint note it signed and stored, and the epoch of the
// database it stored it in. It is written after the checkpoint commits, so
// a crash between the two leaves an anchor older than the database, which
// passes; a database is accepted when it holds the anchor's tree (same
// epoch, at least as many entries, the same root at the anchor's size).
type anchor struct {
	Epoch      string `json:"epoch"`
	Checkpoint string `json:"checkpoint"`
}

// readAnchor reads the anchor at path; a missing file is a nil anchor.
func readAnchor(path string) (*anchor, error) {
	if path == "" {
		return nil, errors.New("daemon: audit.anchor: no anchor file configured")
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("daemon: read anchor: %w", err)
	}
	var a anchor
	if err := json.Unmarshal(data, &a); err != nil || a.Epoch == "" || a.Checkpoint == "" {
		return nil, fmt.Errorf("daemon: anchor %s: malformed (%v)", path, err)
	}
	return &a, nil
}

// writeAnchor replaces the anchor at path, mode 0600, atomically.
func writeAnchor(path string, a anchor) error {
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("daemon: encode anchor: %w", err)
	}
	if err := atomicfile.Write(path, append(data, '\n')); err != nil {
		return fmt.Errorf("daemon: write anchor: %w", err)
	}
	return nil
}

// anchorState is how a database stands against an anchor.
type anchorState struct {
	Anchor   *anchor
	Signed   audit.Checkpoint // the anchor's checkpoint, when there is one
	Epoch    string           // the database's
	Size     uint64           // the database's audit entries
	Restored error            // why the database is refused, nil if it is not
}

// measure reads the database's epoch and audit size into s.
func (s *anchorState) measure(ctx context.Context, st store.Store) error {
	var err error
	if s.Epoch, err = st.Epoch(ctx); err != nil {
		return err
	}
	s.Size, err = st.AuditSize(ctx)
	return err
}

// checkAnchor compares the database with the anchor at path. The log must
// have passed Init, so that the stored leaf hashes match the entries and
// the latest stored checkpoint. A missing anchor passes only for a
// database without a checkpoint (never served).
func checkAnchor(ctx context.Context, st store.Store, path string, v *audit.Verifier) (anchorState, error) {
	var s anchorState
	var err error
	if s.Anchor, err = readAnchor(path); err != nil {
		return s, err
	}
	if err := s.measure(ctx, st); err != nil {
		return s, err
	}
	if s.Anchor == nil {
		latest, err := st.LatestCheckpoint(ctx)
		if err != nil {
			return s, err
		}
		if len(latest) > 0 {
			s.Restored = fmt.Errorf("%w: no anchor at %s, but the database has signed checkpoints (the anchor was lost, or the database comes from elsewhere)", ErrRestored, path)
		}
		return s, nil
	}
	if v, err = anchorVerifier([]byte(s.Anchor.Checkpoint), v); err != nil {
		return s, err
	}
	if s.Signed, err = audit.OpenCheckpoint([]byte(s.Anchor.Checkpoint), v); err != nil {
		return s, fmt.Errorf("daemon: anchor %s: its checkpoint does not verify with the audit key: %w", path, err)
	}
	why, err := compareAnchor(ctx, st, s)
	if why != "" {
		s.Restored = fmt.Errorf("%w: %s", ErrRestored, why)
	}
	return s, err
}

// compareAnchor says why the database is not at or after the anchor, ""
// if it is.
func compareAnchor(ctx context.Context, st store.Store, s anchorState) (string, error) {
	log, start, err := anchoredLog(ctx, st, s.Signed.Origin)
	if err != nil {
		return "", err
	}
	switch {
	case s.Epoch != s.Anchor.Epoch:
		return fmt.Sprintf("the database's epoch %s is not the anchor's %s", s.Epoch, s.Anchor.Epoch), nil
	case log == nil:
		return fmt.Sprintf("the database has no audit shard %s, of which sigild signed a checkpoint", s.Signed.Origin), nil
	case s.Size < start+s.Signed.Size:
		return fmt.Sprintf("the database has %d audit entries, sigild signed a checkpoint of %d", s.Size, start+s.Signed.Size), nil
	}
	root, err := audit.RootHash(ctx, log, s.Signed.Size)
	if err != nil {
		return "", err
	}
	if !bytes.Equal(root, s.Signed.Hash) {
		return fmt.Sprintf("the database's first %d audit entries are not those of the checkpoint sigild signed", s.Signed.Size), nil
	}
	return "", nil
}

// anchoredLog returns the log (the unsharded log, or a shard) of the
// anchor's checkpoint of origin, and its start in the global log; a nil
// log if the database has no shard of that origin.
func anchoredLog(ctx context.Context, st store.Store, origin string) (audit.LeafHashReader, uint64, error) {
	rows, err := st.AuditShards(ctx)
	if err != nil {
		return nil, 0, err
	}
	for _, sh := range rows {
		if sh.Origin == origin {
			return store.ShardStorage(st, sh, 0), sh.Start, nil
		}
	}
	if len(rows) > 0 && rows[0].Start == 0 {
		return nil, 0, nil // sharded from the first entry: every checkpoint is a shard's
	}
	return store.AuditStorage(st), 0, nil
}

// anchorVerifier returns v under the origin of note, if it is a shard's
// of v's log (v's name, "/", a shard name).
func anchorVerifier(note []byte, v *audit.Verifier) (*audit.Verifier, error) {
	cp, err := audit.PeekCheckpoint(note)
	if err != nil || cp.Origin == v.Name() || !strings.HasPrefix(cp.Origin, v.Name()+"/") {
		return v, nil
	}
	return v.Renamed(cp.Origin)
}

// checkAnchor refuses to serve a database older than the anchor
// (ErrRestored) and keeps the database's epoch for keepAnchor.
func (d *Daemon) checkAnchor(ctx context.Context) error {
	s, err := checkAnchor(ctx, d.store, d.cfg.Audit.Anchor, d.checkpoints)
	if err != nil {
		return err
	}
	if s.Restored != nil {
		d.log.ErrorContext(ctx, "refusing to serve a restored database", "anchor", d.cfg.Audit.Anchor, "err", s.Restored)
		return s.Restored
	}
	d.epoch = s.Epoch
	return nil
}

// keepAnchor writes the latest stored checkpoint to the anchor whenever
// there is a new one, at most once per audit.checkpoint_interval, until
// ctx ends. A failed write is logged and retried with the next
// checkpoint: the anchor only lags, which never makes a healthy database
// look restored.
//
// Under load the log signs a checkpoint every audit.NudgeGap (50 ms), and
// an anchor write is two fsyncs, a rename and a directory fsync on the
// disk that holds the WAL: writing each one put about 60 synchronous
// writes a second in the way of the store's commits, and the slowest
// exchanges waited on those commits. Once per interval, the anchor lags
// the database by at most what it did when idle (one interval, and the
// publishing round). Shutdown anchors the last checkpoint (anchorNow).
func (d *Daemon) keepAnchor(ctx context.Context) error {
	var size uint64 // the anchor's, which checkAnchor has checked at start
	if a, err := readAnchor(d.cfg.Audit.Anchor); err == nil && a != nil {
		if v, err := anchorVerifier([]byte(a.Checkpoint), d.checkpoints); err == nil {
			if cp, err := audit.OpenCheckpoint([]byte(a.Checkpoint), v); err == nil && cp.Origin == d.audit.log().Origin() {
				size = cp.Size
			}
		}
	}
	every := d.cfg.Audit.CheckpointInterval
	var last time.Time // of the last write
	for {
		note, err := d.audit.WaitFor(ctx, size+1)
		if err != nil {
			return nil // ctx ended
		}
		if wait := time.Until(last.Add(every)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			if note, err = d.audit.WaitFor(ctx, size+1); err != nil { // the latest, at once
				return nil
			}
		}
		cp, err := audit.PeekCheckpoint(note)
		if err != nil {
			return err
		}
		if err := writeAnchor(d.cfg.Audit.Anchor, anchor{Epoch: d.epoch, Checkpoint: string(note)}); err != nil {
			d.log.WarnContext(ctx, "audit: cannot write the anchor; retrying with the next checkpoint", "err", err)
		}
		size, last = cp.Size, time.Now()
	}
}
