package ssf

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/token"
)

// SETClaims are the claims of a SET this transmitter sends (SSF 1.0 §4):
// no sub and no exp; aud is the stream's receiver; txn names the
// revocation that caused it, "<epoch>.<seq>" as on the SSE feed, the same
// on every stream.
type SETClaims struct {
	Iss    string         `json:"iss"`
	Jti    string         `json:"jti"`
	Iat    int64          `json:"iat"`
	Aud    []string       `json:"aud"`
	Txn    string         `json:"txn,omitempty"`
	SubID  map[string]any `json:"sub_id"`
	Events map[string]any `json:"events"`
}

// pending is one SET to deliver on a stream: a revocation event or a
// verification.
type pending struct {
	jti    string
	event  *store.RevocationEvent
	about  *eventSubject // the event's, if collect read it already
	verify uint64        // the verification request's number, if it is one
	state  string
}

// eventJTI is the jti of the SET of event seq of the feed of epoch on a
// stream, verifyJTI that of a verification: unique per stream, and parsed
// back from an acknowledgement by parseJTI.
func eventJTI(stream, epoch string, seq uint64) string {
	return stream + "." + epoch + "." + strconv.FormatUint(seq, 10)
}

func verifyJTI(stream string, n uint64) string {
	return stream + ".verify." + strconv.FormatUint(n, 10)
}

