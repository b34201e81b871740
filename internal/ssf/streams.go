package ssf

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sigil-dev/sigil/internal/store"
)

// StreamConfig is an SSF 1.0 stream configuration, as a receiver creates
// and reads it. The transmitter supplies stream_id, iss, aud (the
// receiver's SPIFFE ID: every SET of the stream carries it),
// events_supported and events_delivered, and a poll stream's endpoint_url.
type StreamConfig struct {
	StreamID        string   `json:"stream_id,omitempty"`
	Iss             string   `json:"iss,omitempty"`
	Aud             []string `json:"aud,omitempty"`
	EventsSupported []string `json:"events_supported,omitempty"`
	EventsRequested []string `json:"events_requested,omitempty"`
	EventsDelivered []string `json:"events_delivered,omitempty"`
	Delivery        Delivery `json:"delivery"`
	Description     string   `json:"description,omitempty"`
}

// Delivery says how a stream's SETs reach the receiver. A push stream's
// EndpointURL must be one configured for the receiver; AuthorizationHeader,
// if set, is sent with every push and never read back.
type Delivery struct {
	Method              string `json:"method"`
	EndpointURL         string `json:"endpoint_url,omitempty"`
	AuthorizationHeader string `json:"authorization_header,omitempty"`
}

// Bounds of a stream configuration.
const (
	maxDescription = 1024
	maxHeader      = 4096
	maxRequested   = 16
)

// CreateStream creates a stream for the receiver holding bearer (peer: the
// TLS client certificate, if any) from the requested configuration. The
// stream starts at the revocation feed's head: it receives the events
// committed after it was created.
func (t *Transmitter) CreateStream(ctx context.Context, bearer string, peer *x509.Certificate, req StreamConfig) (StreamConfig, error) {
	r, err := t.receiver(ctx, bearer, peer)
	if err != nil {
		return StreamConfig{}, err
	}
	cfg, err := t.newConfig(r, req, "")
	if err != nil {
		return StreamConfig{}, err
	}
	raw, _ := json.Marshal(cfg)
	err = t.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		head, err := tx.LatestRevocationSeq(ctx)
		if err != nil {
			return err
		}
		s := store.Stream{ID: cfg.StreamID, Receiver: r.ID, Config: raw, CreatedAt: t.now(), Cursor: head, Delivered: head}
		return tx.CreateStream(ctx, s, t.cfg.StreamsPerReceiver)
	})
	if errors.Is(err, store.ErrLimit) {
		return StreamConfig{}, &Error{Status: http.StatusConflict, Code: "too_many_streams",
			Description: fmt.Sprintf("a receiver may have at most %d streams: delete one first", t.cfg.StreamsPerReceiver)}
	}
	if err != nil {
		return StreamConfig{}, err
	}
	t.log.InfoContext(ctx, "ssf: stream created", "stream", cfg.StreamID, "receiver", r.ID, "method", cfg.Delivery.Method)
	t.wake()
	return cfg.public(), nil
}

// newConfig checks a requested configuration and completes it, for the
// stream id (a new one if id is empty).
func (t *Transmitter) newConfig(r Receiver, req StreamConfig, id string) (StreamConfig, error) {
	d := req.Delivery
	switch {
	case d.Method != MethodPoll && d.Method != MethodPush:
		return StreamConfig{}, badRequest(fmt.Sprintf("delivery.method must be %s or %s", MethodPush, MethodPoll))
	case d.Method == MethodPoll && d.EndpointURL != "":
		return StreamConfig{}, badRequest("delivery.endpoint_url of a poll stream is the transmitter's to set")
	case d.Method == MethodPush && !slices.Contains(r.PushEndpoints, d.EndpointURL):
		return StreamConfig{}, badRequest("delivery.endpoint_url is not a push endpoint configured for this receiver")
	case len(d.AuthorizationHeader) > maxHeader || strings.ContainsAny(d.AuthorizationHeader, "\r\n\x00"):
		return StreamConfig{}, badRequest(fmt.Sprintf("delivery.authorization_header must be one line of at most %d bytes", maxHeader))
	case len(req.Description) > maxDescription:
		return StreamConfig{}, badRequest(fmt.Sprintf("description is longer than %d bytes", maxDescription))
	case len(req.EventsRequested) > maxRequested || slices.ContainsFunc(req.EventsRequested, func(e string) bool { return len(e) > maxJTI }):
		return StreamConfig{}, badRequest(fmt.Sprintf("events_requested lists more than %d event types, or one longer than %d bytes", maxRequested, maxJTI))
	}
	if id == "" {
		b := make([]byte, 16)
		rand.Read(b)
		id = base64.RawURLEncoding.EncodeToString(b)
	}
	cfg := StreamConfig{
		StreamID: id, Iss: t.cfg.Issuer, Aud: []string{r.ID},
		EventsSupported: Supported, EventsRequested: req.EventsRequested, Delivery: d, Description: req.Description,
	}
	for _, ev := range req.EventsRequested {
		if supported(ev) && !slices.Contains(cfg.EventsDelivered, ev) {
			cfg.EventsDelivered = append(cfg.EventsDelivered, ev)
		}
	}
	if req.EventsRequested == nil {
		cfg.EventsDelivered = Supported
	}
	if d.Method == MethodPoll {
		cfg.Delivery.EndpointURL = strings.TrimSuffix(t.cfg.Issuer, "/") + PathPoll + cfg.StreamID
	}
	return cfg, nil
}

