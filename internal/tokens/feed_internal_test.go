package tokens

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// eventStore is a store.Reader holding n revocation events, for the
// feed's cost; the rest of the Reader is not used.
type eventStore struct {
	store.Reader
	n uint64
}

func (s eventStore) Epoch(context.Context) (string, error) { return "e", nil }

func (s eventStore) LatestRevocationSeq(context.Context) (uint64, error) { return s.n, nil }

func (s eventStore) RevocationEvents(_ context.Context, after uint64, limit int) ([]store.RevocationEvent, error) {
	var events []store.RevocationEvent
	for seq := after + 1; seq <= s.n && len(events) < min(limit, store.MaxRevocationEvents); seq++ {
		events = append(events, store.RevocationEvent{Seq: seq, JTI: "jti-" + strconv.FormatUint(seq, 10), RevokedAt: time.Unix(0, 0)})
	}
	return events, nil
}

// Subscribers resuming from the first event (verifiers starting up) over
// a backlog larger than the 4096 events once kept signed cost one HSM
// signature per event in all, not one per event and subscriber.
func TestFeedResumesSignEachEventOnce(t *testing.T) {
	const events, subscribers = 5000, 3
	var signed atomic.Int64
	sign := func(_ context.Context, e store.RevocationEvent) (string, error) {
		signed.Add(1)
		return "set-" + e.JTI, nil
	}
	f := newFeed(eventStore{n: events}, sign, slog.New(slog.DiscardHandler), time.Hour, subscribers)
	if err := f.start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for range subscribers {
		zero := uint64(0)
		sub, err := f.subscribe(&zero, events)
		if err != nil {
			t.Fatal(err)
		}
		for want := uint64(1); want <= events; want++ {
			ev, err := sub.Next(t.Context())
			if err != nil || ev.Seq != want || ev.SET != "set-jti-"+strconv.FormatUint(want, 10) {
				t.Fatalf("event %d: %+v, %v", want, ev, err)
			}
		}
		sub.Close()
	}
	if got := signed.Load(); got != events {
		t.Errorf("%d subscribers resuming from 0 over %d events signed %d times, want %d", subscribers, events, got, events)
	}
}

// FuzzResumePoint: any Last-Event-ID is refused or resumes on the feed:
// from the start, or within the current epoch and not after the head.
func FuzzResumePoint(f *testing.F) {
	for _, seed := range []string{"", "0", "e.0", "e.3", "e.99999999", "99999999", "x.1", "e.", ".1", "e.-1", "e.1.2", "e.18446744073709551616"} {
		f.Add(seed)
	}
	fd := newFeed(eventStore{n: 5}, nil, slog.New(slog.DiscardHandler), time.Hour, 1)
	if err := fd.start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id string) {
		seq, err := fd.resumePoint(id, 5)
		if err != nil || seq == nil {
			if id != "" && err == nil {
				t.Fatalf("resumePoint(%q) = nil, nil", id)
			}
			return
		}
		if *seq != 0 && (!strings.HasPrefix(id, "e.") || *seq > 5) {
			t.Fatalf("resumePoint(%q) = %d: resumes off the feed", id, *seq)
		}
	})
}
