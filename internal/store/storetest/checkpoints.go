package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// checkpointRace: writers put checkpoints of sizes in an order of their
// own, each with a note of its own, as replicas whose leases overlap
// would. Checked against the wall clock, which the processes share: no
// checkpoint is recorded after one of its size or larger was (a put that
// began after another returned nil never succeeds for a size not above
// it); every put refused was refused for a size recorded meanwhile; and
// the store holds exactly the checkpoints whose puts succeeded.
var checkpointRace = race{
	name: "PutCheckpointFenced",
	setup: func(t testing.TB, st store.Store) {
		AppendEntries(t, st, "e", raceLogSize)
	},
	work: func(ctx context.Context, st store.Store, w, n int) ([]string, error) {
		var lines []string
		for k := range 8 {
			size := uint64((w*5+k*11)%raceLogSize) + 1
			began := time.Now().UnixNano()
			err := st.PutCheckpoint(ctx, size, []byte(checkpointNote(w, size)))
			ended := time.Now().UnixNano()
			outcome := "ok"
			switch {
			case errors.Is(err, store.ErrConflict):
				outcome = "refused"
			case err != nil:
				return nil, err
			}
			lines = append(lines, fmt.Sprintf("%s %d %d %d %d", outcome, size, began, ended, w))
		}
		return lines, nil
	},
	check: func(t testing.TB, st store.Store, reports [][]string) {
		var oks, refused []put
		for _, r := range reports {
			for _, line := range r {
				p := parsePut(t, line)
				if p.ok {
					oks = append(oks, p)
				} else {
					refused = append(refused, p)
				}
			}
		}
		checkFenced(t, oks, refused)
		cs, err := st.Checkpoints(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		stored := map[string]bool{}
		for _, c := range cs {
			stored[string(c.Note)] = true
		}
		for _, p := range oks {
			if !stored[checkpointNote(p.writer, p.size)] {
				t.Errorf("writer %d's checkpoint %d succeeded but is not stored", p.writer, p.size)
			}
		}
		if len(cs) != len(oks) {
			t.Errorf("%d checkpoints stored, %d puts succeeded", len(cs), len(oks))
		}
		t.Logf("%d checkpoints recorded, %d refused", len(oks), len(refused))
	},
}

const raceLogSize = 64

func checkpointNote(w int, size uint64) string { return fmt.Sprintf("w%d-%d", w, size) }

// put is one PutCheckpoint a writer reported: outcome, size, wall clock
// nanoseconds at its call and its return.
type put struct {
	ok           bool
	size         uint64
	began, ended int64
	writer       int
}

func parsePut(t testing.TB, line string) put {
	f := strings.Fields(line)
	if len(f) != 5 {
		t.Fatalf("report %q", line)
	}
	var p put
	var err [4]error
	p.ok = f[0] == "ok"
	p.size, err[0] = strconv.ParseUint(f[1], 10, 64)
	p.began, err[1] = strconv.ParseInt(f[2], 10, 64)
	p.ended, err[2] = strconv.ParseInt(f[3], 10, 64)
	p.writer, err[3] = strconv.Atoi(f[4])
	if e := errors.Join(err[:]...); e != nil {
		t.Fatalf("report %q: %v", line, e)
	}
	return p
}

// checkFenced checks the puts against the fence.
func checkFenced(t testing.TB, oks, refused []put) {
	for _, a := range oks {
		for _, b := range oks {
			if b.size <= a.size && a != b && a.ended < b.began {
				t.Errorf("checkpoint %d (writer %d) recorded after checkpoint %d (writer %d) had been", b.size, b.writer, a.size, a.writer)
			}
		}
	}
	for _, r := range refused {
		reason := false
		for _, a := range oks {
			reason = reason || (a.size >= r.size && a.began < r.ended)
		}
		if !reason {
			t.Errorf("checkpoint %d (writer %d) refused, but none of its size or larger was recorded before it returned", r.size, r.writer)
		}
	}
}