// parseJTI reads a jti of the stream: the event's seq, or the
// verification's number (verify true). ok is false for a jti that is not
// one of the stream's SETs in this epoch.
func parseJTI(jti, stream, epoch string) (n uint64, verify, ok bool) {
	rest, found := strings.CutPrefix(jti, stream+".")
	if !found {
		return 0, false, false
	}
	kind, num, found := strings.Cut(rest, ".")
	if !found || (kind != epoch && kind != "verify") {
		return 0, false, false
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != num {
		return 0, false, false
	}
	return n, kind == "verify", true
}

// claims builds the SET of p for the stream.
func (t *Transmitter) claims(ctx context.Context, stream string, aud []string, epoch string, p pending) (SETClaims, error) {
	c := SETClaims{Iss: t.cfg.Issuer, Jti: p.jti, Iat: t.now().Unix(), Aud: aud}
	if p.event == nil {
		c.SubID = map[string]any{"format": "opaque", "id": stream}
		c.Events = map[string]any{EventVerification: verification{State: p.state}}
		return c, nil
	}
	e := *p.event
	c.Txn = epoch + "." + strconv.FormatUint(e.Seq, 10)
	common := caepCommon{EventTimestamp: e.RevokedAt.Unix(), InitiatingEntity: initiator(e.Reason)}
	if e.Reason != "" {
		common.ReasonAdmin = map[string]string{"en": e.Reason}
	}
	about := p.about
	if about == nil {
		var err error
		if about, err = t.subjectOf(ctx, t.cfg.Store, e); err != nil {
			return SETClaims{}, err
		}
	}
	c.SubID = about.sub
	if e.Serial == "" {
		c.Events = map[string]any{EventSessionRevoked: common}
		return c, nil
	}
	cert := about.cert
	parsed, err := x509.ParseCertificate(cert.DER)
	if err != nil {
		return SETClaims{}, fmt.Errorf("ssf: certificate %s of event %d: %w", e.Serial, e.Seq, err)
	}
	c.Events = map[string]any{EventCredentialChange: credentialChange{caepCommon: common,
		CredentialType: "x509", ChangeType: "revoke", FriendlyName: cert.SPIFFEID,
		X509Issuer: parsed.Issuer.String(), X509Serial: e.Serial}}
	return c, nil
}

// certificates reads the certificate of a certificate event.
type certificates interface {
	Certificate(ctx context.Context, serial string) (store.Certificate, error)
}

// eventSubject is what a revocation event's SET is about: its subject, as
// the SET's sub_id and as the subject a receiver's removed ones are
// matched against (subject.covers), and for a certificate event the
// certificate.
type eventSubject struct {
	sub     map[string]any
	subject subject
	cert    store.Certificate
}

// subjectOf reads what e is about: a token event's token, a certificate
// event's workload and device as a complex subject, with the certificate
// read from certs.
func (t *Transmitter) subjectOf(ctx context.Context, certs certificates, e store.RevocationEvent) (*eventSubject, error) {
	if e.Serial == "" {
		id := tokenSubject(t.cfg.Issuer, e.JTI)
		return &eventSubject{sub: id, subject: simpleSubject(canonical(id))}, nil
	}
	cert, err := certs.Certificate(ctx, e.Serial)
	if err != nil {
		return nil, fmt.Errorf("ssf: certificate %s of event %d: %w", e.Serial, e.Seq, err)
	}
	user := map[string]any{"format": "uri", "uri": cert.SPIFFEID}
	device := map[string]any{"format": "opaque", "id": cert.EKHash}
	return &eventSubject{cert: cert, sub: map[string]any{"format": "complex", "user": user, "device": device},
		subject: complexSubject(map[string]string{"user": canonical(user), "device": canonical(device)})}, nil
}

// tokenSubject names a revoked token: one of ours by the SSF "jwt_id"
// format; an external issuer's record (its jti is sigil's name for it, not
// the issuer's) as "opaque".
func tokenSubject(issuer, jti string) map[string]any {
	if strings.HasPrefix(jti, store.ExternalPrefix) {
		return map[string]any{"format": "opaque", "id": jti}
	}
	return map[string]any{"format": "jwt_id", "iss": issuer, "jti": jti}
}

// caepCommon are the CAEP 1.0 §2 event members sigil sets.
type caepCommon struct {
	EventTimestamp   int64             `json:"event_timestamp"`
	InitiatingEntity string            `json:"initiating_entity,omitempty"`
	ReasonAdmin      map[string]string `json:"reason_admin,omitempty"`
}

// credentialChange is the CAEP 1.0 §3.3 credential-change event.
type credentialChange struct {
	caepCommon
	CredentialType string `json:"credential_type"`
	ChangeType     string `json:"change_type"`
	FriendlyName   string `json:"friendly_name,omitempty"`
	X509Issuer     string `json:"x509_issuer"`
	X509Serial     string `json:"x509_serial"`
}

type verification struct {
	State string `json:"state,omitempty"`
}

// initiator maps a revocation reason to CAEP's initiating_entity: an
// operator disabling a device, revoking a certificate with one of
// store.CertificateReasons or revoking a token as an admin is "admin"; a
// failed or expired attestation, or a policy that no longer permits, is
// "policy" (reasons starting "attestation" or "policy"); a token revoked by
// its holder, client or audience says nothing of the kind, and gets none.
// A token revoked with its certificate takes the certificate's.
func initiator(reason string) string {
	r := strings.TrimPrefix(reason, store.CertificateRevokedPrefix)
	switch {
	case r == store.ReasonDeviceDisabled || slices.Contains(store.CertificateReasons, r) || r == "revoked by its admin":
		return "admin"
	case strings.HasPrefix(r, "attestation") || strings.HasPrefix(r, "policy"):
		return "policy"
	}
	return ""
}

// sign signs the SET of p for stream s.
func (t *Transmitter) sign(ctx context.Context, s store.Stream, aud []string, epoch string, p pending) (string, error) {
	c, err := t.claims(ctx, s.ID, aud, epoch, p)
	if err != nil {
		return "", err
	}
	set, _, err := t.cfg.Keys.Sign(ctx, token.EventToken, c)
	if err != nil {
		return "", fmt.Errorf("ssf: sign %s: %w", p.jti, err)
	}
	return set, nil
}

// wants reports whether a stream delivering the event types delivered
// receives e.
func wants(delivered []string, e store.RevocationEvent) bool {
	ev := EventSessionRevoked
	if e.Serial != "" {
		ev = EventCredentialChange
	}
	return slices.Contains(delivered, ev)
}
