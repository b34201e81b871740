package attest

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"slices"
	"testing"

	"github.com/google/go-attestation/attest"

	"github.com/sigil-dev/sigil/testenv"
)

// devEvents are the dev boot's events as replay hands them to the Secure
// Boot check: parsed and replayed against the PCRs they produce.
func devEvents(t testing.TB) []attest.Event {
	t.Helper()
	dev := testenv.DevMeasurements()
	el, err := attest.ParseEventLog(dev.Log())
	if err != nil {
		t.Fatal(err)
	}
	var pcrs []attest.PCR
	for i, d := range dev.PCRs(crypto.SHA256) {
		pcrs = append(pcrs, attest.PCR{Index: i, Digest: d, DigestAlg: crypto.SHA256})
	}
	events, err := el.Verify(pcrs)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// secureBootEvent is the index of the SecureBoot variable's event.
func secureBootEvent(t testing.TB, events []attest.Event) int {
	t.Helper()
	name := []byte{'S', 0, 'e', 0, 'c', 0, 'u', 0, 'r', 0, 'e', 0, 'B', 0, 'o', 0, 'o', 0, 't', 0}
	for i, e := range events {
		if e.Index == 7 && bytes.Contains(e.Data, name) {
			return i
		}
	}
	t.Fatal("no SecureBoot variable event in the dev log")
	return 0
}

// A cached verdict is go-attestation's, and any change to what it reads
// is a new verdict: Secure Boot turned off after an "on" was cached, an
// event whose data no longer matches its digest, another event type.
func TestSecureBootCacheIsParse(t *testing.T) {
	t.Parallel()
	c := newSecureBootCache(8)
	events := devEvents(t)
	if !parseSecureBoot(events) {
		t.Fatal("go-attestation says the dev boot has Secure Boot off")
	}
	for range 2 {
		if !c.enabled(events) {
			t.Fatal("cached verdict: Secure Boot off for the dev boot")
		}
	}
	if c.c.Len() != 1 {
		t.Fatalf("%d entries after the same events twice, want 1", c.c.Len())
	}
	sb := secureBootEvent(t, events)
	with := func(mutate func(e *attest.Event)) []attest.Event {
		out := slices.Clone(events)
		e := out[sb]
		e.Data, e.Digest = slices.Clone(e.Data), slices.Clone(e.Digest)
		mutate(&e)
		out[sb] = e
		return out
	}
	off := with(func(e *attest.Event) {
		e.Data[len(e.Data)-1] = 0
		d := sha256.Sum256(e.Data)
		e.Digest = d[:]
	})
	tests := map[string][]attest.Event{
		"secure boot off":            off,
		"data not matching digest":   with(func(e *attest.Event) { e.Data[len(e.Data)-1] = 0 }),
		"variable event of PCR 8":    with(func(e *attest.Event) { e.Index = 8 }),
		"variable as authority":      with(func(e *attest.Event) { e.Type++ }),
		"secure boot event dropped":  slices.Delete(slices.Clone(events), sb, sb+1),
		"secure boot event repeated": slices.Insert(slices.Clone(events), sb, events[sb]),
	}
	for name, ev := range tests {
		if parseSecureBoot(ev) {
			t.Fatalf("%s: go-attestation says Secure Boot on; the test's mutation is wrong", name)
		}
		if c.enabled(ev) {
			t.Errorf("%s: Secure Boot on, from the cached verdict of the unchanged events", name)
		}
	}
	if !c.enabled(events) {
		t.Error("the unchanged events' verdict changed")
	}
	var nilCache *secureBootCache
	if !nilCache.enabled(events) || nilCache.enabled(off) {
		t.Error("a nil cache does not parse")
	}
}

// Every field ParseSecurebootState reads is in the key, and a byte moved
// from one field to the next makes another key.
func TestSecureBootKey(t *testing.T) {
	t.Parallel()
	base := []attest.Event{{Index: 7, Type: 1, Data: []byte("ab"), Digest: []byte("cd")}, {Index: 7, Type: 2, Data: []byte("e"), Digest: []byte("f")}}
	edits := map[string]func(ev []attest.Event){
		"index":           func(ev []attest.Event) { ev[0].Index = 6 },
		"type":            func(ev []attest.Event) { ev[0].Type = 3 },
		"data":            func(ev []attest.Event) { ev[0].Data = []byte("ax") },
		"digest":          func(ev []attest.Event) { ev[0].Digest = []byte("cx") },
		"data to digest":  func(ev []attest.Event) { ev[0].Data, ev[0].Digest = []byte("a"), []byte("bcd") },
		"digest to event": func(ev []attest.Event) { ev[0].Digest, ev[1].Data = []byte("c"), []byte("de") },
		"order":           func(ev []attest.Event) { ev[0], ev[1] = ev[1], ev[0] },
	}
	seen := map[[sha256.Size]byte]string{eventsKey(base): "base", eventsKey(base[:1]): "first only"}
	for name, edit := range edits {
		ev := slices.Clone(base)
		edit(ev)
		k := eventsKey(ev)
		if other, ok := seen[k]; ok {
			t.Errorf("%s: same key as %s", name, other)
		}
		seen[k] = name
	}
}

// The cache stays at its bound however many boots it sees.
func TestSecureBootCacheBounded(t *testing.T) {
	t.Parallel()
	c := newSecureBootCache(16)
	for i := range 200 {
		c.enabled([]attest.Event{{Index: 7, Type: 1, Data: []byte{byte(i), byte(i >> 8)}}})
	}
	if n := c.c.Len(); n > 16 {
		t.Errorf("%d entries, bound 16", n)
	}
}

// BenchmarkSecureBoot is the Secure Boot check of one renewal of the dev
// boot: parsed (as before the cache) and from the cache (the key's hash).
func BenchmarkSecureBoot(b *testing.B) {
	events := devEvents(b)
	b.Run("parse", func(b *testing.B) {
		for b.Loop() {
			parseSecureBoot(events)
		}
	})
	b.Run("cached", func(b *testing.B) {
		c := newSecureBootCache(secureBootCacheSize)
		for b.Loop() {
			c.enabled(events)
		}
	})
}
