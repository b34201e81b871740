package store

import (
	"strconv"
	"testing"
	"time"
)

// TestKnownTokensBounded: KnownTokens forgets the expired first when
// full, and never holds more than maxKnownTokens.
func TestKnownTokensBounded(t *testing.T) {
	t.Parallel()
	var k KnownTokens
	live := Token{JTI: "ext:live", ExpiresAt: time.Now().Add(time.Hour)}
	k.Add(live)
	for i := range maxKnownTokens - 1 {
		k.Add(Token{JTI: "ext:" + strconv.Itoa(i), ExpiresAt: time.Now().Add(-time.Minute)})
	}
	k.Add(Token{JTI: "ext:new", ExpiresAt: time.Now().Add(time.Hour)})
	if !k.Known("ext:live") || !k.Known("ext:new") || k.Known("ext:0") || len(k.m) != 2 {
		t.Fatalf("after adding to a full set: %d known, live %v, new %v; want the two unexpired", len(k.m), k.Known("ext:live"), k.Known("ext:new"))
	}
	for i := range 3 * maxKnownTokens {
		k.Add(Token{JTI: "ext:x" + strconv.Itoa(i), ExpiresAt: time.Now().Add(time.Hour)})
		if len(k.m) > maxKnownTokens {
			t.Fatalf("%d known, more than %d", len(k.m), maxKnownTokens)
		}
	}
	k.Add(live)
	k.Forget(live.JTI)
	if k.Known(live.JTI) {
		t.Fatal("forgotten token still known")
	}
}
