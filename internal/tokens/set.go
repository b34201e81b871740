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
	// EventCertificateRevoked is the event type URI of a certificate
	// revocation (an X.509-SVID: every token bound to it is revoked too,
	// each with an event of its own). Its payload is RevokedEvent.
	EventCertificateRevoked = "https://schemas.sigil.dev/secevent/certificate-revoked"
)

// SETClaims are the claims of a revocation event, for a token:
//
//	{"iss": issuer, "iat": revocation time, "jti": "revocation-<seq>",
//	 "toe": revocation time, "sub_id": {"format": "opaque", "id": <token jti>},
//	 "events": {EventTokenRevoked: {"jti": <token jti>, "seq": <seq>, "reason": …}}}
//
// and for a certificate, named by an RFC 9493 "uri" subject identifier
// holding the RFC 6920 ni URI of the SHA-256 of its DER (whose value is
// the RFC 8705 x5t#S256 of the certificate, the cnf of its tokens):
//
//	{…, "sub_id": {"format": "uri", "uri": "ni:///sha-256;<x5t#S256>"},
//	 "events": {EventCertificateRevoked: {"serial": <hex serial>,
//	   "x5t#S256": <x5t#S256>, "exp": <not after>, "seq": <seq>, "reason": …}}}
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

// SubjectID is an RFC 9493 subject identifier: of format "opaque" with
// the revoked token's jti as ID, or of format "uri" with the revoked
// certificate's ni URI (CertificateURI) as URI.
type SubjectID struct {
	Format string `json:"format"`
	ID     string `json:"id,omitempty"`
	URI    string `json:"uri,omitempty"`
}

// CertificateURI is the RFC 6920 ni URI of a certificate with the RFC 8705
// thumbprint x5tS256 (base64url SHA-256 of its DER, as ni has it).
func CertificateURI(x5tS256 string) string { return "ni:///sha-256;" + x5tS256 }

// RevokedEvent is the payload of EventTokenRevoked (JTI) and of
// EventCertificateRevoked (Serial, X5tS256, NotAfter). Seq orders the
// events and is the SSE event id.
type RevokedEvent struct {
	JTI      string `json:"jti,omitempty"`
	Serial   string `json:"serial,omitempty"`
	X5tS256  string `json:"x5t#S256,omitempty"`
	NotAfter int64  `json:"exp,omitempty"`
	Seq      uint64 `json:"seq"`
	Reason   string `json:"reason,omitempty"`
}

func setClaims(issuer string, e store.RevocationEvent) SETClaims {
	at := e.RevokedAt.Unix()
	c := SETClaims{Issuer: issuer, IssuedAt: at, ID: "revocation-" + strconv.FormatUint(e.Seq, 10), TOE: at}
	if e.Serial != "" {
		c.SubID = SubjectID{Format: "uri", URI: CertificateURI(e.Thumbprint)}
		c.Events = map[string]RevokedEvent{EventCertificateRevoked: {
			Serial: e.Serial, X5tS256: e.Thumbprint, NotAfter: e.NotAfter.Unix(), Seq: e.Seq, Reason: e.Reason}}
		return c
	}
	c.SubID = SubjectID{Format: "opaque", ID: e.JTI}
	c.Events = map[string]RevokedEvent{EventTokenRevoked: {JTI: e.JTI, Seq: e.Seq, Reason: e.Reason}}
	return c
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
