package ssf

import "testing"

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
