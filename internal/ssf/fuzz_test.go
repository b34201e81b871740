package ssf

import (
	"encoding/json"
	"strconv"
	"testing"
)

// FuzzParseJTI: an acknowledged jti, from the receiver, parses back only
// as a jti this stream issued, and nothing panics.
func FuzzParseJTI(f *testing.F) {
	for _, s := range []string{"s1.abcd.1", "s1.verify.7", "s1.abcd.01", "s1.abcd.-1", "s1..1", "s2.abcd.1", "s1.abcd.18446744073709551616", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, jti string) {
		n, verify, ok := parseJTI(jti, "s1", "abcd")
		if !ok {
			return
		}
		want := eventJTI("s1", "abcd", n)
		if verify {
			want = verifyJTI("s1", n)
		}
		if jti != want || n == 0 {
			t.Fatalf("parseJTI(%q) = %d, %v: not a jti of the stream (%s)", jti, n, verify, want)
		}
	})
}

// FuzzPollRequest: a poll body from the receiver either fails to decode,
// is refused by its bounds, or is an exchange within them.
func FuzzPollRequest(f *testing.F) {
	for _, s := range []string{`{}`, `{"maxEvents":0,"ack":["a"]}`, `{"maxEvents":1001}`, `{"maxEvents":-1}`,
		`{"returnImmediately":true,"setErrs":{"x":{"err":"invalid_key","description":"d"}}}`, `{"ack":null}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req PollRequest
		if json.Unmarshal(body, &req) != nil {
			return
		}
		x, err := req.exchange()
		if err != nil {
			return
		}
		if x.max < 0 || x.max > MaxEvents || len(x.acks)+len(x.errs) > maxAcks {
			t.Fatalf("exchange out of bounds: max %d, %d acks", x.max, len(x.acks)+len(x.errs))
		}
		for _, a := range x.acks {
			if len(a) > maxJTI {
				t.Fatalf("ack of %s bytes", strconv.Itoa(len(a)))
			}
		}
	})
}

// FuzzParseSubject: a subject from the receiver parses only as a
// supported identifier whose key parses back to the same subject, and
// nothing panics.
func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{`{"format":"uri","uri":"spiffe://a"}`, `{"format":"jwt_id","iss":"i","jti":"j"}`,
		`{"format":"complex","user":{"format":"uri","uri":"u"},"device":{"format":"opaque","id":"d"}}`,
		`{"format":"aliases","identifiers":[{"format":"email","email":"a@b"},{"format":"email","email":"a@b"}]}`,
		`{"format":"complex"}`, `{"format":"uri"}`, `{"format":1}`, `[]`, `null`, `{"format":"aliases","identifiers":[]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := parseSubject(raw)
		if err != nil {
			return
		}
		again, err := parseSubject([]byte(s.key))
		if err != nil || again.key != s.key || !s.covers(again) || !again.covers(s) {
			t.Fatalf("key %s of %s parses back as %+v, %v", s.key, raw, again, err)
		}
	})
}
