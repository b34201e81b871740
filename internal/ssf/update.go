package ssf

import (
	"context"
	"crypto/x509"
	"slices"

	"github.com/sigil-dev/sigil/internal/store"
)

// StreamUpdate is the body of PATCH and PUT /ssf/stream (SSF 1.0 §8.1.1.3
// and §8.1.1.4): the receiver-supplied properties to change. The
// transmitter-supplied ones (iss, aud, events_supported,
// events_delivered) may be present, as a receiver that read the
// configuration sends them back, but must equal the stream's.
type StreamUpdate struct {
	StreamID        string    `json:"stream_id"`
	Iss             *string   `json:"iss,omitempty"`
	Aud             []string  `json:"aud,omitempty"`
	EventsSupported []string  `json:"events_supported,omitempty"`
	EventsDelivered []string  `json:"events_delivered,omitempty"`
	EventsRequested *[]string `json:"events_requested,omitempty"`
	Delivery        *Delivery `json:"delivery,omitempty"`
	Description     *string   `json:"description,omitempty"`
}

// UpdateStream changes the caller's stream req.StreamID and returns its new
// configuration. With replace (PUT) the properties req leaves out are
// cleared (events_requested: every supported event, as at creation;
// delivery is required); without (PATCH) they are kept. A delivery
// without an authorization_header keeps the stream's for the same
// endpoint, since the receiver never reads it back; a poll stream's
// endpoint_url, if given, must be the transmitter's. The delivery is
// checked as at creation. The stream's position and status are kept.
func (t *Transmitter) UpdateStream(ctx context.Context, bearer string, peer *x509.Certificate, req StreamUpdate, replace bool) (StreamConfig, error) {
	r, err := t.receiver(ctx, bearer, peer)
	if err != nil {
		return StreamConfig{}, err
	}
	if req.StreamID == "" {
		return StreamConfig{}, badRequest("stream_id is required")
	}
	var cfg StreamConfig
	err = t.reconfigure(ctx, r, req.StreamID, func(_ store.Tx, s *store.Stream, c *storedConfig) error {
		want, err := c.updated(req, replace)
		if err != nil {
			return err
		}
		if cfg, err = t.newConfig(r, want, s.ID); err != nil {
			return err
		}
		c.StreamConfig = cfg
		return nil
	})
	if err != nil {
		return StreamConfig{}, err
	}
	t.log.InfoContext(ctx, "ssf: stream updated", "stream", req.StreamID, "receiver", r.ID, "method", cfg.Delivery.Method, "replace", replace)
	t.wake()
	return cfg.public(), nil
}

// updated returns the configuration req asks for, to be checked by
// newConfig, or why req may not be applied to c.
func (c storedConfig) updated(req StreamUpdate, replace bool) (StreamConfig, error) {
	switch {
	case req.Iss != nil && *req.Iss != c.Iss:
		return StreamConfig{}, badRequest("iss is the transmitter's: it cannot be changed")
	case req.Aud != nil && !slices.Equal(req.Aud, c.Aud):
		return StreamConfig{}, badRequest("aud is the transmitter's: it cannot be changed")
	case req.EventsSupported != nil && !slices.Equal(req.EventsSupported, c.EventsSupported):
		return StreamConfig{}, badRequest("events_supported is the transmitter's: it cannot be changed")
	case req.EventsDelivered != nil && !slices.Equal(req.EventsDelivered, c.EventsDelivered):
		return StreamConfig{}, badRequest("events_delivered is the transmitter's: change events_requested")
	}
	want := StreamConfig{EventsRequested: c.EventsRequested, Delivery: c.Delivery, Description: c.Description}
	if replace {
		want = StreamConfig{}
	}
	if req.EventsRequested != nil {
		want.EventsRequested = *req.EventsRequested
	}
	if req.Description != nil {
		want.Description = *req.Description
	}
	if req.Delivery != nil {
		d := *req.Delivery
		if d.AuthorizationHeader == "" && d.Method == c.Delivery.Method && d.EndpointURL == c.Delivery.EndpointURL {
			d.AuthorizationHeader = c.Delivery.AuthorizationHeader
		}
		want.Delivery = d
	} else if replace {
		return StreamConfig{}, badRequest("delivery is required")
	}
	if d := &want.Delivery; d.Method == MethodPoll && c.Delivery.Method == MethodPoll && d.EndpointURL == c.Delivery.EndpointURL {
		d.EndpointURL = "" // the transmitter's, read back: newConfig sets it again
	}
	return want, nil
}
