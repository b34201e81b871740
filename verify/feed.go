package verify

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/token"
)

// Feed client settings.
const (
	eventTokenRevoked       = "https://schemas.sigil.dev/secevent/token-revoked"
	eventCertificateRevoked = "https://schemas.sigil.dev/secevent/certificate-revoked"
	feedIdleTimeout         = 40 * time.Second // sigild sends a keep-alive every 15s
	backoffMin              = 100 * time.Millisecond
	backoffMax              = 5 * time.Second
	maxEventBytes           = 64 << 10
)

// errFeedEnded is a feed stream that the server closed.
var errFeedEnded = errors.New("verify: revocation feed ended")

// runFeed follows the revocation feed until ctx ends, reconnecting with
// jittered exponential backoff and resuming after the last event applied.
func (v *Verifier) runFeed(ctx context.Context) {
	last := "0" // from the first event: revocations before we started count
	backoff := backoffMin
	poisoned := false
	for ctx.Err() == nil {
		connected, err := v.follow(ctx, &last, &poisoned)
		v.revs.setUp(false)
		if ctx.Err() != nil {
			return
		}
		v.log.WarnContext(ctx, "verify: revocation feed down", "last_event_id", last, "err", err)
		if connected && !poisoned {
			backoff = backoffMin
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, backoffMax)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// follow reads one connection of the feed; connected reports whether the
// connection was established. After an event that does not verify the feed
// is poisoned: it does not count as up, and so MaxStaleness runs, until an
// event after it verifies.
func (v *Verifier) follow(ctx context.Context, last *string, poisoned *bool) (connected bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.Revocation.FeedURL, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", *last)
	resp, err := v.cfg.Client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return false, fmt.Errorf("GET %s: %s", v.cfg.Revocation.FeedURL, resp.Status)
	}
	idle := time.AfterFunc(feedIdleTimeout, cancel)
	defer idle.Stop()
	if !*poisoned {
		v.revs.setUp(true)
	}
	err = readEvents(resp.Body, func() { idle.Reset(feedIdleTimeout) }, func(id, data string) error {
		if err := v.applyEvent(ctx, data); err != nil {
			*poisoned = true
			return err
		}
		*poisoned = false
		v.revs.setUp(true)
		if id != "" {
			*last = id
		}
		return nil
	})
	return true, err
}

// readEvents reads a Server-Sent Events stream (the fields id and data;
// comments and other fields are skipped), calling alive for every line and
// apply for every event with data, until apply fails, the stream breaks,
// or it ends (errFeedEnded). A line or an event's data longer than
// maxEventBytes breaks the stream.
func readEvents(r io.Reader, alive func(), apply func(id, data string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxEventBytes)
	var id, data string
	for sc.Scan() {
		alive()
		line := sc.Text()
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "data":
			if data += value; len(data) > maxEventBytes {
				return errors.New("verify: revocation feed: event larger than 64 KiB")
			}
		case "":
			if line != "" { // a comment
				continue
			}
			if data != "" {
				if err := apply(id, data); err != nil {
					return err
				}
			}
			id, data = "", ""
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errFeedEnded
}

// applyEvent verifies a revocation SET and records the revoked jti, or
// the revoked certificate's thumbprint.
func (v *Verifier) applyEvent(ctx context.Context, set string) error {
	payload, err := v.verifySigned(ctx, set, token.EventToken)
	if err != nil {
		return fmt.Errorf("verify: revocation event: %w", err)
	}
	var claims struct {
		Issuer string                  `json:"iss"`
		TOE    int64                   `json:"toe"`
		Events map[string]revokedEvent `json:"events"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return fmt.Errorf("verify: revocation event: %w", err)
	}
	if claims.Issuer != v.cfg.Issuer || len(claims.Events) != 1 {
		return errors.New("verify: revocation event: wrong issuer, or not exactly one event")
	}
	if ev, ok := claims.Events[eventCertificateRevoked]; ok {
		if ev.X5tS256 == "" {
			return fmt.Errorf("verify: revocation event %d: certificate-revoked without x5t#S256", ev.Seq)
		}
		v.revs.addCertificate(ev.X5tS256, time.Unix(ev.NotAfter, 0))
		v.log.InfoContext(ctx, "verify: certificate revoked", "serial", ev.Serial, "x5t#S256", ev.X5tS256, "seq", ev.Seq)
		return nil
	}
	ev, ok := claims.Events[eventTokenRevoked]
	if !ok || ev.JTI == "" {
		return fmt.Errorf("verify: revocation event %s: no token-revoked or certificate-revoked event", strconv.FormatUint(ev.Seq, 10))
	}
	toe := time.Unix(claims.TOE, 0)
	if now := v.cfg.Now(); toe.After(now) {
		toe = now
	}
	v.revs.add(ev.JTI, toe)
	v.log.InfoContext(ctx, "verify: token revoked", "jti", ev.JTI, "seq", ev.Seq)
	return nil
}

// revokedEvent is the payload of a revocation event: a token's (JTI) or a
// certificate's (Serial, X5tS256, NotAfter).
type revokedEvent struct {
	JTI      string `json:"jti"`
	Serial   string `json:"serial"`
	X5tS256  string `json:"x5t#S256"`
	NotAfter int64  `json:"exp"`
	Seq      uint64 `json:"seq"`
}
