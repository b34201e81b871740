package tokens_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/token"
)

// deadline bounds how long a revocation may take to reach a subscriber.
const deadline = time.Second

// next waits for the next event of sub, at most deadline.
func next(t *testing.T, sub *tokens.Subscription) tokens.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	ev, err := sub.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return ev
}

// verifySET checks a revocation event against the published JWKS, as a
// resource server would, and returns the revoked token's jti.
func verifySET(t *testing.T, e *tokenstest.Env, ev tokens.Event) string {
	t.Helper()
	jwks, err := e.Service.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(ev.SET, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("SET: %v", err)
	}
	h := jws.Signatures[0].Protected
	keys := set.Key(h.KeyID)
	if len(keys) != 1 || h.ExtraHeaders["typ"] != string(token.EventToken) {
		t.Fatalf("SET header %+v: want a published kid and typ %s", h, string(token.EventToken))
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		t.Fatalf("SET signature: %v", err)
	}
	var c tokens.SETClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	r, ok := c.Events[tokens.EventTokenRevoked]
	if c.Issuer != tokenstest.Issuer || !ok || r.Seq != ev.Seq || c.SubID.ID != r.JTI || c.ID != "revocation-"+strconv.FormatUint(ev.Seq, 10) {
		t.Fatalf("SET claims %+v for event %d", c, ev.Seq)
	}
	return r.JTI
}

// Each token a revocation revokes reaches a subscriber, signed, in
// sequence order and within the deadline.
func TestFeedDeliversRevocations(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	ch := newChain(t, e)
	rs := e.Workload(t, "rs")
	sub, err := e.Service.Subscribe(t.Context(), rs.Cert, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	start := time.Now()
	if err := e.Service.Revoke(t.Context(), ch.a.Cert, ch.root.AccessToken); err != nil {
		t.Fatal(err)
	}
	var got, want []string
	var last uint64
	for _, r := range ch.derived() {
		want = append(want, r.JTI)
		ev := next(t, sub)
		if ev.Seq <= last {
			t.Errorf("event %d after %d", ev.Seq, last)
		}
		last = ev.Seq
		got = append(got, verifySET(t, e, ev))
	}
	t.Logf("%d revocations delivered %v after the revocation began", len(got), time.Since(start))
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("revoked %v, want %v", got, want)
	}
}

// A subscriber resumes after the last event it saw (Last-Event-ID),
// missing none and repeating none.
func TestFeedResumes(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	ch := newChain(t, e)
	rs := e.Workload(t, "rs")
	sub, err := e.Service.Subscribe(t.Context(), rs.Cert, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Service.Revoke(t.Context(), ch.a.Cert, ch.root.AccessToken); err != nil {
		t.Fatal(err)
	}
	first := next(t, sub)
	sub.Close()
	if err := e.Service.Revoke(t.Context(), ch.a.Cert, ch.unrelated.AccessToken); err != nil {
		t.Fatal(err)
	}
	sub, err = e.Service.Subscribe(t.Context(), rs.Cert, first.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var jti string
	for want := first.Seq + 1; want <= first.Seq+4; want++ {
		ev := next(t, sub)
		if ev.Seq != want {
			t.Fatalf("resumed with event %d, want %d", ev.Seq, want)
		}
		jti = verifySET(t, e, ev)
	}
	if jti != ch.unrelated.JTI {
		t.Errorf("last event for %s, want the revocation made while away (%s)", jti, ch.unrelated.JTI)
	}
}

// A revocation made by another replica on the same store reaches this
// replica's subscribers by polling.
func TestFeedAcrossReplicas(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	ch := newChain(t, e)
	other := e.Start(t, e.Config)
	sub, err := e.Service.Subscribe(t.Context(), e.Workload(t, "rs").Cert, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := other.Revoke(t.Context(), ch.a.Cert, ch.unrelated.AccessToken); err != nil {
		t.Fatal(err)
	}
	if jti := verifySET(t, e, next(t, sub)); jti != ch.unrelated.JTI {
		t.Errorf("event for %s, want %s", jti, ch.unrelated.JTI)
	}
}

func TestSubscribeErrors(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	rs := e.Workload(t, "rs")
	if _, err := e.Service.Subscribe(t.Context(), nil, ""); oauthErr(t, err).Code != tokens.InvalidClient {
		t.Errorf("without a certificate: %v, want invalid_client", err)
	}
	if _, err := e.Service.Subscribe(t.Context(), rs.Cert, "-1"); oauthErr(t, err).Code != tokens.InvalidRequest {
		t.Errorf("bad Last-Event-ID: %v, want invalid_request", err)
	}
	cfg := e.Config
	cfg.MaxSubscribers = 1
	svc := e.Start(t, cfg)
	sub, err := svc.Subscribe(t.Context(), rs.Cert, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := svc.Subscribe(t.Context(), rs.Cert, ""); !errors.Is(err, tokens.ErrFeedUnavailable) {
		t.Errorf("subscriber over the limit: %v, want ErrFeedUnavailable", err)
	}
}

// A resume point that is not on the feed is refused with ErrResync, so
// that the subscriber resynchronises rather than waits for events it
// would never get (ahead of the head) or skips the events of a restored
// database's new lineage whose numbers it saw in the old one (another
// epoch, or no epoch to tell).
func TestFeedRefusesResumeOffTheFeed(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	ch := newChain(t, e)
	rs := e.Workload(t, "rs")
	if err := e.Service.Revoke(t.Context(), ch.a.Cert, ch.unrelated.AccessToken); err != nil {
		t.Fatal(err)
	}
	epoch, err := e.Store.Epoch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"99999999", tokens.EventID(epoch, 99999999), tokens.EventID("another-epoch", 1), "1"} {
		if sub, err := e.Service.Subscribe(t.Context(), rs.Cert, id); !errors.Is(err, tokens.ErrResync) {
			if sub != nil {
				sub.Close()
			}
			t.Errorf("Subscribe(Last-Event-ID %q) = %v, want ErrResync", id, err)
		}
	}
	for _, id := range []string{"0", tokens.EventID(epoch, 0), tokens.EventID(epoch, 1)} {
		sub, err := e.Service.Subscribe(t.Context(), rs.Cert, id)
		if err != nil {
			t.Fatalf("Subscribe(Last-Event-ID %q) = %v", id, err)
		}
		if sub.Head() != tokens.EventID(epoch, 1) {
			t.Errorf("Head = %q, want %q", sub.Head(), tokens.EventID(epoch, 1))
		}
		sub.Close()
	}

	// The database gets a new epoch (an acknowledged restore): a service
	// started on it refuses the old epoch's ids and starts the new
	// lineage's from its first event.
	if _, err := e.Store.NewEpoch(t.Context()); err != nil {
		t.Fatal(err)
	}
	restarted := e.Start(t, e.Config)
	if _, err := restarted.Subscribe(t.Context(), rs.Cert, tokens.EventID(epoch, 1)); !errors.Is(err, tokens.ErrResync) {
		t.Fatalf("resume with the old epoch's id = %v, want ErrResync", err)
	}
	sub, err := restarted.Subscribe(t.Context(), rs.Cert, "0")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ev := next(t, sub)
	if ev.Seq != 1 || ev.Epoch == epoch || ev.ID() != tokens.EventID(ev.Epoch, 1) {
		t.Errorf("first event after the resync: %s, want event 1 of the new epoch", ev.ID())
	}
}