// public is the configuration as the receiver reads it: without the
// authorization header it gave.
func (c StreamConfig) public() StreamConfig {
	c.Delivery.AuthorizationHeader = ""
	return c
}

// Streams returns the caller's streams, or the one of id if id is not
// empty.
func (t *Transmitter) Streams(ctx context.Context, bearer string, peer *x509.Certificate, id string) ([]StreamConfig, error) {
	r, err := t.receiver(ctx, bearer, peer)
	if err != nil {
		return nil, err
	}
	all, err := t.cfg.Store.Streams(ctx)
	if err != nil {
		return nil, err
	}
	out := []StreamConfig{}
	for _, s := range all {
		if s.Receiver != r.ID || (id != "" && s.ID != id) {
			continue
		}
		c, err := decodeConfig(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c.public())
	}
	if id != "" && len(out) == 0 {
		return nil, errNoStream
	}
	return out, nil
}

// DeleteStream deletes the caller's stream id, with what it had not
// delivered.
func (t *Transmitter) DeleteStream(ctx context.Context, bearer string, peer *x509.Certificate, id string) error {
	r, err := t.receiver(ctx, bearer, peer)
	if err != nil {
		return err
	}
	err = t.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		if _, err := t.owned(ctx, tx.LockStream, r, id); err != nil {
			return err
		}
		return tx.DeleteStream(ctx, id)
	})
	if err != nil {
		return err
	}
	t.log.InfoContext(ctx, "ssf: stream deleted", "stream", id, "receiver", r.ID)
	t.wake()
	return nil
}

// Verify requests a verification event on the caller's stream id carrying
// state (SSF §8.1.4): it replaces one not yet delivered.
func (t *Transmitter) Verify(ctx context.Context, bearer string, peer *x509.Certificate, id, state string) error {
	r, err := t.receiver(ctx, bearer, peer)
	if err != nil {
		return err
	}
	if len(state) > maxDescription {
		return badRequest(fmt.Sprintf("state is longer than %d bytes", maxDescription))
	}
	err = t.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		s, err := t.owned(ctx, tx.LockStream, r, id)
		if err != nil {
			return err
		}
		s.VerificationID++
		s.VerificationState = state
		return tx.UpdateStream(ctx, s)
	})
	if err != nil {
		return err
	}
	t.wake()
	return nil
}

// owned reads the stream id with get (tx.LockStream to update it, the
// store's Stream to read it) if it is r's; another's, or none, is
// errNoStream.
func (t *Transmitter) owned(ctx context.Context, get func(context.Context, string) (store.Stream, error), r Receiver, id string) (store.Stream, error) {
	s, err := get(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && s.Receiver != r.ID) {
		if err == nil {
			t.log.WarnContext(ctx, "ssf: a receiver asked for another's stream", "stream", id, "receiver", r.ID, "owner", s.Receiver)
		}
		return store.Stream{}, errNoStream
	}
	return s, err
}

// reconfigure changes the configuration of r's stream id with change, in
// a transaction that holds the stream's lock.
func (t *Transmitter) reconfigure(ctx context.Context, r Receiver, id string, change func(store.Tx, *store.Stream, *storedConfig) error) error {
	return t.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		s, err := t.owned(ctx, tx.LockStream, r, id)
		if err != nil {
			return err
		}
		c, err := decodeConfig(s)
		if err != nil {
			return err
		}
		if err := change(tx, &s, &c); err != nil {
			return err
		}
		if s.Config, err = json.Marshal(c); err != nil {
			return err
		}
		return tx.UpdateStream(ctx, s)
	})
}

func decodeConfig(s store.Stream) (storedConfig, error) {
	var c storedConfig
	if err := json.Unmarshal(s.Config, &c); err != nil {
		return storedConfig{}, fmt.Errorf("ssf: stream %s: stored configuration: %w", s.ID, err)
	}
	return c, nil
}
