package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/signer"
)

// Revocation events are Security Event Tokens (RFC 8417).
const (
	// SETType is the typ header of a revocation event.
	SETType = "secevent+jwt"
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

// setSigner signs SETs with the key version that signs access tokens now,
// so that they verify against the published JWKS. typ secevent+jwt keeps
// them from being taken for access tokens (at+jwt) and the reverse.
type setSigner struct {
	issuer string
	keys   *signer.KeySet
	src    signer.KeySource
	now    func() time.Time

	mu      sync.Mutex
	signers map[string]jose.Signer // by kid
}

func (s *setSigner) sign(ctx context.Context, e store.RevocationEvent) (string, error) {
	sig, err := s.current(ctx)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(setClaims(s.issuer, e))
	if err != nil {
		return "", fmt.Errorf("tokens: encode revocation event %d: %w", e.Seq, err)
	}
	jws, err := sig.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("tokens: sign revocation event %d: %w", e.Seq, err)
	}
	return jws.CompactSerialize()
}

// current returns a signer for the key version active now: the newest
// whose Active time has come and that is still published.
func (s *setSigner) current(ctx context.Context) (jose.Signer, error) {
	now := s.now()
	var cur *signer.KeyState
	for _, st := range s.keys.Status() {
		if !st.Active.After(now) && (st.Withdrawn.IsZero() || now.Before(st.Withdrawn)) {
			cur = &st
		}
	}
	if cur == nil {
		return nil, errors.New("tokens: no signing key is active: refresh the key set")
	}
	s.mu.Lock()
	sig, ok := s.signers[cur.KID]
	s.mu.Unlock()
	if ok {
		return sig, nil
	}
	return s.load(ctx, *cur)
}

func (s *setSigner) load(ctx context.Context, st signer.KeyState) (jose.Signer, error) {
	key, err := s.src.Find(ctx, st.Label)
	if err != nil {
		return nil, fmt.Errorf("tokens: load event signing key %s: %w", st.Label, err)
	}
	if key.KID() != st.KID {
		return nil, fmt.Errorf("tokens: key %s is not the key set's %s", st.Label, st.KID)
	}
	opts := (&jose.SignerOptions{}).WithType(SETType).WithHeader("kid", st.KID)
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(st.Alg), Key: cryptosigner.Opaque(key)}, opts)
	if err != nil {
		return nil, fmt.Errorf("tokens: event signer for %s: %w", st.Label, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.signers == nil {
		s.signers = map[string]jose.Signer{}
	}
	s.signers[st.KID] = sig
	return sig, nil
}
