package enroll

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/sigil-dev/sigil/api"
)

// Until the evidence format gets a version 2, converting an HTTP message
// into it keeps every field and encodes as the message did: evidence
// written from a request is what the code that embedded the HTTP types
// wrote, so its digest is the same.
func TestWireToEvidenceKeepsEncoding(t *testing.T) {
	full := api.Platform{
		Quotes:   []api.Quote{{Quote: []byte("q1"), Signature: []byte("s1")}, {Quote: []byte("q2")}},
		PCRs:     []api.PCR{{Index: 7, Alg: "sha256", Digest: []byte{1, 2}}, {Index: 0, Alg: "sha1"}},
		EventLog: []byte("log"),
	}
	blob := func(s string) []byte { return []byte(s) }
	tests := []struct {
		name     string
		from, to any
	}{
		{"platform", full, platform(full)},
		{"empty platform", api.Platform{}, platform(api.Platform{})},
		{"platform with empty lists", api.Platform{Quotes: []api.Quote{}, PCRs: []api.PCR{}}, platform(api.Platform{Quotes: []api.Quote{}, PCRs: []api.PCR{}})},
		{"AK", api.AK{Public: blob("p"), CreateData: blob("d"), CreateAttestation: blob("a"), CreateSignature: blob("s")},
			akParameters(api.AK{Public: blob("p"), CreateData: blob("d"), CreateAttestation: blob("a"), CreateSignature: blob("s")})},
		{"certified key", api.CertifiedKey{Public: blob("p"), CreateData: blob("d"), CreateAttestation: blob("a"), CreateSignature: blob("s")},
			certifiedKey(api.CertifiedKey{Public: blob("p"), CreateData: blob("d"), CreateAttestation: blob("a"), CreateSignature: blob("s")})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, _ := json.Marshal(tt.from)
			got, _ := json.Marshal(tt.to)
			if !bytes.Equal(got, want) {
				t.Errorf("evidence encodes as\n%s\nthe HTTP message as\n%s", got, want)
			}
		})
	}
	req := api.CompleteRequest{Secret: blob("secret"), Platform: full, Key: api.CertifiedKey{Public: blob("k")}, CSR: blob("csr")}
	c := completion(req)
	if !bytes.Equal(c.Secret, req.Secret) || !bytes.Equal(c.CSR, req.CSR) || !bytes.Equal(c.Key.Public, req.Key.Public) || len(c.Platform.Quotes) != 2 {
		t.Errorf("completion %+v does not carry the request's secret, CSR, key and platform", c)
	}
}
