package ssf

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/sigil-dev/sigil/internal/store"
)

// Stream statuses (SSF 1.0 §8.1.2). A paused stream holds its events and
// delivers them once enabled again; a disabled one drops them, from when
// it is disabled until it is enabled (or paused) again.
const (
	StatusEnabled  = "enabled"
	StatusPaused   = "paused"
	StatusDisabled = "disabled"
)

// StreamStatus is a stream's status, as GET and POST /ssf/status carry it.
type StreamStatus struct {
	StreamID string `json:"stream_id"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
}

// storedConfig is a stream's configuration as the store keeps it: the
// receiver's view and the stream's status, which the receiver reads and
// sets through the status endpoint only.
type storedConfig struct {
	StreamConfig
	Status       string `json:"sigil_status,omitempty"` // "" is enabled
	StatusReason string `json:"sigil_status_reason,omitempty"`
	// Removed are the subjects the receiver removed (subjects.go), each
	// as its canonical JSON.
	Removed []json.RawMessage `json:"sigil_removed_subjects,omitempty"`
}

func (c storedConfig) status() StreamStatus {
	st := StreamStatus{Status: c.Status, Reason: c.StatusReason}
	if st.Status == "" {
		st.Status = StatusEnabled
	}
	return st
}

// Status returns the status of the caller's stream id.
func (t *Transmitter) Status(ctx context.Context, bearer string, peer *x509.Certificate, id string) (StreamStatus, error) {
	r, err := t.receiver(ctx, bearer, peer)
	if err != nil {
		return StreamStatus{}, err
	}
	s, err := t.owned(ctx, t.cfg.Store.Stream, r, id)
	if err != nil {
		return StreamStatus{}, err
	}
	c, err := decodeConfig(s)
	if err != nil {
		return StreamStatus{}, err
	}
	st := c.status()
	st.StreamID = id
	return st, nil
}

// SetStatus sets the status of the caller's stream req.StreamID, with the
// reason it gives, and returns it. Disabling a stream drops what it had
// not delivered; so does enabling a disabled one, for what committed while
// it was disabled.
func (t *Transmitter) SetStatus(ctx context.Context, bearer string, peer *x509.Certificate, req StreamStatus) (StreamStatus, error) {
	r, err := t.receiver(ctx, bearer, peer)
	if err != nil {
		return StreamStatus{}, err
	}
	switch {
	case req.StreamID == "":
		return StreamStatus{}, badRequest("stream_id is required")
	case req.Status != StatusEnabled && req.Status != StatusPaused && req.Status != StatusDisabled:
		return StreamStatus{}, badRequest(fmt.Sprintf("status must be %s, %s or %s", StatusEnabled, StatusPaused, StatusDisabled))
	case len(req.Reason) > maxDescription || strings.ContainsAny(req.Reason, "\r\n\x00"):
		return StreamStatus{}, badRequest(fmt.Sprintf("reason must be one line of at most %d bytes", maxDescription))
	}
	var was string
	err = t.reconfigure(ctx, r, req.StreamID, func(tx store.Tx, s *store.Stream, c *storedConfig) error {
		was = c.status().Status
		if req.Status == StatusDisabled || was == StatusDisabled {
			if err := drop(ctx, tx, s); err != nil {
				return err
			}
		}
		c.Status, c.StatusReason = req.Status, req.Reason
		return nil
	})
	if err != nil {
		return StreamStatus{}, err
	}
	t.log.InfoContext(ctx, "ssf: stream status set", "stream", req.StreamID, "receiver", r.ID, "was", was, "status", req.Status, "reason", req.Reason)
	t.wake()
	return req, nil
}

// drop moves s past every event committed so far, and its pending
// verification: a disabled stream holds nothing for later.
func drop(ctx context.Context, r store.RevocationFeed, s *store.Stream) error {
	head, err := r.LatestRevocationSeq(ctx)
	if err != nil {
		return err
	}
	s.Cursor = max(s.Cursor, head)
	s.Delivered = max(s.Delivered, s.Cursor)
	s.Acked = slices.DeleteFunc(s.Acked, func(n uint64) bool { return n <= s.Cursor })
	if len(s.Acked) == 0 {
		s.Acked = nil
	}
	s.VerificationDone = s.VerificationID
	return nil
}
