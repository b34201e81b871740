package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/sigil-dev/sigil/audit"
)

// world is a log, its storage (also the source an auditor reads) and an
// auditor's state file.
type world struct {
	*logEnv
	state string
}

func newWorld(t *testing.T) *world { return &world{logEnv: newLogEnv(t), state: statePath(t)} }

// grow appends n entries and checkpoints them.
func (w *world) grow(t *testing.T, n int) audit.Checkpoint {
	t.Helper()
	w.add(t, n)
	w.integrate(t)
	return w.latest(t)
}

func (w *world) verify(t *testing.T, src audit.Source, onEntry func(uint64, audit.Entry) error) (audit.Report, error) {
	t.Helper()
	return w.verifyWith(t, src, audit.VerifyOptions{OnEntry: onEntry})
}

// verifyWith verifies src with opts and the world's state file.
func (w *world) verifyWith(t *testing.T, src audit.Source, opts audit.VerifyOptions) (audit.Report, error) {
	t.Helper()
	opts.StatePath = w.state
	return audit.Verify(t.Context(), src, w.signer.Verifier(), opts)
}

// stateCheckpoint returns the checkpoint note the state file holds.
func (w *world) stateCheckpoint(t *testing.T) []byte {
	t.Helper()
	var f struct{ Checkpoint string }
	data, err := os.ReadFile(w.state)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("state file: %v", err)
	}
	return []byte(f.Checkpoint)
}

// note returns the stored checkpoint note of size.
func (w *world) note(t *testing.T, size uint64) []byte {
	t.Helper()
	n, ok := w.st.checkpoints[size]
	if !ok {
		t.Fatalf("no checkpoint of size %d", size)
	}
	return n
}

// plain hides a source's CheckpointLister.
type plain struct{ audit.Source }

// serving replaces the checkpoint the storage serves; it still lists the
// stored ones.
type serving struct {
	*memStorage
	note []byte
}

func (s serving) Checkpoint(context.Context) ([]byte, error) { return s.note, nil }

// listing replaces the checkpoints a source lists.
type listing struct {
	audit.Source
	notes [][]byte
}

func (l listing) Checkpoints(context.Context) ([][]byte, error) { return l.notes, nil }

func TestVerifyHappyPathAcrossGrowth(t *testing.T) {
	w := newWorld(t)
	w.integrate(t) // the empty log's checkpoint
	prev := uint64(0)
	for step, n := range []int{0, 3, 4, 0, 13, 1} {
		cp := w.grow(t, n)
		var seen []uint64
		rep, err := w.verify(t, w.st, func(i uint64, e audit.Entry) error { seen = append(seen, i); return nil })
		if err != nil {
			t.Fatalf("step %d: Verify: %v\n%s", step, err, rep)
		}
		// After the first run, each reads only the entries added since.
		if rep.Size != cp.Size || rep.From != prev || rep.Entries != cp.Size-prev || rep.FirstBad != -1 || !rep.OK() || !rep.StateUpdated {
			t.Fatalf("step %d: report %+v", step, rep)
		}
		if rep.HadState != (step > 0) || rep.Incremental != (step > 0) {
			t.Errorf("step %d: HadState = %v, Incremental = %v", step, rep.HadState, rep.Incremental)
		}
		if uint64(len(seen)) != cp.Size-prev || !slices.IsSorted(seen) || (len(seen) > 0 && seen[0] != prev) {
			t.Errorf("step %d: OnEntry saw %v", step, seen)
		}
		total := 0
		for _, c := range rep.Kinds {
			total += c
		}
		if uint64(total) != cp.Size-prev {
			t.Errorf("step %d: kinds %v sum to %d, want %d", step, rep.Kinds, total, cp.Size-prev)
		}
		prev = cp.Size
		if state := w.stateCheckpoint(t); !bytes.Equal(state, w.note(t, cp.Size)) {
			t.Errorf("step %d: the state file does not hold the latest checkpoint", step)
		}
		if s := rep.String(); !strings.Contains(s, "VERIFIED") || (n > 0 && !strings.Contains(s, string(audit.DeviceEnrolled))) {
			t.Errorf("step %d: summary:\n%s", step, s)
		}
	}
}

