package ssf

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"
)

// PollRequest is an RFC 8936 §2.2 poll request. MaxEvents absent is
// DefaultMaxEvents, 0 acknowledges only; returnImmediately false waits up
// to LongPoll for a SET.
type PollRequest struct {
	MaxEvents         *int              `json:"maxEvents,omitempty"`
	ReturnImmediately bool              `json:"returnImmediately"`
	Ack               []string          `json:"ack,omitempty"`
	SetErrs           map[string]SetErr `json:"setErrs,omitempty"`
}

// SetErr is a receiver's refusal of a SET (RFC 8936 §2.4).
type SetErr struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

// PollResponse is an RFC 8936 §2.5 poll response: the SETs by jti.
type PollResponse struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable,omitempty"`
}

// Poll answers an RFC 8936 poll of the caller's poll stream id: it records
// the acknowledgements and refusals, then hands out the SETs not yet
// acknowledged, waiting for one (up to LongPoll, or until ctx ends) unless
// returnImmediately or maxEvents 0. SETs handed out and not acknowledged
// are handed out again by the next poll.
func (t *Transmitter) Poll(ctx context.Context, bearer string, peer *x509.Certificate, id string, req PollRequest) (PollResponse, error) {
	r, err := t.receiver(ctx, bearer, peer)
	if err != nil {
		return PollResponse{}, err
	}
	x, err := req.exchange()
	if err != nil {
		return PollResponse{}, err
	}
	if !t.enter(r.ID) {
		return PollResponse{}, errTooManyPolls
	}
	defer t.leave(r.ID)
	deadline := time.NewTimer(t.cfg.LongPoll)
	defer deadline.Stop()
	for {
		changed := t.changes()
		b, err := t.deliver(ctx, id, r.ID, MethodPoll, x)
		if err != nil {
			return PollResponse{}, err
		}
		if len(b.items) > 0 || req.ReturnImmediately || x.max == 0 {
			return t.response(ctx, b)
		}
		x.acks, x.errs = nil, nil
		select {
		case <-changed:
		case <-deadline.C:
			return PollResponse{Sets: map[string]string{}}, nil
		case <-ctx.Done():
			return PollResponse{}, ctx.Err()
		}
	}
}

func (t *Transmitter) response(ctx context.Context, b batch) (PollResponse, error) {
	sets, err := t.signed(ctx, b)
	if err != nil {
		return PollResponse{}, err
	}
	t.metrics.count("poll", "handed_out", len(sets))
	out := PollResponse{Sets: make(map[string]string, len(sets)), MoreAvailable: b.more}
	for i, p := range b.items {
		out.Sets[p.jti] = sets[i]
	}
	return out, nil
}

// exchange checks the request's bounds.
func (req PollRequest) exchange() (exchange, error) {
	x := exchange{acks: req.Ack, errs: req.SetErrs, max: DefaultMaxEvents}
	if req.MaxEvents != nil {
		x.max = *req.MaxEvents
	}
	switch {
	case x.max < 0 || x.max > MaxEvents:
		return exchange{}, badRequest(fmt.Sprintf("maxEvents must be 0 to %d", MaxEvents))
	case len(req.Ack)+len(req.SetErrs) > maxAcks:
		return exchange{}, badRequest(fmt.Sprintf("at most %d ack and setErrs in one poll", maxAcks))
	}
	for _, jti := range req.Ack {
		if len(jti) > maxJTI {
			return exchange{}, badRequest(fmt.Sprintf("an ack longer than %d bytes", maxJTI))
		}
	}
	for jti, e := range req.SetErrs {
		if len(jti) > maxJTI || len(e.Err) > maxJTI || len(e.Description) > maxDescription {
			return exchange{}, badRequest("a setErrs entry too long")
		}
	}
	return x, nil
}

// enter counts a poll of receiver in, unless it already has
// 2*StreamsPerReceiver polls running: long polls hold a goroutine each.
func (t *Transmitter) enter(receiver string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.polls[receiver] >= 2*t.cfg.StreamsPerReceiver {
		return false
	}
	t.polls[receiver]++
	return true
}

func (t *Transmitter) leave(receiver string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.polls[receiver]--; t.polls[receiver] == 0 {
		delete(t.polls, receiver)
	}
}
