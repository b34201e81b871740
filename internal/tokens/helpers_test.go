package tokens_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/token"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// form builds a request body from name, value pairs.
func form(kv ...string) url.Values {
	f := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Add(kv[i], kv[i+1])
	}
	return f
}

// cc is a client_credentials request for audience, plus kv.
func cc(audience string, kv ...string) url.Values {
	return form(append([]string{"grant_type", tokens.GrantClientCredentials, "audience", audience}, kv...)...)
}

// exchange is a token exchange of an access token subject for audience,
// plus kv.
func exchange(subject, audience string, kv ...string) url.Values {
	return form(append([]string{
		"grant_type", tokens.GrantTokenExchange, "subject_token", subject,
		"subject_token_type", api.TokenTypeJWT, "audience", audience,
	}, kv...)...)
}

// mustToken asks the service for a token as w and fails the test if it
// cannot.
func mustToken(t testing.TB, svc *tokens.Service, w *tokenstest.Workload, f url.Values) *tokens.Response {
	t.Helper()
	r, err := svc.Token(t.Context(), w.Cert, f)
	if err != nil {
		t.Fatalf("Token(%v) as %s: %v", f.Get("grant_type"), w.ID, err)
	}
	return r
}

// oauthErr returns err as an OAuth error, or fails.
func oauthErr(t testing.TB, err error) *tokens.Error {
	t.Helper()
	var oe *tokens.Error
	if !errors.As(err, &oe) {
		t.Fatalf("error is not an OAuth error: %v", err)
	}
	return oe
}

// verify checks tok as a resource server in its audience aud would.
func verify(t testing.TB, e *tokenstest.Env, tok, aud string) *token.Claims {
	t.Helper()
	c, err := e.Config.Verifier.Verify(t.Context(), tok, aud)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return c
}

// auditEntry returns the payload of the audit entry stored under key.
func auditEntry(t testing.TB, st store.Store, key string) (audit.Kind, *audit.Token) {
	t.Helper()
	ctx := context.Background()
	i, err := st.AuditIndex(ctx, key)
	if err != nil {
		t.Fatalf("AuditIndex(%s): %v", key, err)
	}
	data, err := st.AuditEntries(ctx, i, i+1)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := audit.Decode(data[0])
	if err != nil {
		t.Fatal(err)
	}
	p, err := entry.Payload()
	if err != nil {
		t.Fatal(err)
	}
	tok, ok := p.(*audit.Token)
	if !ok {
		t.Fatalf("entry %s is a %s, not a token entry", key, entry.Kind)
	}
	return entry.Kind, tok
}

// certOf is w's certificate, nil for no workload.
func certOf(w *tokenstest.Workload) *x509.Certificate {
	if w == nil {
		return nil
	}
	return w.Cert
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// actorTokenPolicy is the dev policy plus a permit for tokens whose
// audience is the token service itself: actor tokens.
func actorTokenPolicy(t testing.TB) *policy.Set {
	t.Helper()
	return policyWith(t, `@id("test-actor-tokens")
permit (principal is Sigil::Workload, action == Sigil::Action::"token", resource is Sigil::Audience)
when { resource.name == "`+tokenstest.Issuer+`" };
`)
}

// policyWith is the dev policy plus one more file.
func policyWith(t testing.TB, extra string) *policy.Set {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob("../../testenv/policy/*.cedar")
	if err != nil || len(files) == 0 {
		t.Fatalf("dev policy files: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "extra.cedar"), []byte(extra), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := policy.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// brokenLog is a store whose audit appends fail, as when the log's table
// cannot be written.
type brokenLog struct{ store.Store }

func (b brokenLog) Tx(ctx context.Context, fn func(store.Tx) error) error {
	return b.Store.Tx(ctx, func(tx store.Tx) error { return fn(brokenTx{tx}) })
}

type brokenTx struct{ store.Tx }

func (brokenTx) AppendAudit(context.Context, store.AuditEntry) (uint64, error) {
	return 0, errors.New("audit_entries: disk I/O error")
}
