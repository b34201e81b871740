package hostagent

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/api"
)

// TestDecode: a request body is one bounded JSON object of known fields.
func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		ok         bool
		want       string
	}{
		{"valid", `{"identity":"spiffe://sigil.test/workload/a","server_auth":true}`, true, ""},
		{"unknown field", `{"identity":"spiffe://sigil.test/workload/a","uid":0}`, false, "unknown field"},
		{"trailing data", `{"identity":"x"}{}`, false, "data after the JSON object"},
		{"too large", `{"identity":"` + strings.Repeat("a", api.MaxHostRequest) + `"}`, false, "body larger than"},
		{"not JSON", `identity=a`, false, "invalid character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			var req api.HostSVIDRequest
			ok := decode(w, httptest.NewRequest(http.MethodPost, api.PathHostSVID, strings.NewReader(tc.body)), &req)
			if ok != tc.ok || !strings.Contains(w.Body.String(), tc.want) {
				t.Errorf("decode = %v, answer %d %s; want %v with %q", ok, w.Code, w.Body, tc.ok, tc.want)
			}
		})
	}
}

// FuzzDecode feeds the agent's request parsing what any local process may
// send: it accepts a request or answers 4xx, never panics.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"identity":"spiffe://sigil.test/workload/a","server_auth":true}`))
	f.Add([]byte(`{"identity":"spiffe://sigil.test/workload/a","digest":"AAAA","hash":"SHA-256"}`))
	f.Add([]byte(`{"identity":"x"}{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		var req api.HostSignRequest
		ok := decode(w, httptest.NewRequest(http.MethodPost, api.PathHostSign, strings.NewReader(string(body))), &req)
		if ok && w.Code != http.StatusOK || !ok && (w.Code < 400 || w.Code >= 500) {
			t.Fatalf("decode = %v with answer %d", ok, w.Code)
		}
		if ok {
			checkIdentity(httptest.NewRecorder(), req.Identity)
		}
	})
}
