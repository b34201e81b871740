package server

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/token"
)

// feedStream reads Server-Sent Events.
type feedStream struct {
	events     chan sseEvent
	keepAlives chan struct{}
}

type sseEvent struct{ id, data string }

func (o *oauthServer) subscribe(t *testing.T, c *http.Client, lastID string) *feedStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.url+tokens.PathRevocations, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	c.Timeout = 0
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" || resp.ProtoMajor != 2 {
		t.Fatalf("feed: %s %d %v, want an HTTP/2 event stream", resp.Proto, resp.StatusCode, resp.Header)
	}
	f := &feedStream{events: make(chan sseEvent, 64), keepAlives: make(chan struct{}, 64)}
	go func() {
		defer resp.Body.Close()
		var ev sseEvent
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "" && ev.data != "":
				f.events <- ev
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == ": keep-alive":
				select {
				case f.keepAlives <- struct{}{}:
				default: // nobody waits for that many
				}
			}
		}
	}()
	return f
}

// next waits a second at most for the next event.
func (f *feedStream) next(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev := <-f.events:
		return ev
	case <-time.After(time.Second):
		t.Fatal("no revocation event within a second")
		return sseEvent{}
	}
}

// keepAlive waits for the next keep-alive comment.
func (f *feedStream) keepAlive(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case <-f.keepAlives:
	case <-time.After(limit):
		t.Fatalf("no keep-alive on the revocation feed within %v", limit)
	}
}

// setJTI verifies a SET against the served JWKS and returns the revoked
// token's jti.
func (o *oauthServer) setJTI(t *testing.T, set string) string {
	t.Helper()
	jwks, err := o.Service.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var keys jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &keys); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(set, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	k := keys.Key(jws.Signatures[0].Protected.KeyID)
	if len(k) != 1 || jws.Signatures[0].Protected.ExtraHeaders["typ"] != string(token.EventToken) {
		t.Fatalf("SET header %+v", jws.Signatures[0].Protected)
	}
	payload, err := jws.Verify(k[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	var c tokens.SETClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c.Events[tokens.EventTokenRevoked].JTI
}

// jtiOf reads the jti of a JWT without verifying it.
func jtiOf(t *testing.T, tok string) string {
	t.Helper()
	var c struct {
		JTI string `json:"jti"`
	}
	payload, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(payload.UnsafePayloadWithoutVerification(), &c); err != nil {
		t.Fatal(err)
	}
	return c.JTI
}

// counter returns the value of the counter name in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// brokenLog is a store whose audit appends fail, as when the log's table
// cannot be written.
type brokenLog struct{ store.Store }

func (b brokenLog) Tx(ctx context.Context, fn func(store.Tx) error) error {
	return b.Store.Tx(ctx, func(tx store.Tx) error { return fn(brokenTx{tx}) })
}

type brokenTx struct{ store.Tx }

func (brokenTx) AppendAudit(context.Context, store.AuditEntry) (uint64, error) {
	return 0, errors.New("audit_entries: disk I/O error")
}
