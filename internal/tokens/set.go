package tokens

import (
	"context"
	"fmt"
	"strconv"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/token"
)

// Revocation events are Security Event Tokens (RFC 8417), typ
// token.EventToken.
const (
	// EventTokenRevoked is the event type URI of a token revocation, the
	// one member of a SET's "events" claim. Its payload is RevokedEvent.
	EventTokenRevoked = "https://schemas.sigil.dev/secevent/token-revoked"
)

// SETClaims are the claims of a revocation event:
//
//	{"iss": issuer, "iat": revocation time, "jti": "revocation-<seq>",
//	 "toe": revocation time, "sub_id": {"format": "opaque", "id": <token jti>},
//	 "events": {EventTokenRevoked: {"jti": <token jti>, "seq": <seq>, "reason": …}}}
//
// The claims derive from the stored event only, so every replica signs
// the same claims for the same event.
type SETClaims struct {
	Issuer   string                  `json:"iss"`
	IssuedAt int64                   `json:"iat"`
	ID       string                  `json:"jti"`
	TOE      int64                   `json:"toe"`
	SubID    SubjectID               `json:"sub_id"`
	Events   map[string]RevokedEvent `json:"events"`
}

// SubjectID is an RFC 9493 subject identifier of format "opaque": the
// revoked token's jti.
type SubjectID struct {
	Format string `json:"format"`
	ID     string `json:"id"`
}

// RevokedEvent is the payload of EventTokenRevoked. Seq orders the events
// and is the SSE event id.
type RevokedEvent struct {
	JTI    string `json:"jti"`
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason,omitempty"`
}

func setClaims(issuer string, e store.RevocationEvent) SETClaims {
	at := e.RevokedAt.Unix()
	return SETClaims{
		Issuer: issuer, IssuedAt: at, ID: "revocation-" + strconv.FormatUint(e.Seq, 10), TOE: at,
		SubID:  SubjectID{Format: "opaque", ID: e.JTI},
		Events: map[string]RevokedEvent{EventTokenRevoked: {JTI: e.JTI, Seq: e.Seq, Reason: e.Reason}},
	}
}

// signEvent signs the SET of a revocation event through the key set that
// signs tokens: the version that signs access tokens now, so that it
// verifies against the published JWKS, refused when the key set is stale
// like a token. typ secevent+jwt keeps SETs from being taken for access
// tokens (at+jwt) and the reverse.
func (s *Service) signEvent(ctx context.Context, e store.RevocationEvent) (string, error) {
	set, _, err := s.cfg.Keys.Sign(ctx, token.EventToken, setClaims(s.issuer, e))
	if err != nil {
		return "", fmt.Errorf("tokens: sign revocation event %d: %w", e.Seq, err)
	}
	return set, nil
}
