package ssf

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
)

// TestCovers: which removed subjects cover which events' subjects.
func TestCovers(t *testing.T) {
	t.Parallel()
	parse := func(raw string) subject {
		t.Helper()
		s, err := parseSubject([]byte(raw))
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		return s
	}
	token := parse(`{"format":"jwt_id","jti":"j1","iss":"https://sigil"}`)
	cert := parse(`{"format":"complex","user":{"format":"uri","uri":"spiffe://w"},"device":{"format":"opaque","id":"ek"}}`)
	for _, tc := range []struct {
		removed string
		token   bool
		cert    bool
	}{
		{`{"iss":"https://sigil","jti":"j1","format":"jwt_id"}`, true, false}, // member order does not matter
		{`{"format":"jwt_id","iss":"https://sigil","jti":"j2"}`, false, false},
		{`{"format":"jwt_id","iss":"https://other","jti":"j1"}`, false, false},
		{`{"format":"uri","uri":"spiffe://w"}`, false, true},    // one member of the complex subject
		{`{"format":"opaque","id":"ek"}`, false, true},          // the other
		{`{"format":"uri","uri":"spiffe://W"}`, false, false},   // compared exactly
		{`{"format":"opaque","id":"spiffe://w"}`, false, false}, // another format
		{`{"format":"aliases","identifiers":[{"format":"email","email":"a@b"},{"format":"uri","uri":"spiffe://w"}]}`, false, true},
		{`{"format":"complex","user":{"format":"uri","uri":"spiffe://w"}}`, false, true},
		{`{"format":"complex","device":{"format":"opaque","id":"ek"},"user":{"format":"uri","uri":"spiffe://w"}}`, false, true},
		{`{"format":"complex","user":{"format":"uri","uri":"spiffe://w"},"device":{"format":"opaque","id":"other"}}`, false, false},
		{`{"format":"complex","session":{"format":"opaque","id":"ek"}}`, false, false}, // the device's id as another member
	} {
		r := parse(tc.removed)
		if got := r.covers(token); got != tc.token {
			t.Errorf("%s covers the token event: %v, want %v", tc.removed, got, tc.token)
		}
		if got := r.covers(cert); got != tc.cert {
			t.Errorf("%s covers the certificate event: %v, want %v", tc.removed, got, tc.cert)
		}
	}
}

// TestEventSubject: the subject an event is matched as is the one a
// receiver gets by naming the event's sub_id: subjectOf builds it without
// encoding and parsing the sub_id again.
func TestEventSubject(t *testing.T) {
	t.Parallel()
	tr := &Transmitter{cfg: Config{Issuer: "https://sigil"}}
	certs := certificate{Serial: "01", SPIFFEID: "spiffe://sigil.test/w", EKHash: "ek"}
	for _, e := range []store.RevocationEvent{{Seq: 1, JTI: "j1"}, {Seq: 2, JTI: store.ExternalPrefix + "x"}, {Seq: 3, Serial: "01"}} {
		about, err := tr.subjectOf(t.Context(), certs, e)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(about.sub)
		if err != nil {
			t.Fatal(err)
		}
		want, err := parseSubject(raw)
		if err != nil {
			t.Fatalf("event %d's sub_id %s: %v", e.Seq, raw, err)
		}
		if !reflect.DeepEqual(about.subject, want) {
			t.Errorf("event %d: subject %+v, want %+v (parsed from %s)", e.Seq, about.subject, want, raw)
		}
	}
}

// certificate is a certificates reader of one certificate.
type certificate store.Certificate

func (c certificate) Certificate(_ context.Context, serial string) (store.Certificate, error) {
	if serial != c.Serial {
		return store.Certificate{}, store.ErrNotFound
	}
	return store.Certificate(c), nil
}
