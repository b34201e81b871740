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

// errResync: the feed is not the one the verifier followed (a new epoch:
// the server's database was restored), or it is behind what the verifier
// has seen; the verifier reads it again from the start.
var errResync = errors.New("verify: revocation feed: resume point not on the feed; resynchronising from the start")

// feedHeadHeader names the feed's response header holding the id of its
// latest event ("<epoch>.<seq>").
const feedHeadHeader = "Sigil-Feed-Head"

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
		if errors.Is(err, errResync) && last != "0" {
			// Read the feed again from its first event, at once; what
			// was learned from the old one stays revoked.
			v.log.WarnContext(ctx, "verify: revocation feed resynchronising from the start", "last_event_id", last, "err", err)
			last = "0"
			continue
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
	if resp.StatusCode == http.StatusConflict {
		return false, fmt.Errorf("%w: GET %s: %s", errResync, v.cfg.Revocation.FeedURL, resp.Status)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return false, fmt.Errorf("GET %s: %s", v.cfg.Revocation.FeedURL, resp.Status)
	}
	if head := resp.Header.Get(feedHeadHeader); !onFeed(*last, head) {
		return false, fmt.Errorf("%w: resuming after %s, but the feed's head is %s", errResync, *last, head)
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
			if !follows(*last, id) {
				return fmt.Errorf("%w: event %s after %s", errResync, id, *last)
			}
			*last = id
		}
		return nil
	})
	return true, err
}

// eventID splits a feed event id "<epoch>.<seq>"; a bare "<seq>" has no
// epoch. ok is false for an id that is neither.
func eventID(id string) (epoch string, seq uint64, ok bool) {
	epoch, text, found := strings.Cut(id, ".")
	if !found {
		epoch, text = "", id
	}
	seq, err := strconv.ParseUint(text, 10, 64)
	return epoch, seq, err == nil
}

// onFeed reports whether the resume point last is on a feed whose head is
// head: of its epoch and not after its head. The start ("0") is on every
// feed, and a feed that names no head (an older server) is taken as it
// is.
func onFeed(last, head string) bool {
	if head == "" || last == "0" {
		return true
	}
	le, ls, lok := eventID(last)
	he, hs, hok := eventID(head)
	return lok && hok && le == he && ls <= hs
}

// follows reports whether event id may follow the event last: the first
// of a feed after the start, or a later event of the same epoch. An event
// of another epoch, or not after last, means the feed is not the one
// followed.
func follows(last, id string) bool {
	ie, is, iok := eventID(id)
	if !iok {
		return false
	}
	le, ls, lok := eventID(last)
	if last == "0" || !lok {
		return true
	}
	return ie == le && is > ls
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