func TestVerifyWithoutStateFile(t *testing.T) {
	w := newWorld(t)
	w.grow(t, 5)
	rep, err := audit.Verify(t.Context(), plain{w.st}, w.signer.Verifier(), audit.VerifyOptions{})
	if err != nil || rep.StateUpdated || rep.Checkpoints != 1 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

// attack is one tampering of a log that an auditor verified at size 8
// before it grew to 12, with checkpoints at 4, 8 and 12.
type attack struct {
	name    string
	noState bool
	// old: the attack changes only entries an earlier run verified, which
	// an incremental run does not read again (it passes); a full run
	// catches it.
	old     bool
	tamper  func(t *testing.T, w *world) audit.Source
	onEntry func(uint64, audit.Entry) error
	check   func(t *testing.T, err error)
	bad     int64 // Report.FirstBad
}

var errBadQuote = errors.New("quote does not verify")

// TestVerifyDetectsAttacks runs every attack against an incremental run
// (the default with a state file) and a full one (--full): both must
// report it the same way, except an attack on entries verified before,
// which only a full run reads.
func TestVerifyDetectsAttacks(t *testing.T) {
	for _, full := range []bool{false, true} {
		for _, a := range attacks() {
			t.Run(fmt.Sprintf("%s/full=%v", a.name, full), func(t *testing.T) {
				t.Parallel()
				runAttack(t, a, full)
			})
		}
	}
}

func runAttack(t *testing.T, a attack, full bool) {
	w := newWorld(t)
	w.grow(t, 4)
	w.grow(t, 4)
	if a.noState {
		w.state = statePath(t)
	} else if _, err := w.verify(t, w.st, nil); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	w.grow(t, 4)
	src := a.tamper(t, w)
	before, _ := os.ReadFile(w.state)
	rep, err := w.verifyWith(t, src, audit.VerifyOptions{OnEntry: a.onEntry, Full: full})
	if a.old && !full {
		if err != nil || !rep.Incremental || rep.Entries != 4 {
			t.Fatalf("incremental run over entries verified before: %v\n%s", err, rep)
		}
		return
	}
	a.check(t, err)
	if rep.FirstBad != a.bad || rep.OK() || rep.StateUpdated {
		t.Errorf("report: FirstBad %d (want %d), OK %v, StateUpdated %v", rep.FirstBad, a.bad, rep.OK(), rep.StateUpdated)
	}
	if after, _ := os.ReadFile(w.state); !bytes.Equal(before, after) {
		t.Error("a failed verification changed the state file")
	}
	t.Logf("%s", rep)
}

func attacks() []attack {
	return []attack{
		{name: "edit one byte of a new entry", tamper: editEntry(9, oneByte), check: isMismatch(8, 12), bad: 8},
		{name: "edit one byte of an entry seen before", old: true, tamper: editEntry(5, oneByte), check: isMismatch(4, 8), bad: 4},
		{name: "edit a byte so the entry does not parse", tamper: editEntry(9, func(e []byte) []byte { e[0] = '['; return e }), check: isMismatch(8, 12), bad: 8},
		{name: "trailing garbage after an entry", tamper: editEntry(10, func(e []byte) []byte { return append(e, "garbage"...) }), check: isMismatch(8, 12), bad: 8},
		{name: "delete an entry", tamper: editEntries(func(es [][]byte) [][]byte { return slices.Delete(es, 6, 7) }), check: isMismatch(4, 8), bad: 4},
		{name: "delete the last entry", tamper: editEntries(func(es [][]byte) [][]byte { return es[:11] }), check: isMissing(11), bad: 11},
		{name: "swap two entries", tamper: editEntries(func(es [][]byte) [][]byte { es[9], es[10] = es[10], es[9]; return es }), check: isMismatch(8, 12), bad: 8},
		{name: "truncate and re-grow with different entries", tamper: regrow(6, 6), check: isFork(8, 12), bad: -1},
		{name: "truncate and re-grow to the same size", tamper: regrow(6, 2), check: isFork(8, 8), bad: -1},
		{name: "checkpoint signed by another key", tamper: forgeLatest, check: is(audit.ErrCheckpointSignature), bad: -1},
		{name: "listed checkpoint signed by another key", tamper: forgeListed, check: is(audit.ErrCheckpointSignature), bad: -1},
		{name: "checkpoint of another origin", tamper: otherOrigin, check: is(audit.ErrOriginMismatch), bad: -1},
		{name: "trailing garbage after the checkpoint", tamper: func(t *testing.T, w *world) audit.Source {
			return serving{w.st, append(bytes.Clone(w.note(t, 12)), "garbage\n"...)}
		}, check: is(audit.ErrMalformedCheckpoint), bad: -1},
		{name: "replay an old checkpoint", tamper: func(t *testing.T, w *world) audit.Source {
			return plain{serving{w.st, w.note(t, 4)}}
		}, check: isRollback(8, 4), bad: -1},
		{name: "latest smaller than a listed checkpoint", noState: true, tamper: func(t *testing.T, w *world) audit.Source {
			return serving{w.st, w.note(t, 8)}
		}, check: isRollback(12, 8), bad: -1},
		{name: "two signed checkpoints of one size", tamper: splitView, check: isFork(4, 4), bad: -1},
		{name: "the log signed an entry that does not decode", tamper: signGarbage, check: isEntryError(12, audit.ErrUnknownKind), bad: 12},
		{name: "OnEntry refuses an entry", tamper: func(t *testing.T, w *world) audit.Source { return w.st },
			onEntry: func(i uint64, e audit.Entry) error {
				if i == 10 {
					return errBadQuote
				}
				return nil
			}, check: isEntryError(10, errBadQuote), bad: 10},
		{name: "state file of another log", tamper: func(t *testing.T, w *world) audit.Source {
			n, _ := newSigner(t, "other.test/log", newKey(t)).Sign(audit.Checkpoint{Origin: "other.test/log", Size: 1, Hash: sha256Of("")})
			if err := os.WriteFile(w.state, n, 0o600); err != nil {
				t.Fatal(err)
			}
			return w.st
		}, check: func(t *testing.T, err error) {
			if is(audit.ErrState)(t, err); errors.Is(err, audit.ErrKeyChanged) {
				t.Fatalf("Verify error = %v, want no ErrKeyChanged for another origin", err)
			}
		}, bad: -1},
		{name: "state file of this origin under another key", tamper: func(t *testing.T, w *world) audit.Source {
			n, _ := newSigner(t, origin, newKey(t)).Sign(audit.Checkpoint{Origin: origin, Size: 1, Hash: sha256Of("")})
			if err := os.WriteFile(w.state, n, 0o600); err != nil {
				t.Fatal(err)
			}
			return w.st
		}, check: func(t *testing.T, err error) { is(audit.ErrState)(t, err); is(audit.ErrKeyChanged)(t, err) }, bad: -1},
	}
}

func oneByte(e []byte) []byte { return bytes.Replace(e, []byte("sigil"), []byte("sigim"), 1) }

func editEntry(i int, f func([]byte) []byte) func(*testing.T, *world) audit.Source {
	return editEntries(func(es [][]byte) [][]byte { es[i] = f(bytes.Clone(es[i])); return es })
}

func editEntries(f func([][]byte) [][]byte) func(*testing.T, *world) audit.Source {
	return func(t *testing.T, w *world) audit.Source { w.st.edit(f); return w.st }
}

// regrow truncates the log to keep entries and appends add different ones,
// signed by the real key: a server that rewrote its history.
func regrow(keep, add int) func(*testing.T, *world) audit.Source {
	return func(t *testing.T, w *world) audit.Source {
		w.st.edit(func(es [][]byte) [][]byte { return es[:keep] })
		w.st.checkpoints = map[uint64][]byte{}
		w.log = w.newLog(t)
		for i := range add {
			w.st.append(sampleEntry(t, 1000+i))
		}
		w.integrate(t)
		return w.st
	}
}

func forgeLatest(t *testing.T, w *world) audit.Source {
	cp := w.latest(t)
	n, err := newSigner(t, origin, newKey(t)).Sign(cp)
	if err != nil {
		t.Fatal(err)
	}
	return serving{w.st, n}
}

func forgeListed(t *testing.T, w *world) audit.Source {
	n, err := newSigner(t, origin, newKey(t)).Sign(audit.Checkpoint{Origin: origin, Size: 2, Hash: sha256Of("x")})
	if err != nil {
		t.Fatal(err)
	}
	return listing{w.st, [][]byte{w.note(t, 4), n}}
}

func otherOrigin(t *testing.T, w *world) audit.Source {
	n := w.note(t, 12)
	text := string(n[:bytes.Index(n, []byte("\n\n"))+1])
	forged, err := note.Sign(&note.Note{Text: strings.Replace(text, origin, "evil.example/log", 1)}, w.signer.NoteSigner())
	if err != nil {
		t.Fatal(err)
	}
	return serving{w.st, forged}
}

// splitView lists a second, validly signed checkpoint of size 4.
func splitView(t *testing.T, w *world) audit.Source {
	n, err := w.signer.Sign(audit.Checkpoint{Origin: origin, Size: 4, Hash: sha256Of("another history")})
	if err != nil {
		t.Fatal(err)
	}
	return listing{w.st, [][]byte{w.note(t, 4), n}}
}

// signGarbage has the log sign an entry of an unknown kind.
func signGarbage(t *testing.T, w *world) audit.Source {
	w.st.append([]byte(`{"kind":"key.stolen","time":"2025-06-01T12:00:00Z","data":{}}`))
	w.integrate(t)
	return w.st
}

func is(want error) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("Verify error = %v, want %v", err, want)
		}
	}
}

func isMismatch(from, size uint64) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var m *audit.MismatchError
		if !errors.As(err, &m) || m.From != from || m.Size != size {
			t.Fatalf("Verify error = %v, want a MismatchError for entries %d..%d", err, from, size-1)
		}
	}
}

func isMissing(index uint64) func(*testing.T, error) {
	return isEntryError(index, audit.ErrMissingEntry)
}

func isEntryError(index uint64, want error) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var e *audit.EntryError
		if !errors.As(err, &e) || e.Index != index || !errors.Is(err, want) {
			t.Fatalf("Verify error = %v, want an EntryError at %d matching %v", err, index, want)
		}
	}
}

func isFork(old, new uint64) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var f *audit.ForkError
		if !errors.As(err, &f) || f.Old.Size != old || f.New.Size != new {
			t.Fatalf("Verify error = %v, want a ForkError between sizes %d and %d", err, old, new)
		}
	}
}

func isRollback(seen, got uint64) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var r *audit.RollbackError
		if !errors.As(err, &r) || r.Seen.Size != seen || r.Got.Size != got {
			t.Fatalf("Verify error = %v, want a RollbackError from %d to %d", err, seen, got)
		}
	}
}
