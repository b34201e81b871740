package policy

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
)

// TestCallerKey: callers that differ in anything have different keys, so
// the cache never answers for facts it was not built from.
func TestCallerKey(t *testing.T) {
	base, ok := devCaller().key()
	if again, _ := devCaller().key(); !ok || again != base {
		t.Fatal("equal callers have different keys")
	}
	tests := []struct {
		name string
		edit func(c *Caller)
	}{
		{"SPIFFE ID", func(c *Caller) { c.SPIFFEID += "x" }},
		{"policy version", func(c *Caller) { c.PolicyVersion += "x" }},
		{"text moved between fields", func(c *Caller) {
			c.SPIFFEID, c.PolicyVersion = c.SPIFFEID+c.PolicyVersion[:1], c.PolicyVersion[1:]
		}},
		{"EK hash", func(c *Caller) { c.Device.EKHash = sha("other") }},
		{"EK issuer", func(c *Caller) { c.Device.EKIssuer = "" }},
		{"AK hash", func(c *Caller) { c.Device.AKHash = sha("other") }},
		{"secure boot", func(c *Caller) { c.Device.SecureBoot = false }},
		{"PCR value", func(c *Caller) { c.Device.PCRs[7] = sha("other") }},
		{"PCR index", func(c *Caller) { c.Device.PCRs = map[int][]byte{0: sha("bootloader"), 8: sha("kernel")} }},
		{"PCR added", func(c *Caller) { c.Device.PCRs[9] = sha("other") }},
		{"PCR empty", func(c *Caller) { c.Device.PCRs[9] = nil }},
		{"event changed", func(c *Caller) { c.Device.EventDigests[1] = sha("other") }},
		{"event added", func(c *Caller) { c.Device = debugDevice() }},
		{"events split otherwise", func(c *Caller) {
			all := bytes.Join(c.Device.EventDigests, nil)
			c.Device.EventDigests = [][]byte{all[:40], all[40:]}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := devCaller()
			tt.edit(&c)
			if key, ok := c.key(); !ok || key == base {
				t.Errorf("key %q, %v: want another key than the unedited caller's", key, ok)
			}
		})
	}
}

// TestCallerKeyCoversEveryField fails when Caller or DeviceFacts gains a
// field: Caller.key must encode it too (and TestCallerKey edit it), or the
// cache would answer for a caller whose new fact differs.
func TestCallerKeyCoversEveryField(t *testing.T) {
	for typ, covered := range map[reflect.Type]int{reflect.TypeFor[Caller](): 3, reflect.TypeFor[DeviceFacts](): 6} {
		if n := typ.NumField(); n != covered {
			t.Errorf("%s has %d fields, Caller.key encodes %d: encode the new ones", typ.Name(), n, covered)
		}
	}
}

// TestDecideCachesCallers: a Set builds each caller's entities once, and
// decides for each caller on its own facts.
func TestDecideCachesCallers(t *testing.T) {
	s := mustLoad(t, "testdata/dev")
	onDebug := devCaller()
	onDebug.Device = debugDevice()
	noAK := devCaller()
	noAK.Device.AKHash = nil
	for i, tt := range []struct {
		caller  Caller
		allowed bool
	}{{devCaller(), true}, {onDebug, false}, {devCaller(), true}, {onDebug, false}, {noAK, false}} {
		d := s.Decide(TokenRequest{Caller: tt.caller, Audience: "spiffe://sigil.test/workload/db"})
		if d.Allowed != tt.allowed {
			t.Errorf("decision %d: %v, want allowed %v", i, d, tt.allowed)
		}
	}
	if n := len(s.callers.m); n != 2 {
		t.Errorf("%d callers cached, want 2 (an invalid one is not)", n)
	}
}

// TestCallerOutOfRangePCR: a PCR index no key covers makes an invalid
// request, not a cache hit of the caller without it.
func TestCallerOutOfRangePCR(t *testing.T) {
	s := mustLoad(t, "testdata/dev")
	req := TokenRequest{Caller: devCaller(), Audience: "spiffe://sigil.test/workload/db"}
	if d := s.Decide(req); !d.Allowed {
		t.Fatalf("Decide = %v, want allowed", d)
	}
	req.Caller.Device.PCRs[maxPCR+1] = sha("other")
	if _, ok := req.Caller.key(); ok {
		t.Error("a caller with PCR 24 has a key")
	}
	if d := s.Decide(req); d.Allowed || d.Evaluated != 0 {
		t.Errorf("Decide = %v, want an invalid request", d)
	}
}

func TestCallerCacheBounded(t *testing.T) {
	cc := newCallerCache()
	for i := range maxCachedCallers + 10 {
		c := devCaller()
		c.SPIFFEID = fmt.Sprintf("spiffe://sigil.test/workload/w%d", i)
		if _, _, err := cc.entities(c); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(cc.m); n != maxCachedCallers {
		t.Errorf("%d callers cached, want %d", n, maxCachedCallers)
	}
}

// key is c's cache key as a string.
func (c Caller) key() (string, bool) {
	b, ok := c.appendKey(nil)
	return string(b), ok
}
