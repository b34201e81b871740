package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/client"
)

// fakeTokens records what the token service asked for and answers err or a
// token named after the request.
type fakeTokens struct {
	mu      sync.Mutex
	calls   []string
	err     error
	revoked []string
}

func (f *fakeTokens) CachedToken(_ context.Context, aud string, scope []string, subject string) (client.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("%s|%s|%s", aud, strings.Join(scope, " "), subject))
	if f.err != nil {
		return client.Token{}, f.err
	}
	return client.Token{AccessToken: "tok-" + aud, ExpiresAt: time.Now().Add(5 * time.Minute)}, nil
}

func (f *fakeTokens) RevokeSubject(_ context.Context, subject string) error {
	f.revoked = append(f.revoked, subject)
	return f.err
}

func post(t *testing.T, h http.Handler, path, body string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil && rec.Code != http.StatusMethodNotAllowed && rec.Code != http.StatusNotFound {
		t.Fatalf("%s %s: answer is not JSON: %q", path, body, rec.Body)
	}
	return rec, out
}

func TestTokenServiceIssues(t *testing.T) {
	f := &fakeTokens{}
	s := NewTokenService(f, slog.New(slog.DiscardHandler))
	rec, out := post(t, s, PathToken, `{"audience":"spiffe://td/workload/b","scope":"b:read  b:write"}`)
	if rec.Code != http.StatusOK || out["access_token"] != "tok-spiffe://td/workload/b" || out["token_type"] != "Bearer" {
		t.Fatalf("token: %d %v", rec.Code, out)
	}
	if in, _ := out["expires_in"].(float64); in < 290 || in > 300 {
		t.Errorf("expires_in = %v, want about 300", out["expires_in"])
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", rec.Header().Get("Cache-Control"))
	}
	rec, _ = post(t, s, PathExchange, `{"audience":"spiffe://td/workload/c","subject_token":"SUBJ"}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("exchange: %d %s", rec.Code, rec.Body)
	}
	want := []string{"spiffe://td/workload/b|b:read b:write|", "spiffe://td/workload/c||SUBJ"}
	if strings.Join(f.calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("asked for %q, want %q", f.calls, want)
	}
	rec, _ = post(t, s, PathRevoke, `{"token":"SUBJ"}`)
	if rec.Code != http.StatusOK || len(f.revoked) != 1 || f.revoked[0] != "SUBJ" {
		t.Errorf("revoke: %d %s, revoked %q", rec.Code, rec.Body, f.revoked)
	}
}

func TestTokenServiceRefusesMalformedRequests(t *testing.T) {
	tests := []struct {
		name, path, body string
		status           int
		desc             string
	}{
		{"no audience", PathToken, `{"scope":"a"}`, 400, "audience is required"},
		{"unknown member", PathToken, `{"audience":"a","aud":"b"}`, 400, `unknown field "aud"`},
		{"not JSON", PathToken, `audience=a`, 400, "body:"},
		{"two objects", PathToken, `{"audience":"a"}{"audience":"b"}`, 400, "data after the JSON object"},
		{"subject on token", PathToken, `{"audience":"a","subject_token":"s"}`, 400, "subject_token belongs to /v1/exchange"},
		{"exchange without subject", PathExchange, `{"audience":"a"}`, 400, "subject_token is required"},
		{"long audience", PathToken, `{"audience":"` + strings.Repeat("a", maxAudience+1) + `"}`, 400, "audience longer than"},
		{"too many scopes", PathToken, `{"audience":"a","scope":"` + strings.Repeat("s ", maxScopes+1) + `"}`, 400, "more than 64 scopes"},
		{"huge body", PathToken, `{"audience":"` + strings.Repeat("a", maxTokenRequest) + `"}`, 413, "body larger than"},
		{"revoke without token", PathRevoke, `{}`, 400, "token is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeTokens{}
			rec, out := post(t, NewTokenService(f, slog.New(slog.DiscardHandler)), tt.path, tt.body)
			if rec.Code != tt.status || out["error"] != "invalid_request" || !strings.Contains(out["error_description"].(string), tt.desc) {
				t.Errorf("got %d %v, want %d invalid_request %q", rec.Code, out, tt.status, tt.desc)
			}
			if len(f.calls)+len(f.revoked) != 0 {
				t.Errorf("the workload was asked: %q %q", f.calls, f.revoked)
			}
		})
	}
	rec := httptest.NewRecorder()
	NewTokenService(&fakeTokens{}, slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, PathToken, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: %d, want 405", PathToken, rec.Code)
	}
}

func TestTokenServiceMapsClientErrors(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		status     int
		code       string
		retryAfter bool
	}{
		{"denied", fmt.Errorf("client: token for a: %w", &client.ServerError{Status: 400, Code: "invalid_scope", Description: "invalid_scope: scope x not allowed"}), 403, "access_denied", false},
		{"unavailable", fmt.Errorf("client: %w: dial tcp: refused", client.ErrUnavailable), 503, "temporarily_unavailable", true},
		{"sigild overloaded", &client.ServerError{Status: 503, Code: "unavailable"}, 503, "temporarily_unavailable", true},
		{"other", errors.New("client: token answer without access_token or expires_in"), 502, "server_error", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewTokenService(&fakeTokens{err: tt.err}, slog.New(slog.DiscardHandler))
			for _, path := range []string{PathToken, PathRevoke} {
				body := `{"audience":"a"}`
				if path == PathRevoke {
					body = `{"token":"t"}`
				}
				rec, out := post(t, s, path, body)
				if rec.Code != tt.status || out["error"] != tt.code || out["error_description"] != tt.err.Error() {
					t.Errorf("%s: %d %v, want %d %s", path, rec.Code, out, tt.status, tt.code)
				}
				if got := rec.Header().Get("Retry-After") != ""; got != tt.retryAfter {
					t.Errorf("%s: Retry-After %q", path, rec.Header().Get("Retry-After"))
				}
			}
		})
	}
}

// FuzzTokenService: any body gets a JSON answer with a status the API
// documents, and the workload is asked only for a well-formed request.
func FuzzTokenService(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*-request*.json"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in testdata: %v", err)
	}
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for _, path := range []string{PathToken, PathExchange, PathRevoke} {
			f.Add(path, string(b))
		}
	}
	for _, s := range []string{`{`, `[]`, `{"audience":1}`, "\x00"} {
		f.Add(PathToken, s)
	}
	f.Fuzz(func(t *testing.T, path, body string) {
		if path != PathToken && path != PathExchange && path != PathRevoke {
			return
		}
		ft := &fakeTokens{}
		rec := httptest.NewRecorder()
		NewTokenService(ft, slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer %d is not JSON: %q", rec.Code, rec.Body)
		}
		switch rec.Code {
		case http.StatusOK:
			if len(ft.calls)+len(ft.revoked) != 1 {
				t.Fatalf("200 with %d calls", len(ft.calls)+len(ft.revoked))
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if len(ft.calls)+len(ft.revoked) != 0 || out["error"] != "invalid_request" {
				t.Fatalf("%d %v after %d calls", rec.Code, out, len(ft.calls))
			}
		default:
			t.Fatalf("status %d", rec.Code)
		}
	})
}
